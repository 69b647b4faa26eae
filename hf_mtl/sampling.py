"""Task batch sampling: every batch holds examples of a single task.

The training data is one `MultiTaskDataset` (tasks laid end to end); a batch sampler yields lists of global
indices into it. `MultiTaskBatchSampler` does what every strategy shares: it shuffles each task's examples
(optionally capped and grouped by length) into batches, and serves each task's batches in turn, re-shuffling
a task that runs out. A strategy is one small subclass that decides which task each batch of an epoch comes
from (`task_order`) and the batch mix it converges to (`probabilities`):

- `ProportionalBatchSampler` (`"proportional"`): every batch of every task once per epoch, in random order
  (tasks appear in proportion to their size).
- `TemperatureBatchSampler` (`"temperature"`): each batch's task is drawn with p_i proportional to
  n_i^(1/T) (T=1 is proportional, large T approaches uniform); small tasks repeat when they run out.
- `UniformBatchSampler` (`"uniform"`): each batch's task is drawn with equal probability.
- `RoundRobinBatchSampler` (`"round_robin"`): tasks take turns; a task that runs out drops out until the
  epoch ends.
- `AnnealedBatchSampler` (`"annealed"`, Stickland & Murray 2019): p_i proportional to n_i^alpha, alpha going
  from 1 (proportional) towards 0.2 (nearly uniform) over the run.

With `all_tasks_per_step=True` the sampler ignores the strategy's order: every optimizer step gets one batch
of every task on every process (`_all_tasks_order`), each task serving its batches in turn.

Strategies are registered by name (`register_sampling_strategy`), which is what
`MultiTaskTrainingArguments.task_sampling_strategy`, checkpoints and cards carry.

The epoch length in batches is the same for every strategy: the sum over tasks of their batch counts.
Everything is a pure function of `(seed, epoch)` (and of the run's length, for a strategy that uses it), so a
resumed run replays the same batch order.
"""

from __future__ import annotations

import bisect
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler

from .registry import Registry

#: length grouping sorts chunks of this many batches by length, then shuffles the batches
MEGABATCH_FACTOR = 50
#: T of the temperature strategy unless set (also the default of `sampling_temperature`)
DEFAULT_TEMPERATURE = 2.0
#: random stream keys (with seed and epoch): each task's passes use `_PASS_STREAM`; strategies use their own
_PASS_STREAM = 1
#: random stream key of the task order of streaming runs (`stream_task_order`), drawn in blocks of this size
_STREAM_ORDER = 4
_STREAM_BLOCK = 1024


