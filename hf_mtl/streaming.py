"""Streaming training data: tasks whose training data is a `datasets.IterableDataset`.

A task's training data may be a stream (`load_dataset(..., streaming=True)`, `IterableDataset.from_generator`,
or a recipe data source with `streaming: true`); map-style and streaming tasks mix in one run. What stays the
same as with map-style data: every batch holds one task, and the batch's task comes from the run's sampling
strategy (`hf_mtl.sampling`: its `stream_task_order`, by default draws from its `probabilities()`).

What this module adds:

- `prepare_stream`: the task kind's own preparation (`Task.prepare`), applied lazily as the stream is read
  (`IterableDataset.map`); label errors still name the task, split, row (within this process's shard) and
  value, when the row is read. Under DDP each process first takes its own shard
  (`datasets.distributed.split_dataset_by_node`).
- `stream_num_rows`: a stream's size, for strategies whose probabilities depend on it (proportional,
  temperature): given explicitly (`task_sizes=` / a recipe's `num_rows:`), else the dataset's
  `info.splits[split].num_examples`, else unknown (an error for those strategies).
- `StreamTaskBatches`: one streaming task's batches. Rows are read into a bounded buffer of
  `stream_buffer_size` rows, shuffled there (seeded), grouped by length there with `group_by_length`, and
  cut into batches; no pass over the data is needed to know lengths. When the stream ends, a new pass starts
  (`IterableDataset.set_epoch(pass)`). `MapTaskBatches` serves a map-style task in a streaming run exactly as
  `MultiTaskBatchSampler` does (seeded shuffled passes).
- `MultiTaskStream`: the torch `IterableDataset` the training `DataLoader` reads: it yields one task's list of
  examples at a time, the task from the strategy's order, shared by every process (same seed), so all
  processes train the same task at each step, each on its own shard.
- Resume: `MultiTaskStream.state_dict()` holds the position in the task order and, per task, the pass, the
  buffer it is in, how many of that buffer's batches were served, and the stream's
  `IterableDataset.state_dict()` at the start of that buffer. A resumed run reloads that state, re-reads that
  one buffer and skips the batches already served: it trains on exactly the batches the uninterrupted run
  would have (the buffer is re-read, not the stream from the start). The state is saved per process
  (`stream_state-<rank>.json` in checkpoints), since each process reads its own shard.

Memory is bounded by the buffers (tasks x `stream_buffer_size` prepared rows), not by the corpus size.
Shuffling is local to a buffer; shuffle the stream's shards yourself (`IterableDataset.shuffle`) for more,
keeping in mind that `datasets` does not restore the contents of its own shuffle buffer on resume.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from datasets.distributed import split_dataset_by_node

from .preprocessing import prepare_dataset, prepare_datasets
from .sampling import MultiTaskBatchSampler, MultiTaskDataset, ProportionalBatchSampler

#: rows of each streaming task read ahead, shuffled and grouped by length (`stream_buffer_size`)
DEFAULT_STREAM_BUFFER_SIZE = 1000
#: one per process in checkpoints of streaming runs: where each task's stream was
STREAM_STATE_NAME = "stream_state-{rank}.json"
#: random stream key of the shuffle inside a buffer (with seed, task, pass, buffer)
_BUFFER_STREAM = 5


def is_streaming(dataset: Any) -> bool:
    """Whether a task's data is a stream (`datasets.IterableDataset`)."""
    return isinstance(dataset, IterableDataset)


def stream_num_rows(dataset: IterableDataset, given: int | None = None) -> int | None:
    """A stream's number of rows: `given` (an API or recipe value), else what the dataset's info records for
    its split (`info.splits[split].num_examples`; Hub datasets with metadata have it), else None."""
    if given is not None:
        return int(given)
    splits = getattr(dataset.info, "splits", None) or {}
    split = str(dataset.split) if dataset.split is not None else None
    info = splits.get(split) if split in splits else None
    rows = getattr(info, "num_examples", None)
    return int(rows) if rows else None


