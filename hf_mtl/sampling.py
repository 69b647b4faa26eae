"""Task batch sampling: every batch holds examples of a single task.

The training data is one `MultiTaskDataset` (tasks laid end to end); the sampler yields lists of global
indices into it. Within a task, examples are shuffled (optionally capped and grouped by length); across
tasks, batches are ordered by a strategy:

- `"proportional"`: every batch of every task once per epoch, in random order (tasks appear in proportion
  to their size).
- `"temperature"`: each batch's task is drawn with p_i proportional to n_i^(1/T) (T=1 is proportional,
  large T approaches uniform); small tasks are re-shuffled and repeated when they run out.
- `"uniform"`: each batch's task is drawn with equal probability.
- `"round_robin"`: tasks take turns; a task that runs out drops out until the epoch ends.

The epoch length in batches is the same for every strategy: the sum over tasks of their batch counts.
Everything is a pure function of `(seed, epoch)`, so a resumed run replays the same batch order.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler

STRATEGIES = ("proportional", "temperature", "uniform", "round_robin")
#: length grouping sorts chunks of this many batches by length, then shuffles the batches
MEGABATCH_FACTOR = 50


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


def task_probabilities(sizes: Sequence[int], strategy: str, temperature: float = 1.0) -> np.ndarray:
    """The probability of drawing each task for a batch under `strategy` (sizes are example counts)."""
    sizes_arr = np.asarray(sizes, dtype=np.float64)
    if strategy in ("proportional", "round_robin"):
        weights = sizes_arr
    elif strategy == "uniform":
        weights = np.ones_like(sizes_arr)
    elif strategy == "temperature":
        if not temperature > 0:
            raise ValueError(f"sampling temperature must be > 0, got {temperature}.")
        weights = sizes_arr ** (1.0 / temperature)
    else:
        raise ValueError(f"Unknown task sampling strategy {strategy!r}; expected one of {list(STRATEGIES)}.")
    return weights / weights.sum()


class MultiTaskBatchSampler(Sampler[list[int]]):
    """Yields batches (lists of global indices into a `MultiTaskDataset`) of one task each.

    Args:
        task_sizes: examples per task, in the dataset's task order (or a `MultiTaskDataset`).
        batch_size: examples per batch.
        strategy: one of `"proportional"`, `"temperature"`, `"uniform"`, `"round_robin"`.
        temperature: T for `"temperature"`.
        max_examples_per_task: cap on the examples a task contributes per epoch (a fresh random subset
            each epoch).
        lengths: per-task token lengths; with `group_by_length`, batches hold examples of similar length.
        group_by_length: group examples of similar length within a task to cut padding.
        drop_last: drop each task's last incomplete batch.
        seed: base seed; the order is a pure function of `(seed, epoch)`.

    No `batch_size` attribute is exposed on purpose: accelerate then treats batches as variable-sized
    lists and gives whole batches to each process, instead of re-slicing them across tasks.
    """

    def __init__(
        self,
        task_sizes: Sequence[int] | MultiTaskDataset,
        batch_size: int,
        *,
        strategy: str = "proportional",
        temperature: float = 2.0,
        max_examples_per_task: int | None = None,
        lengths: Sequence[Sequence[int] | None] | None = None,
        group_by_length: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        task_names: Sequence[str] | None = None,
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
        if strategy not in STRATEGIES:
            raise ValueError(f"Unknown task sampling strategy {strategy!r}; expected one of {list(STRATEGIES)}.")
        if max_examples_per_task is not None and max_examples_per_task < 1:
            raise ValueError(f"max_examples_per_task must be >= 1 or None, got {max_examples_per_task}.")
        if group_by_length:
            if lengths is None or any(x is None for x in lengths):
                raise ValueError("group_by_length needs per-task lengths (the prepared 'length' column).")
            for name, n, lens in zip(self.task_names, self.task_sizes, lengths):
                if len(lens) != n:
                    raise ValueError(f"Task {name!r}: {len(lens)} lengths for {n} examples.")
        self._batch_size = int(batch_size)  # not `batch_size`: see class docstring
        self.strategy = strategy
        self.temperature = float(temperature)
        self.max_examples_per_task = max_examples_per_task
        self.lengths = [np.asarray(x) for x in lengths] if group_by_length else None
        self.group_by_length = group_by_length
        self.drop_last = drop_last
        self.seed = int(seed)
        self.epoch = 0
        self.offsets = np.concatenate(([0], np.cumsum(self.task_sizes)))[:-1].tolist()

    # ------------------------------------------------------------------ public API
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose (deterministic) order the next iteration yields."""
        self.epoch = int(epoch)

    def examples_per_epoch(self) -> list[int]:
        """Examples each task contributes per pass over it (after the cap)."""
        cap = self.max_examples_per_task
        return [min(n, cap) if cap else n for n in self.task_sizes]

    def batches_per_task(self) -> list[int]:
        """Batches of each task in one pass over it."""
        rounding = math.floor if self.drop_last else math.ceil
        return [max(1, rounding(n / self._batch_size)) for n in self.examples_per_epoch()]

    def probabilities(self) -> np.ndarray:
        """Probability of each task per batch under the strategy (the batch mix a long run converges to)."""
        if self.strategy in ("proportional", "round_robin"):
            counts = np.asarray(self.batches_per_task(), dtype=np.float64)
            return counts / counts.sum()
        return task_probabilities(self.examples_per_epoch(), self.strategy, self.temperature)

    def __len__(self) -> int:
        return int(sum(self.batches_per_task()))

    def settings(self) -> dict[str, Any]:
        """Everything that, with the epoch, determines the batch order (a resumed run must see the same)."""
        return {
            "task_names": list(self.task_names),
            "task_sizes": list(self.task_sizes),
            "batch_size": self._batch_size,
            "strategy": self.strategy,
            "temperature": self.temperature,
            "max_examples_per_task": self.max_examples_per_task,
            "group_by_length": self.group_by_length,
            "drop_last": self.drop_last,
            "seed": self.seed,
        }

    # ------------------------------------------------------------------ iteration
    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, *keys])

    def _task_pass(self, task: int, repeat: int) -> list[np.ndarray]:
        """One pass over a task's (capped) examples, as batches of global indices."""
        rng = self._rng(1, task, repeat)
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
        repeat = 0
        while True:
            yield from self._task_pass(task, repeat)
            repeat += 1

    def __iter__(self) -> Iterator[list[int]]:
        n_tasks = len(self.task_sizes)
        total = len(self)
        if self.strategy == "proportional":
            passes = [self._task_pass(t, 0) for t in range(n_tasks)]
            owners = np.concatenate([np.full(len(p), t) for t, p in enumerate(passes)])
            owners = self._rng(2).permutation(owners)
            cursors = [0] * n_tasks
            for t in owners:
                yield passes[t][cursors[t]].tolist()
                cursors[t] += 1
        elif self.strategy == "round_robin":
            passes = [self._task_pass(t, 0) for t in range(n_tasks)]
            for i in range(max(len(p) for p in passes)):
                for t in range(n_tasks):
                    if i < len(passes[t]):
                        yield passes[t][i].tolist()
        else:
            streams = [self._task_stream(t) for t in range(n_tasks)]
            owners = self._rng(3).choice(n_tasks, size=total, p=self.probabilities())
            for t in owners:
                yield next(streams[t]).tolist()


__all__ = ["STRATEGIES", "MultiTaskBatchSampler", "MultiTaskDataset", "task_probabilities"]