class MultiTaskDataset(TorchDataset):
    """Several tasks' prepared datasets laid end to end; items carry their `task_name`.

    Index `offsets[i] + j` is row `j` of task `i` (tasks in the given order).
    """

    def __init__(self, datasets: Mapping[str, Any]):
        if not datasets:
            raise ValueError("MultiTaskDataset needs at least one task dataset.")
        self.datasets = dict(datasets)
        self.task_names = list(self.datasets)
        self.sizes = [len(d) for d in self.datasets.values()]
        self.offsets = [0]
        for size in self.sizes:
            self.offsets.append(self.offsets[-1] + size)

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """(task position, row within that task) of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        task = bisect.bisect_right(self.offsets, index) - 1
        return task, index - self.offsets[task]

    def __getitem__(self, index: int) -> dict[str, Any]:
        task, row = self.locate(int(index))
        item = dict(self.datasets[self.task_names[task]][row])
        item["task_name"] = self.task_names[task]
        return item

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        # One columnar read per task batch instead of one row read per example.
        if not indices:
            return []
        task, first = self.locate(int(indices[0]))
        offset, size = self.offsets[task], self.sizes[task]
        rows = [int(i) - offset for i in indices]
        if not all(0 <= r < size for r in rows):
            return [self[i] for i in indices]
        name = self.task_names[task]
        columns = self.datasets[name][rows]
        keys = list(columns)
        return [{**{k: columns[k][i] for k in keys}, "task_name": name} for i in range(len(rows))]

    def lengths(self) -> dict[str, list[int] | None]:
        """Per-task token lengths from the prepared `length` column (None where absent)."""
        out = {}
        for name, dataset in self.datasets.items():
            column_names = getattr(dataset, "column_names", None) or []
            out[name] = list(dataset["length"]) if "length" in column_names else None
        return out



@dataclass(frozen=True)
class RunLength:
    """How long the training run is, as far as it is known (`MultiTaskTrainer` sets it on its sampler when
    training starts): what a strategy that changes over training needs to know where it is (`progress`).

    Attributes:
        num_epochs: epochs the run will start.
        max_steps: optimizer steps the run will take.
        batches_per_step: batches of this sampler per optimizer step (gradient accumulation x processes).
    """

    num_epochs: int | None = None
    max_steps: int | None = None
    batches_per_step: int = 1

    def total_batches(self, batches_per_epoch: int) -> int | None:
        """Batches the run will draw from the sampler (whichever of its epochs and steps ends it first)."""
        known = []
        if self.num_epochs is not None and self.num_epochs > 0:
            known.append(self.num_epochs * batches_per_epoch)
        if self.max_steps is not None and self.max_steps > 0:
            known.append(self.max_steps * self.batches_per_step)
        return min(known) if known else None


class MultiTaskBatchSampler(Sampler[list[int]], ABC):
    """Base of the task sampling strategies: yields batches (lists of global indices into a `MultiTaskDataset`)
    of one task each.

    It owns what every strategy shares: each task's examples are shuffled (a fresh random subset each epoch
    under a cap, optionally grouped by length) and cut into batches; the order of the epoch's batches comes
    from the strategy's `task_order`, each task serving its batches in turn and starting a new shuffled pass
    when it runs out. A strategy subclass implements:

    - `task_order()`: the task (position in `task_names`) of each of the epoch's `len(self)` batches;
    - `probabilities()`: the share of batches each task gets (the batch mix a long run converges to);

    and optionally `strategy_settings()` (its own settings: a resumed run must see the same),
    `strategy_description()` (one sentence for the model card) and `strategy_kwargs(args)` (its constructor
    arguments from the training arguments).

    Args:
        task_sizes: examples per task, in the dataset's task order (or a `MultiTaskDataset`).
        batch_size: examples per batch.
        max_examples_per_task: cap on the examples a task contributes per epoch (a fresh random subset
            each epoch).
        lengths: per-task token lengths; with `group_by_length`, batches hold examples of similar length.
        group_by_length: group examples of similar length within a task to cut padding.
        drop_last: drop each task's last incomplete batch.
        seed: base seed; the order is a pure function of `(seed, epoch)`.
        all_tasks_per_step: every optimizer step holds one batch of each task (in task order, on every
            process): the epoch is cut into rounds of `len(task_names) * num_processes` batches, each task's
            batch repeated once per process (accelerate deals batch i to process i % num_processes), and has
            a whole number of optimizer steps (`rounds_per_step` rounds each). Only strategies with
            `fits_all_tasks_per_step` (their order is replaced) accept it.
        num_processes, rounds_per_step: processes of the run and rounds per optimizer step (the user's
            gradient accumulation), for `all_tasks_per_step`.

    No `batch_size` attribute is exposed on purpose: accelerate then treats batches as variable-sized
    lists and gives whole batches to each process, instead of re-slicing them across tasks.

    When tasks stream (`hf_mtl.streaming`), the same strategy orders the tasks with `stream_task_order`
    (by default: each batch's task drawn from `probabilities()`); a strategy whose probabilities ignore the
    task sizes sets `needs_task_sizes = False`, so streams of unknown size can use it.
    """

    #: whether `probabilities()` depends on the task sizes (streams of unknown size need one that does not)
    needs_task_sizes: bool = True

    def __init__(
        self,
        task_sizes: Sequence[int] | MultiTaskDataset,
        batch_size: int,
        *,
        max_examples_per_task: int | None = None,
        lengths: Sequence[Sequence[int] | None] | None = None,
        group_by_length: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        task_names: Sequence[str] | None = None,
        all_tasks_per_step: bool = False,
        num_processes: int = 1,
        rounds_per_step: int = 1,
    ):
        if isinstance(task_sizes, MultiTaskDataset):
            task_names = task_names or task_sizes.task_names
            if lengths is None and group_by_length:
                lengths = list(task_sizes.lengths().values())
            task_sizes = task_sizes.sizes
        self.task_sizes = [int(n) for n in task_sizes]
        self.task_names = list(task_names) if task_names is not None else [str(i) for i in range(len(task_sizes))]
        if not self.task_sizes:
            raise ValueError("MultiTaskBatchSampler needs at least one task.")
        empty = [name for name, n in zip(self.task_names, self.task_sizes) if n <= 0]
        if empty:
            raise ValueError(f"Task(s) {empty} have no training examples; every task needs at least one.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if max_examples_per_task is not None and max_examples_per_task < 1:
            raise ValueError(f"max_examples_per_task must be >= 1 or None, got {max_examples_per_task}.")
        if group_by_length:
            if lengths is None or any(x is None for x in lengths):
                raise ValueError("group_by_length needs per-task lengths (the prepared 'length' column).")
            for name, n, lens in zip(self.task_names, self.task_sizes, lengths):
                if len(lens) != n:
                    raise ValueError(f"Task {name!r}: {len(lens)} lengths for {n} examples.")
        self._batch_size = int(batch_size)  # not `batch_size`: see class docstring
        self.max_examples_per_task = max_examples_per_task
        self.lengths = [np.asarray(x) for x in lengths] if group_by_length else None
        self.group_by_length = group_by_length
        self.drop_last = drop_last
        self.seed = int(seed)
        self.epoch = 0
        self.run_length = RunLength()
        self.offsets = np.concatenate(([0], np.cumsum(self.task_sizes)))[:-1].tolist()
        self.all_tasks_per_step = bool(all_tasks_per_step)
        self.num_processes, self.rounds_per_step = int(num_processes), int(rounds_per_step)
        if self.all_tasks_per_step and not self.fits_all_tasks_per_step:
            raise ValueError(
                f"all_tasks_per_step=True gives every optimizer step one batch of each task, which replaces the task "
                f"order of task_sampling_strategy={self.strategy!r}; use 'proportional' (the default) or "
                "'round_robin', or turn all_tasks_per_step off to sample tasks this way."
            )
        if self.num_processes < 1 or self.rounds_per_step < 1:
            raise ValueError(f"num_processes and rounds_per_step must be >= 1, got {num_processes}, {rounds_per_step}.")

    #: whether `all_tasks_per_step` may replace this strategy's order (it has no effect of its own on the mix)
    fits_all_tasks_per_step = False

    # ------------------------------------------------------------------ what a strategy implements
    @abstractmethod
    def task_order(self) -> Iterable[int]:
        """The task (position in `task_names`) of each batch of the current epoch (`self.epoch`): exactly
        `len(self)` of them. Draw randomness from `self.rng(key)` with a key of the strategy's own (not
        `_PASS_STREAM`), so the order stays a pure function of `(seed, epoch)`."""

    @abstractmethod
    def probabilities(self) -> np.ndarray:
        """Probability of each task per batch (the batch mix a long run converges to)."""

    def strategy_settings(self) -> dict[str, Any]:
        """The strategy's own settings (JSON values): part of `settings()`, checked on resume, shown on the card."""
        return {}

    def strategy_description(self) -> str:
        """One sentence for the model card saying how batches are spread over tasks."""
        return f"Batches are spread over tasks by the `{self.strategy}` strategy."

    @classmethod
    def strategy_kwargs(cls, args: Any) -> dict[str, Any]:
        """The strategy's own constructor arguments from the training arguments (`task_sampling_kwargs`)."""
        return dict(getattr(args, "task_sampling_kwargs", None) or {})

    # ------------------------------------------------------------------ public API
    @property
    def strategy(self) -> str:
        """The name the strategy is registered under (its import path `module:QualName` if unregistered)."""
        return _STRATEGIES.name_of(type(self))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose (deterministic) order the next iteration yields."""
        self.epoch = int(epoch)

    def set_run_length(self, run_length: RunLength) -> None:
        """Tell the sampler how long the run is (the trainer does when training starts), for `progress`."""
        self.run_length = run_length

    def progress(self, batch: int = 0) -> float | None:
        """The fraction of the run's batches drawn before batch `batch` of the current epoch (0 at the start,
        1 at the end); None while the run's length is unknown. A strategy that changes over training (e.g.
        from proportional towards uniform) reads it in `task_order`, and adds what it depends on to
        `strategy_settings` so a resumed run is checked against it."""
        total = self.run_length.total_batches(len(self))
        if not total:
            return None
        return min(1.0, (self.epoch * len(self) + batch) / total)

    def examples_per_epoch(self) -> list[int]:
        """Examples each task contributes per pass over it (after the cap)."""
        cap = self.max_examples_per_task
        return [min(n, cap) if cap else n for n in self.task_sizes]

    def batches_per_task(self) -> list[int]:
        """Batches of each task in one pass over it."""
        rounding = math.floor if self.drop_last else math.ceil
        return [max(1, rounding(n / self._batch_size)) for n in self.examples_per_epoch()]

    def __len__(self) -> int:
        total = int(sum(self.batches_per_task()))
        if self.all_tasks_per_step:  # whole optimizer steps of whole rounds
            step = len(self.task_sizes) * self.num_processes * self.rounds_per_step
            return -(-total // step) * step
        return total

    def batch_shares(self) -> np.ndarray:
        """The share of batches each task gets in this run: `probabilities()`, or equal shares with
        `all_tasks_per_step`."""
        if self.all_tasks_per_step:
            return _normalised(np.ones(len(self.task_sizes), dtype=np.float64))
        return self.probabilities()

    def _all_tasks_order(self) -> Iterator[int]:
        """`all_tasks_per_step`: rounds of every task in turn, each repeated once per process."""
        n_tasks = len(self.task_sizes)
        for _ in range(len(self) // (n_tasks * self.num_processes)):
            for task in range(n_tasks):
                for _ in range(self.num_processes):
                    yield task

    def _step_settings(self) -> dict[str, Any]:
        # only when on, so that checkpoints written before the option existed still match
        if not self.all_tasks_per_step:
            return {}
        return {"all_tasks_per_step": True, "num_processes": self.num_processes, "rounds_per_step": self.rounds_per_step}

    def settings(self) -> dict[str, Any]:
        """Everything that, with the epoch, determines the batch order (a resumed run must see the same)."""
        return {
            **self._step_settings(),
            "task_names": list(self.task_names),
            "task_sizes": list(self.task_sizes),
            "batch_size": self._batch_size,
            "strategy": self.strategy,
            **self.strategy_settings(),
            "max_examples_per_task": self.max_examples_per_task,
            "group_by_length": self.group_by_length,
            "drop_last": self.drop_last,
            "seed": self.seed,
        }

    def describe(self) -> dict[str, Any]:
        """For logs and the model card: the strategy's name, its settings, and a sentence describing it."""
        description = self.strategy_description()
        if self.all_tasks_per_step:
            description = (
                "Every optimizer step accumulates one batch of each task, tasks in turn (`all_tasks_per_step`), so "
                "every task gets the same number of batches."
            )
        if self.max_examples_per_task:
            description += f" Each task contributes at most {self.max_examples_per_task} examples per epoch."
        return {
            "name": self.strategy,
            "settings": {
                **self.strategy_settings(),
                **self._step_settings(),
                "max_examples_per_task": self.max_examples_per_task,
                "group_by_length": self.group_by_length,
                "drop_last": self.drop_last,
            },
            "description": description,
        }

    def rng(self, *keys: int) -> np.random.Generator:
        """The random stream `keys` of the current epoch (a pure function of seed, epoch and keys)."""
        return np.random.default_rng([self.seed, self.epoch, *keys])

    def stream_task_order(self, start: int = 0) -> Iterator[int]:
        """The task (position in `task_names`) of each batch of a streaming run, from batch `start` on; a pure
        function of the seed and the batch's position, so every process draws the same order and a resumed
        run continues it. By default each batch's task is drawn from `probabilities()`."""
        n_tasks, p = len(self.task_sizes), self.probabilities()
        block, offset = divmod(int(start), _STREAM_BLOCK)
        while True:
            draws = np.random.default_rng([self.seed, _STREAM_ORDER, block]).choice(n_tasks, size=_STREAM_BLOCK, p=p)
            yield from (int(t) for t in draws[offset:])
            block, offset = block + 1, 0

    # ------------------------------------------------------------------ iteration
    def _task_pass(self, task: int, repeat: int) -> list[np.ndarray]:
        """One pass over a task's (capped) examples, as batches of global indices."""
        rng = self.rng(_PASS_STREAM, task, repeat)
        order = rng.permutation(self.task_sizes[task])
        cap = self.examples_per_epoch()[task]
        order = order[:cap]
        bs = self._batch_size
        if self.group_by_length:
            lengths = self.lengths[task]
            mega = bs * MEGABATCH_FACTOR
            chunks = [order[i : i + mega] for i in range(0, len(order), mega)]
            # stable sort keeps the random order among equal lengths
            order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < bs:
            batches = batches[:-1]
        if self.group_by_length:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        offset = self.offsets[task]
        return [b + offset for b in batches]

    def _task_stream(self, task: int) -> Iterator[np.ndarray]:
        """A task's batches: its first pass of the epoch, then fresh passes for as long as it is asked."""
        repeat = 0
        while True:
            yield from self._task_pass(task, repeat)
            repeat += 1

    def __iter__(self) -> Iterator[list[int]]:
        n_tasks, expected = len(self.task_sizes), len(self)
        streams = [self._task_stream(t) for t in range(n_tasks)]
        count = 0
        for task in self._all_tasks_order() if self.all_tasks_per_step else self.task_order():
            if not 0 <= task < n_tasks:
                raise ValueError(
                    f"Sampling strategy {self.strategy!r} chose task {task} for batch {count} of epoch {self.epoch}; "
                    f"expected a task position 0..{n_tasks - 1}."
                )
            yield next(streams[task]).tolist()
            count += 1
        if count != expected:
            raise ValueError(
                f"Sampling strategy {self.strategy!r} ordered {count} batches for epoch {self.epoch}; expected "
                f"len(sampler) = {expected} (the sum of the tasks' batch counts)."
            )