def prepare_stream(
    task: Any, dataset: IterableDataset, tokenizer: Any, *, split: str, max_length: int | None, rank: int = 0,
    world_size: int = 1,
) -> IterableDataset:
    """One task's raw stream as model inputs, prepared lazily (this process's shard under DDP)."""
    if world_size > 1:
        dataset = split_dataset_by_node(dataset, rank=rank, world_size=world_size)
    if dataset.features is None:  # columns are needed to check and to drop them: read them off the first row
        try:
            dataset = dataset._resolve_features()
        except StopIteration:
            raise ValueError(f"Task {task.name!r} ({split}): the stream is empty; every task needs at least one row.") from None
    return prepare_dataset(task, dataset, tokenizer, split=split, max_length=max_length, for_training=True)


def prepare_streaming_run(
    datasets: Mapping[str, Dataset | IterableDataset], tasks: Mapping[str, Any], tokenizer: Any, *, split: str,
    max_length: int | None, rank: int = 0, world_size: int = 1,
) -> dict[str, Dataset | IterableDataset]:
    """The training data of a run in which some task streams: streams prepared lazily (`prepare_stream`,
    this process's shard), map-style tasks as usual. Only training data may stream."""
    streams = [name for name, d in datasets.items() if is_streaming(d)]
    if split != "train":
        raise ValueError(
            f"The {split} data of task(s) {streams} is a stream (datasets.IterableDataset); only training data "
            "can stream. Evaluate on a map-style Dataset (e.g. load_dataset(..., streaming=False))."
        )
    mapped = prepare_datasets(
        {n: d for n, d in datasets.items() if n not in streams}, list(tasks.values()), tokenizer, split="train",
        max_length=max_length,
    )
    return {
        name: prepare_stream(tasks[name], d, tokenizer, split="train", max_length=max_length, rank=rank,
                             world_size=world_size) if name in streams else mapped[name]
        for name, d in datasets.items()
    }


def training_task_sizes(
    prepared: Mapping[str, Dataset | IterableDataset], raw: Mapping[str, Any] | None,
    given: Mapping[str, int] | None, max_steps: int | None,
) -> dict[str, int | None]:
    """Rows per training task: a map-style task's length; a stream's `given` size or its info's (None if
    unknown). A run with a stream needs `max_steps`, since its epochs have no known length."""
    given = dict(given or {})
    sizes = {
        name: stream_num_rows(raw[name], given.get(name)) if is_streaming(d) else len(d) for name, d in prepared.items()
    }
    streams = [name for name, d in prepared.items() if is_streaming(d)]
    if streams and not (max_steps and max_steps > 0):
        raise ValueError(
            f"The training data of task(s) {streams} streams (datasets.IterableDataset), so an epoch has no known "
            "length: set max_steps (TrainingArguments / a recipe's training.max_steps) to say how long to train."
        )
    return sizes


def shard_map_dataset(dataset: Dataset, rank: int, world_size: int) -> Dataset:
    """A map-style task's share of rows for this process in a streaming run (every process reads its own)."""
    return split_dataset_by_node(dataset, rank=rank, world_size=world_size) if world_size > 1 else dataset


