"""A task's data source (a Hub dataset or local files) and how it becomes the task's raw datasets.

`load_task_data(source, task, splits)` returns `{split: datasets.Dataset}` holding exactly the columns the
task reads (with `streaming: true`, the train split is a `datasets.IterableDataset` shaped lazily, as
training reads it; `hf_mtl.streaming`), with labels as label names (or floats for regression), so `MultiTaskTrainer` can take them
as they are. A `ClassLabel` label column without a label map is kept as it is: `prepare_datasets` reads its
ids through the column's own names. Column renames, column joins and label maps bridge the gap between a
file's layout and the task's columns; every problem is reported with the file (or Hub id), split, row and
value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets

from ..preprocessing import class_label_names
from ..tasks import CLASS_LABEL, CLASS_LABELS, NUMBER, Task
from .loaders import DataFileError, get_data_format, infer_format


@dataclass(frozen=True)
class DataSource:
    """Where one task's data comes from, and how to map it onto the task's columns.

    Exactly one of `hub` (a Hub dataset id) and `files` (split -> local path) is set. A Hub source may
    carry a `local` alternative (a files source) used when the data is read from a local folder instead
    (`hf-mtl train --data-dir`).

    Attributes:
        hub, config, revision: the Hub dataset, its configuration and revision.
        splits: our split name -> the Hub dataset's split name (default: the same name).
        files: split name -> file path (relative paths are resolved by `resolve_paths`).
        format: a registered format: `conll`, `csv`, `tsv`, `jsonl`, `parquet` or one added with
            `register_data_format` (inferred from the suffix when None).
        reader_options: options of the format's reader (`header`, `column_names`, `delimiter`, ...).
        rename: column renames applied first (`{file_column: task_column}`).
        join: new column -> columns joined with `join_separator` (e.g. title + description -> text).
        label_map: raw label value (as a string) -> label name; applied to every label or tag.
        label_separator: splits a string multi-label value (e.g. `"a|b"` from a CSV cell) into labels.
        max_examples: split -> keep only the first N rows.
        name: a human-readable name for model cards.
        streaming: read the train split as a stream (`datasets.IterableDataset`), never all of it at once.
        num_rows: the streamed train split's number of rows, for sampling strategies that weigh tasks by size
            (when the dataset's info does not record it).
    """

    hub: str | None = None
    config: str | None = None
    revision: str | None = None
    splits: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    format: str | None = None
    reader_options: Mapping[str, Any] = field(default_factory=dict)
    rename: Mapping[str, str] = field(default_factory=dict)
    join: Mapping[str, Sequence[str]] = field(default_factory=dict)
    join_separator: str = " "
    label_map: Mapping[str, str] | None = None
    label_separator: str = "|"
    max_examples: Mapping[str, int] = field(default_factory=dict)
    name: str | None = None
    local: DataSource | None = None
    streaming: bool = False
    num_rows: int | None = None

    def select(self, use_local: bool) -> DataSource:
        """The source to read: `local` when asked for and present, else this one."""
        if use_local and self.local is not None:
            return self.local
        return self

    def resolve_paths(self, base_dir: str | os.PathLike) -> DataSource:
        """A copy whose relative file paths (also in `local`) are made absolute against `base_dir`."""
        base = Path(base_dir)
        files = {split: os.path.normpath(base / Path(p).expanduser()) for split, p in self.files.items()}
        local = self.local.resolve_paths(base) if self.local is not None else None
        return replace(self, files=files, local=local)

    def has_split(self, split: str) -> bool:
        """Whether `split` is configured: a file for it, or (Hub) listed in `splits` or no `splits` at all."""
        if self.files:
            return split in self.files
        return not self.splits or split in self.splits

    def describe(self) -> str:
        """One line for logs and model cards: `name`, else the Hub id (and config) or the file names."""
        if self.name:
            return self.name
        if self.hub:
            return self.hub + (f" ({self.config})" if self.config else "")
        return "; ".join(f"{split}: {Path(p).name}" for split, p in self.files.items())


class DataSourceError(ValueError):
    """Data that does not fit its task; the message names the source, split, row and value."""


# ---------------------------------------------------------------------------- reading
def _read_split(source: DataSource, split: str, task: Task, stream: bool = False) -> tuple[datasets.Dataset, str]:
    """The raw dataset of one split (a stream with `stream`) and a label for error messages (file path or Hub
    id + split)."""
    if source.files:
        if split not in source.files:
            raise DataSourceError(f"no {split!r} file is configured (files: {sorted(source.files)}).")
        path = source.files[split]
        options = dict(source.reader_options)
        try:
            data_format = get_data_format(source.format or infer_format(path), path)
            if data_format.word_tags and task.token_level:
                options.update(tokens_name=task.tokens_column, tags_name=task.label_column)  # columns the task reads
            if stream:
                return data_format.stream(path, **options), path
            return data_format.read(path, **options), path
        except DataFileError as err:
            raise DataSourceError(str(err)) from None
    hub_split = source.splits.get(split, split)
    where = f"{source.hub}[{hub_split}]"
    try:
        dataset = datasets.load_dataset(
            source.hub, source.config, split=hub_split, revision=source.revision, streaming=stream
        )
    except Exception as err:  # network, missing split, missing config: all user-facing
        hint = ""
        if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
            hint = " (offline mode is on: use local files, e.g. `--data-dir`, or go online)"
        raise DataSourceError(f"cannot load Hub dataset {where}: {type(err).__name__}: {err}{hint}") from None
    return dataset, where


def _apply_columns(dataset: datasets.Dataset, source: DataSource, where: str) -> datasets.Dataset:
    """Column renames and joins."""
    if isinstance(dataset, datasets.IterableDataset):
        return _apply_stream_columns(dataset, source, where)
    for old, new in source.rename.items():
        if old not in dataset.column_names:
            raise DataSourceError(f"{where}: cannot rename column {old!r}: the columns are {dataset.column_names}.")
        if new in dataset.column_names:
            dataset = dataset.remove_columns(new)
        dataset = dataset.rename_column(old, new)
    for new, parts in source.join.items():
        missing = [c for c in parts if c not in dataset.column_names]
        if missing:
            raise DataSourceError(f"{where}: cannot join columns {missing}: the columns are {dataset.column_names}.")
        values = [_joined(source, row, parts) for row in dataset.select_columns(list(parts))]
        if new in dataset.column_names:
            dataset = dataset.remove_columns(new)
        dataset = dataset.add_column(new, values)
    return dataset


def _joined(source: DataSource, row: Mapping[str, Any], parts: Sequence[str]) -> str:
    return source.join_separator.join(str(row[c]) for c in parts if row[c] is not None and str(row[c]) != "")


def _apply_stream_columns(dataset: datasets.IterableDataset, source: DataSource, where: str) -> datasets.IterableDataset:
    """Column renames and joins of a stream (joins applied lazily, row by row)."""
    if dataset.features is None:  # the columns are read off the first row
        dataset = dataset._resolve_features()
    for old, new in source.rename.items():
        if old not in dataset.column_names:
            raise DataSourceError(f"{where}: cannot rename column {old!r}: the columns are {dataset.column_names}.")
        if new in dataset.column_names:
            dataset = dataset.remove_columns(new)
        dataset = dataset.rename_column(old, new)
    for new, parts in source.join.items():
        missing = [c for c in parts if c not in dataset.column_names]
        if missing:
            raise DataSourceError(f"{where}: cannot join columns {missing}: the columns are {dataset.column_names}.")
        features = datasets.Features({**{k: v for k, v in dataset.features.items() if k != new}, new: datasets.Value("string")})
        dataset = dataset.map(lambda row, parts=parts, new=new: {new: _joined(source, row, parts)}, features=features)
    return dataset


class _LabelConverter:
    """Turns raw label values into label names (or floats for regression) and checks them."""

    def __init__(self, task: Task, source: DataSource, where: str):
        self.task = task
        self.source = source
        self.where = where
        self.labels = set(task.labels or ())

    def fail(self, row: int, value: Any, why: str) -> DataSourceError:
        return DataSourceError(f"{self.where}, row {row}: {why} (value {value!r}).")

    def name(self, value: Any, row: int) -> str:
        raw = value
        if self.source.label_map is not None:
            key = str(value)
            if key not in self.source.label_map:
                raise self.fail(row, raw, f"not a key of label_map {sorted(self.source.label_map)}")
            value = self.source.label_map[key]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.fail(row, raw, f"expected a label name from {list(self.task.labels)}")
        if isinstance(value, int):  # a label id, as in Hub datasets without ClassLabel features
            if not 0 <= value < len(self.task.labels):
                raise self.fail(row, raw, f"label id out of range 0..{len(self.task.labels) - 1}")
            return self.task.labels[value]
        if value not in self.labels:
            hint = "; add a `label_map` from raw values to label names" if self.source.label_map is None else ""
            raise self.fail(row, raw, f"not one of the task's labels {list(self.task.labels)}{hint}")
        return value

    def regression(self, value: Any, row: int) -> float | list[float]:
        if isinstance(value, (list, tuple)):
            return [self.regression(v, row) for v in value]  # type: ignore[misc]
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise self.fail(row, value, "expected a number for a regression target") from None

    def value(self, value: Any, row: int) -> Any:
        """One label value (of a row, or of a word for word-level kinds), as the task's `label_values` says."""
        kind = self.task.label_values
        if kind == NUMBER:
            return self.regression(value, row)
        if kind == CLASS_LABELS:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(self.source.label_separator) if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise self.fail(row, value, "expected a list of labels")
            return [self.name(v, row) for v in value]
        assert kind == CLASS_LABEL, kind
        return self.name(value, row)

    def convert(self, value: Any, row: int) -> Any:
        if self.task.token_level:  # one value per word
            if not isinstance(value, (list, tuple)):
                raise self.fail(row, value, f"expected a list of {self.task.word_target_name}s")
            return [self.value(v, row) for v in value]
        return self.value(value, row)


def to_task_dataset(dataset: datasets.Dataset, task: Task, source: DataSource, where: str) -> datasets.Dataset:
    """Shape one raw split for `task`: renames/joins, keep only the task's columns, convert labels."""
    dataset = _apply_columns(dataset, source, where)
    missing = [c for c in task.input_columns if c not in dataset.column_names]
    if missing:
        raise DataSourceError(
            f"{where}: task {task.name!r} needs column(s) {missing}, but the data has {dataset.column_names}; "
            "use `rename`/`join` in the data source, or set the task's column names."
        )
    streaming = isinstance(dataset, datasets.IterableDataset)
    if not streaming and len(dataset) == 0:
        raise DataSourceError(f"{where}: no rows.")
    dataset = dataset.select_columns(task.input_columns)
    label_column = task.label_column
    if (
        task.label_values != NUMBER
        and source.label_map is None
        and class_label_names(dataset.features[label_column]) is not None
    ):
        # ClassLabel ids mean the column's own names (maybe in another order than the task's labels):
        # `prepare_datasets` reads them through those names and checks them, row by row.
        return dataset
    converter = _LabelConverter(task, source, where)
    if streaming:  # converted as the stream is read; errors name the row then
        return dataset.map(
            lambda row, index: {label_column: converter.convert(row[label_column], index)}, with_indices=True,
            features=None,
        )
    values = [converter.convert(v, row) for row, v in enumerate(dataset[label_column])]
    return dataset.remove_columns(label_column).add_column(label_column, values)


def load_task_data(
    source: DataSource,
    task: Task,
    splits: Sequence[str] = ("train", "validation"),
    *,
    required: Sequence[str] = ("train",),
) -> dict[str, datasets.Dataset]:
    """Read and shape the given splits of one task's data.

    Splits the source does not configure are skipped, unless listed in `required` (then an error).
    """
    out: dict[str, datasets.Dataset] = {}
    for split in splits:
        if not source.has_split(split):
            if split in required:
                configured = sorted(source.files or source.splits)
                raise DataSourceError(
                    f"task {task.name!r}: the data source has no {split!r} split (it has {configured})."
                )
            continue
        stream = source.streaming and split == "train"  # evaluation data is read whole (metrics need it all)
        dataset, where = _read_split(source, split, task, stream=stream)
        limit = source.max_examples.get(split)
        if stream and limit is not None:
            dataset = dataset.take(limit)
        elif limit is not None and len(dataset) > limit:
            dataset = dataset.select(range(limit))
        out[split] = to_task_dataset(dataset, task, source, f"{where} (task {task.name!r}, {split})")
    return out


__all__ = ["DataSource", "DataSourceError", "load_task_data", "to_task_dataset"]