def _normalised(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


class ProportionalBatchSampler(MultiTaskBatchSampler):
    """`"proportional"`: every batch of every task once per epoch, in random order."""

    fits_all_tasks_per_step = True

    def task_order(self) -> np.ndarray:
        owners = np.concatenate([np.full(n, t) for t, n in enumerate(self.batches_per_task())])
        return self.rng(2).permutation(owners)

    def probabilities(self) -> np.ndarray:
        return _normalised(np.asarray(self.batches_per_task(), dtype=np.float64))

    def strategy_description(self) -> str:
        return "Tasks are drawn in proportion to their number of training examples (`proportional`)."


class RoundRobinBatchSampler(MultiTaskBatchSampler):
    """`"round_robin"`: tasks take turns; a task that runs out drops out until the epoch ends."""

    fits_all_tasks_per_step = True

    def task_order(self) -> Iterator[int]:
        counts = self.batches_per_task()
        for i in range(max(counts)):
            for task, count in enumerate(counts):
                if i < count:
                    yield task

    def probabilities(self) -> np.ndarray:
        return _normalised(np.asarray(self.batches_per_task(), dtype=np.float64))

    needs_task_sizes = False

    def stream_task_order(self, start: int = 0) -> Iterator[int]:
        # streams do not run out: tasks simply take turns
        n_tasks = len(self.task_sizes)
        return (t % n_tasks for t in itertools.count(int(start)))

    def strategy_description(self) -> str:
        return "Tasks take turns batch by batch (`round_robin`); larger tasks keep going once smaller ones are done."


class DrawnTaskBatchSampler(MultiTaskBatchSampler):
    """Base of the strategies that draw each batch's task independently with `probabilities()` (a task that
    runs out starts a new pass): a subclass only says what the probabilities are."""

    def task_order(self) -> np.ndarray:
        return self.rng(3).choice(len(self.task_sizes), size=len(self), p=self.probabilities())


class TemperatureBatchSampler(DrawnTaskBatchSampler):
    """`"temperature"`: each batch's task drawn with p_i proportional to n_i^(1/T), n_i the task's examples per
    epoch (T=1 is proportional, large T approaches uniform).

    Args:
        temperature: T (> 0); from `sampling_temperature` in the training arguments.
    """

    def __init__(self, *args: Any, temperature: float = DEFAULT_TEMPERATURE, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not temperature > 0:
            raise ValueError(f"sampling temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)

    @classmethod
    def strategy_kwargs(cls, args: Any) -> dict[str, Any]:
        return {"temperature": args.sampling_temperature, **super().strategy_kwargs(args)}

    def probabilities(self) -> np.ndarray:
        sizes = np.asarray(self.examples_per_epoch(), dtype=np.float64)
        return _normalised(sizes ** (1.0 / self.temperature))

    def strategy_settings(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def strategy_description(self) -> str:
        return (
            "Tasks are drawn with probability proportional to n^(1/T), n being the task's number of training "
            f"examples and T = {self.temperature:g} (`temperature` sampling), which gives smaller tasks more "
            "batches than their size alone would."
        )


class UniformBatchSampler(DrawnTaskBatchSampler):
    """`"uniform"`: each batch's task drawn with equal probability, whatever the tasks' sizes."""

    needs_task_sizes = False

    def probabilities(self) -> np.ndarray:
        return _normalised(np.ones(len(self.task_sizes), dtype=np.float64))

    def strategy_description(self) -> str:
        return "Every task is drawn equally often, whatever its size (`uniform`)."


class AnnealedBatchSampler(MultiTaskBatchSampler):
    """`"annealed"`: annealed sampling (Stickland & Murray, 2019): each batch's task drawn with p_i
    proportional to n_i^alpha, n_i the task's examples per epoch, alpha moving linearly with the run's
    progress (`progress()`, so it works with epochs and with `max_steps`) from `alpha_start` (1: proportional)
    to `alpha_end` (0.2: nearly uniform). The paper's alpha = 1 - 0.8 (e - 1) / (E - 1) steps once per epoch;
    here it moves every batch. While the run's length is unknown alpha stays at `alpha_start`.

    Args:
        alpha_start, alpha_end: alpha at the start and at the end of the run (>= 0).
    """

    def __init__(self, *args: Any, alpha_start: float = 1.0, alpha_end: float = 0.2, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for key, value in (("alpha_start", alpha_start), ("alpha_end", alpha_end)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"task_sampling_kwargs[{key!r}] = {value!r}; expected a number >= 0.")
        self.alpha_start, self.alpha_end = float(alpha_start), float(alpha_end)

    def alpha(self, progress: float | None) -> float:
        """alpha at a point of the run (`progress` from 0 to 1; None: `alpha_start`)."""
        if progress is None:
            return self.alpha_start
        return self.alpha_start + (self.alpha_end - self.alpha_start) * progress

    def probabilities_at(self, alpha: float | np.ndarray) -> np.ndarray:
        """p_i proportional to n_i^alpha (one row per alpha for an array)."""
        sizes = np.asarray(self.examples_per_epoch(), dtype=np.float64)
        weights = sizes[None, :] ** np.atleast_1d(np.asarray(alpha, dtype=np.float64))[:, None]
        shares = weights / weights.sum(axis=1, keepdims=True)
        return shares[0] if np.ndim(alpha) == 0 else shares

    def task_order(self) -> np.ndarray:
        count = len(self)
        progress = [self.progress(i) for i in range(count)]
        alphas = np.array([self.alpha(p) for p in progress])
        cumulative = np.cumsum(self.probabilities_at(alphas), axis=1)
        draws = self.rng(4).random(count)
        return np.minimum((draws[:, None] >= cumulative).sum(axis=1), len(self.task_sizes) - 1)

    def probabilities(self) -> np.ndarray:
        # the mix over the whole run: alpha moves evenly from start to end
        return self.probabilities_at(np.linspace(self.alpha_start, self.alpha_end, 101)).mean(axis=0)

    def strategy_settings(self) -> dict[str, Any]:
        return {
            "alpha_start": self.alpha_start,
            "alpha_end": self.alpha_end,
            "total_batches": self.run_length.total_batches(len(self)),
        }

    def strategy_description(self) -> str:
        total = self.run_length.total_batches(len(self))
        start, end = (np.round(self.probabilities_at(a), 3).tolist() for a in (self.alpha_start, self.alpha_end))
        names = ", ".join(self.task_names)
        over = f"over the run's {total} batches" if total else "over the run (its length was not known: alpha stayed at the start)"
        return (
            "Tasks are drawn with probability proportional to n^alpha, n being the task's number of training "
            f"examples, alpha annealed linearly from {self.alpha_start:g} to {self.alpha_end:g} {over} (`annealed`, "
            f"Stickland & Murray 2019): shares of ({names}) from {start} to {end}."
        )


# ---------------------------------------------------------------------------- registry
_STRATEGIES: Registry[type[MultiTaskBatchSampler]] = Registry(
    "task sampling strategy", MultiTaskBatchSampler, "register_sampling_strategy"
)


def register_sampling_strategy(name: str, cls: type[MultiTaskBatchSampler]) -> type[MultiTaskBatchSampler]:
    """Make a `MultiTaskBatchSampler` subclass available as `task_sampling_strategy=name` (arguments,
    recipes); returns the class, so it also works as `register_sampling_strategy("name", Cls)` after the class."""
    return _STRATEGIES.register(name, cls)


def sampling_strategy(value: str | type[MultiTaskBatchSampler], field: str = "task_sampling_strategy") -> type[MultiTaskBatchSampler]:
    """The batch sampler class a strategy name, import path `module:ClassName` or class stands for."""
    return _STRATEGIES.resolve(value, field)


def sampling_strategy_name(value: str | type[MultiTaskBatchSampler], field: str = "task_sampling_strategy") -> str:
    """The name a strategy is recorded under in arguments, checkpoints and cards."""
    return _STRATEGIES.name_of(sampling_strategy(value, field))


def sampling_strategies() -> list[str]:
    """The registered strategy names (built-ins first)."""
    return _STRATEGIES.names()


register_sampling_strategy("proportional", ProportionalBatchSampler)
register_sampling_strategy("temperature", TemperatureBatchSampler)
register_sampling_strategy("uniform", UniformBatchSampler)
register_sampling_strategy("round_robin", RoundRobinBatchSampler)
register_sampling_strategy("annealed", AnnealedBatchSampler)

__all__ = [
    "AnnealedBatchSampler",
    "DrawnTaskBatchSampler",
    "MultiTaskBatchSampler",
    "MultiTaskDataset",
    "ProportionalBatchSampler",
    "RoundRobinBatchSampler",
    "RunLength",
    "TemperatureBatchSampler",
    "UniformBatchSampler",
    "register_sampling_strategy",
    "sampling_strategies",
    "sampling_strategy",
    "sampling_strategy_name",
]