def _batches_of_buffer(
    rows: list[dict[str, Any]], batch_size: int, group_by_length: bool, rng: np.random.Generator
) -> list[list[dict[str, Any]]]:
    """A buffer of prepared rows, shuffled (longest first within the buffer with `group_by_length`), cut into
    batches; grouped batches come in random order."""
    order = rng.permutation(len(rows))
    if group_by_length:
        lengths = np.asarray([rows[i]["length"] if "length" in rows[i] else len(rows[i]["input_ids"]) for i in order])
        order = order[np.argsort(-lengths, kind="stable")]  # stable: random order among equal lengths
    batches = [[rows[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class StreamTaskBatches:
    """One streaming task's batches (lists of prepared rows), read through a bounded, seeded buffer.

    Args:
        name, position: the task's name and its position among the run's tasks (part of the shuffle seed).
        dataset: the prepared stream (`prepare_stream`).
        batch_size: rows per batch.
        buffer_size: rows read ahead (rounded up to whole batches): the shuffle and length-grouping window.
        seed: the run's data seed.
        group_by_length: sort each buffer by length before cutting batches.
        drop_last: drop the short last batch of each pass.
        max_rows_per_pass: read at most this many rows per pass (`max_examples_per_task`).
    """

    def __init__(
        self,
        name: str,
        position: int,
        dataset: IterableDataset,
        batch_size: int,
        *,
        buffer_size: int = DEFAULT_STREAM_BUFFER_SIZE,
        seed: int = 0,
        group_by_length: bool = False,
        drop_last: bool = False,
        max_rows_per_pass: int | None = None,
    ):
        if buffer_size < 1:
            raise ValueError(f"stream_buffer_size must be >= 1, got {buffer_size}.")
        self.name, self.position, self.dataset = name, position, dataset
        self.batch_size = int(batch_size)
        self.buffer_rows = math.ceil(buffer_size / self.batch_size) * self.batch_size
        self.seed, self.group_by_length, self.drop_last = int(seed), group_by_length, drop_last
        self.max_rows_per_pass = max_rows_per_pass
        # position: the pass, the buffer within it, its batches served, the stream's state at its start
        self.pass_, self.buffer, self.served = 0, -1, 0
        self.rows_before, self.buffer_len = 0, 0  # rows of the pass before the buffer, rows in it
        self.buffer_state: dict | None = None
        self._iterator: Iterator[dict[str, Any]] | None = None
        self._batches: list[list[dict[str, Any]]] = []
        self._reread = False

    def state_dict(self) -> dict[str, Any]:
        return {
            "pass": self.pass_,
            "buffer": self.buffer,
            "served": self.served,
            "rows_before": self.rows_before,
            "buffer_len": self.buffer_len,
            "buffer_state": self.buffer_state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pass_, self.buffer, self.served = int(state["pass"]), int(state["buffer"]), int(state["served"])
        self.rows_before, self.buffer_len = int(state["rows_before"]), int(state["buffer_len"])
        self.buffer_state = state["buffer_state"]
        self._iterator, self._batches = None, []
        self._reread = self.buffer >= 0  # the buffer in use is read again from its start, its served batches skipped

    def _start_pass(self, state: dict | None) -> None:
        self.dataset.set_epoch(self.pass_)  # a stream shuffled by `datasets` reshuffles per pass
        # a state loaded for an earlier buffer must not apply to a fresh pass
        self.dataset._starting_state_dict = None
        if state is not None:
            self.dataset.load_state_dict(state)
        self._iterator = iter(self.dataset)

    def _read_buffer(self, rows_before: int) -> list[dict[str, Any]]:
        limit = self.buffer_rows
        if self.max_rows_per_pass is not None:
            limit = min(limit, self.max_rows_per_pass - rows_before)
        return list(itertools.islice(self._iterator, max(limit, 0)))

    def _fill(self) -> None:
        """The batches of the next buffer (after a resume: of the buffer the checkpoint was in)."""
        if self._reread:
            self._reread = False
            self._start_pass(self.buffer_state)
            self._batches = self._cut(self._read_buffer(self.rows_before))  # `served` stays: those are skipped
            return
        for _ in range(2):
            if self._iterator is None:
                self._start_pass(None)
            rows_before = self.rows_before + self.buffer_len
            state = self.dataset.state_dict() if self.buffer >= 0 else None
            rows = self._read_buffer(rows_before)
            if rows:
                self.buffer, self.buffer_state, self.served = self.buffer + 1, state, 0
                self.rows_before, self.buffer_len = rows_before, len(rows)
                self._batches = self._cut(rows)
                return
            if self.buffer < 0:  # a fresh pass read nothing
                break
            # the pass is over: the next one reads the stream from its start
            self.pass_, self.buffer, self.buffer_state, self._iterator = self.pass_ + 1, -1, None, None
            self.rows_before = self.buffer_len = 0
        raise ValueError(f"Task {self.name!r} (train): the stream yielded no rows; every task needs at least one row.")

    def _cut(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        rng = np.random.default_rng([self.seed, _BUFFER_STREAM, self.position, self.pass_, self.buffer])
        batches = _batches_of_buffer(rows, self.batch_size, self.group_by_length, rng)
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < self.batch_size:
            batches = batches[:-1]
        return batches

    def next_batch(self) -> list[dict[str, Any]]:
        while self._reread or self.served >= len(self._batches):
            self._fill()
        batch = self._batches[self.served]
        self.served += 1
        return batch


class MapTaskBatches:
    """A map-style task in a streaming run: the same seeded shuffled passes as `MultiTaskBatchSampler`
    (its `_task_pass` over `view`, the run's map-style tasks), served one batch at a time."""

    def __init__(self, name: str, view: MultiTaskDataset, passes: MultiTaskBatchSampler):
        self.name, self.view, self.passes = name, view, passes
        self.position = view.task_names.index(name)
        self.pass_, self.served = 0, 0
        self._batches: list[np.ndarray] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"pass": self.pass_, "served": self.served}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pass_, self.served, self._batches = int(state["pass"]), int(state["served"]), None

    def next_batch(self) -> list[dict[str, Any]]:
        if self._batches is None:
            self._batches = self.passes._task_pass(self.position, self.pass_)
        if self.served >= len(self._batches):
            self.pass_, self.served = self.pass_ + 1, 0
            self._batches = self.passes._task_pass(self.position, self.pass_)
        indices = self._batches[self.served]
        self.served += 1
        return [{k: v for k, v in row.items() if k != "task_name"} for row in self.view.__getitems__(indices.tolist())]


class MultiTaskStream(torch.utils.data.IterableDataset):
    """The training data of a run in which some task streams: yields one batch (a list of examples carrying
    `task_name`) at a time, the batch's task from `order.stream_task_order`.

    Args:
        sources: task name -> `StreamTaskBatches` / `MapTaskBatches`, in the order of `order.task_names`.
        order: the run's sampling strategy (its `stream_task_order`; the same in every process).
    """

    def __init__(self, sources: Mapping[str, StreamTaskBatches | MapTaskBatches], order: MultiTaskBatchSampler):
        self.sources = dict(sources)
        self.order = order
        self.drawn = 0
        # (batches drawn, state) after each recent batch: a checkpoint takes the state of the batches trained
        self._history: collections.deque = collections.deque(maxlen=64)

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        names = self.order.task_names
        for position in self.order.stream_task_order(self.drawn):
            name = names[position]
            batch = self.sources[name].next_batch()
            self.drawn += 1
            self._history.append((self.drawn, self._snapshot()))
            yield [{**row, "task_name": name} for row in batch]

    def _snapshot(self) -> dict[str, Any]:
        return {"drawn": self.drawn, "tasks": {name: source.state_dict() for name, source in self.sources.items()}}

    def state_dict(self, drawn: int | None = None) -> dict[str, Any]:
        """Where every task's stream is after `drawn` batches (default: all drawn so far)."""
        if drawn is None or drawn == self.drawn:
            return self._snapshot()
        if drawn == 0:
            return {"drawn": 0, "tasks": {}}
        for count, state in self._history:
            if count == drawn:
                return state
        raise RuntimeError(f"The stream state after batch {drawn} is no longer known (drawn: {self.drawn}).")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.drawn = int(state["drawn"])
        for name, source_state in state["tasks"].items():
            if name not in self.sources:
                raise ValueError(f"The checkpoint's stream state has task {name!r}, which this run does not train.")
            self.sources[name].load_state_dict(source_state)


class StreamingTrainData(torch.utils.data.IterableDataset):
    """The prepared training data of a run in which some task streams (what `MultiTaskTrainer` hands the
    Trainer as its `train_dataset`): `datasets` maps task names to prepared streams or map-style datasets.
    Training reads it through `build_stream`, which the trainer calls for every `train()`."""

    def __init__(self, datasets: Mapping[str, Dataset | IterableDataset]):
        self.datasets = dict(datasets)

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("StreamingTrainData is read through hf_mtl.streaming.build_stream (MultiTaskTrainer does).")


def build_stream(
    datasets: Mapping[str, Dataset | IterableDataset],
    strategy: type[MultiTaskBatchSampler],
    batch_size: int,
    *,
    sizes: Mapping[str, int | None],
    seed: int,
    buffer_size: int,
    group_by_length: bool,
    drop_last: bool,
    max_examples_per_task: int | None,
    strategy_kwargs: Mapping[str, Any],
    rank: int = 0,
    world_size: int = 1,
) -> MultiTaskStream:
    """The training stream of this process (`rank` of `world_size`) in a run in which some task streams.

    `datasets`: the prepared tasks (streams already this process's shard; map-style tasks are split here).
    `sizes`: each task's number of rows (None where unknown), for the strategy's probabilities."""
    names = list(datasets)
    unknown = [n for n in names if sizes.get(n) is None]
    if unknown and strategy.needs_task_sizes:
        raise ValueError(
            f"Task sampling strategy {strategy.__name__!r} weighs tasks by their size, but the size of streaming "
            f"task(s) {unknown} is unknown (their dataset info records no number of rows). Give it: "
            "MultiTaskTrainer(task_sizes={name: rows}) or `num_rows:` in the recipe's data source; or use "
            "task_sampling_strategy='uniform' or 'round_robin', which need no sizes."
        )
    order_sizes = [int(sizes[n]) if sizes.get(n) is not None else 1 for n in names]
    order = strategy(
        order_sizes, batch_size, max_examples_per_task=max_examples_per_task, drop_last=drop_last, seed=seed,
        task_names=names, **dict(strategy_kwargs),
    )
    mapped = {n: shard_map_dataset(d, rank, world_size) for n, d in datasets.items() if not is_streaming(d)}
    sources: dict[str, StreamTaskBatches | MapTaskBatches] = {}
    if mapped:
        view = MultiTaskDataset(mapped)
        passes = ProportionalBatchSampler(
            view, batch_size, max_examples_per_task=max_examples_per_task, group_by_length=group_by_length,
            drop_last=drop_last, seed=seed,
        )
    for position, (name, dataset) in enumerate(datasets.items()):
        if is_streaming(dataset):
            sources[name] = StreamTaskBatches(
                name, position, dataset, batch_size, buffer_size=buffer_size, seed=seed,
                group_by_length=group_by_length, drop_last=drop_last, max_rows_per_pass=max_examples_per_task,
            )
        else:
            sources[name] = MapTaskBatches(name, view, passes)
    return MultiTaskStream(sources, order)


def save_stream_state(stream: MultiTaskStream, folder: str, rank: int, world_size: int, drawn: int | None = None) -> None:
    """This process's stream state after `drawn` batches into a checkpoint folder."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, STREAM_STATE_NAME.format(rank=rank))
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({**stream.state_dict(drawn), "world_size": world_size}, handle)


def load_stream_state(folder: str, rank: int) -> dict[str, Any] | None:
    """This process's stream state from a checkpoint folder (None if the checkpoint has none)."""
    path = os.path.join(folder, STREAM_STATE_NAME.format(rank=rank))
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


__all__ = [
    "DEFAULT_STREAM_BUFFER_SIZE",
    "STREAM_STATE_NAME",
    "MapTaskBatches",
    "MultiTaskStream",
    "StreamTaskBatches",
    "StreamingTrainData",
    "build_stream",
    "is_streaming",
    "prepare_stream",
    "prepare_streaming_run",
    "stream_num_rows",
    "training_task_sizes",
]
