"""Bulk annotation: every head of a multi-task model run over a whole dataset, written as Parquet or JSON lines.

    annotate_dataset("out/model", "reviews.jsonl", "reviews.annotated.parquet", text_column="body")

The input is a JSONL, CSV/TSV or Parquet file, a folder of such files, a dataset folder written by
`datasets.Dataset.save_to_disk`, or a Hub dataset id (one `split`). The output holds the input's columns plus,
per head, the columns its kind's `AnnotationColumns` define (`register_annotation_columns`): for classification
heads `<task>_label` and `<task>_score` (multi-label: the lists of labels scoring at least 0.5 and their scores;
regression: `<task>_value`), for token heads `<task>_entities`, a list of `{entity_group, word, start, end,
score}` structs. Predictions come from the same code as everywhere else: `pipeline("multitask", model=MODEL)`,
so an ONNX export folder (`hf_mtl.export_onnx`) runs on ONNX Runtime.

How it runs
-----------
- **Constant memory.** The input is read `rows_per_part` rows at a time (`datasets` streaming, or the
  memory-mapped Arrow files of a saved dataset); each such chunk is annotated by the pipeline, which streams it
  a few batches at a time, and written as one Parquet part file.
- **Parts and resuming.** Part `k` holds input rows `[k * rows_per_part, (k + 1) * rows_per_part)` and is
  written to `OUTPUT.parts/part-<k>.parquet` atomically (a temporary file, then a rename), so a part that
  exists is complete. A rerun with the same settings (checked against `OUTPUT.parts/manifest.json`) keeps
  finished parts and annotates only the missing ones. The final output is written (again atomically) by
  concatenating the parts in order, one part in memory at a time; the parts folder is then removed.
- **Several processes.** Under `torchrun --nproc_per_node N` or `accelerate launch` (`WORLD_SIZE` > 1), the
  parts are dealt out in contiguous ranges: process `r` of `N` annotates parts `[r*P/N, (r+1)*P/N)`. Every
  process then waits at a barrier (a gloo process group, CPU) and process 0 concatenates. Part numbers do not
  depend on the number of processes, so a run can be resumed with another one. The number of rows is needed
  to deal the parts: it is read from the input's metadata where there is some (Parquet footers, a saved
  dataset, a Hub dataset's card), else counted by reading the input once.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .heads_multitask import MULTI_LABEL, REGRESSION, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION

#: input rows per part file (the unit of work, of resuming and of what is held in memory)
DEFAULT_ROWS_PER_PART = 10_000
#: a multi-label head's labels scoring at least this (sigmoid) are written
MULTI_LABEL_THRESHOLD = 0.5
#: how long processes wait at the final barrier for the slowest one
BARRIER_TIMEOUT = datetime.timedelta(hours=24)
OUTPUT_FORMATS = ("parquet", "jsonl")
#: input file suffixes -> the `datasets` builder that reads them (and its options)
FILE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".jsonl": ("json", {}),
    ".ndjson": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".parquet": ("parquet", {}),
}
MANIFEST = "manifest.json"


# ---------------------------------------------------------------------------- output columns per head
@dataclass
class AnnotationColumns:
    """How one head's pipeline results become output columns.

    `fields` are the columns (name and Arrow type, the same in every part); `call_params` are pipeline
    parameters for this head (given to the pipeline as `{task_name: value}`); `values(results)` turns the head's
    results for a chunk of rows into one list of values per field.
    """

    fields: list[pa.Field]
    values: Callable[[list[Any]], list[list[Any]]]
    call_params: dict[str, Any] = field(default_factory=dict)


#: task_type -> a function `(task_name, config_entry) -> AnnotationColumns`
_ANNOTATION_COLUMNS: dict[str, Callable[[str, Mapping[str, Any]], AnnotationColumns]] = {}


def register_annotation_columns(task_type: str) -> Callable:
    """Decorator: `fn(task_name, config_entry) -> AnnotationColumns` defines the output columns of heads of the
    kind `task_type`. Kinds without one get a single `<task>` column holding each result as a JSON string."""

    def decorate(fn: Callable[[str, Mapping[str, Any]], AnnotationColumns]) -> Callable:
        _ANNOTATION_COLUMNS[task_type] = fn
        return fn

    return decorate


def annotation_columns(task_name: str, entry: Mapping[str, Any]) -> AnnotationColumns:
    builder = _ANNOTATION_COLUMNS.get(entry.get("task_type"), _json_columns)
    return builder(task_name, entry)


def _json_columns(task_name: str, entry: Mapping[str, Any]) -> AnnotationColumns:
    return AnnotationColumns(
        [pa.field(task_name, pa.string())],
        lambda results: [[json.dumps(r, ensure_ascii=False) for r in results]],
    )


@register_annotation_columns(SEQUENCE_CLASSIFICATION)
def _classification_columns(task_name: str, entry: Mapping[str, Any]) -> AnnotationColumns:
    problem_type = entry.get("problem_type")
    if problem_type == REGRESSION:
        return AnnotationColumns([pa.field(f"{task_name}_value", pa.float64())], lambda results: [[r["score"] for r in results]])
    if problem_type == MULTI_LABEL:

        def kept(results: list[Any]) -> list[list[Any]]:
            chosen = [[x for x in ranked if x["score"] >= MULTI_LABEL_THRESHOLD] for ranked in results]
            return [[[x["label"] for x in c] for c in chosen], [[x["score"] for x in c] for c in chosen]]

        return AnnotationColumns(
            [pa.field(f"{task_name}_label", pa.list_(pa.string())), pa.field(f"{task_name}_score", pa.list_(pa.float64()))],
            kept,
            {"top_k": None},  # every label, sorted by score
        )
    return AnnotationColumns(
        [pa.field(f"{task_name}_label", pa.string()), pa.field(f"{task_name}_score", pa.float64())],
        lambda results: [[r["label"] for r in results], [r["score"] for r in results]],
    )


ENTITY_TYPE = pa.list_(
    pa.struct(
        [("entity_group", pa.string()), ("word", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("score", pa.float64())]
    )
)


@register_annotation_columns(TOKEN_CLASSIFICATION)
def _token_columns(task_name: str, entry: Mapping[str, Any]) -> AnnotationColumns:
    names = [f.name for f in ENTITY_TYPE.value_type]

    def entities(results: list[Any]) -> list[list[Any]]:
        return [[[{k: e.get(k) for k in names} for e in found] for found in results]]

    return AnnotationColumns([pa.field(f"{task_name}_entities", ENTITY_TYPE)], entities)


# ---------------------------------------------------------------------------- inputs
@dataclass
class RowSource:
    """The rows of an input: `tables(start, rows)` yields Arrow tables of `rows` rows (the last may be shorter)
    from row `start` on; `num_rows` is known from metadata, or None."""

    description: str
    num_rows: int | None
    tables: Callable[[int, int], Iterator[pa.Table]]

    def count_rows(self) -> int:
        """The number of rows: from metadata, else by reading the input once."""
        if self.num_rows is None:
            self.num_rows = sum(t.num_rows for t in self.tables(0, DEFAULT_ROWS_PER_PART))
        return self.num_rows


def _streamed(dataset: Any) -> Callable[[int, int], Iterator[pa.Table]]:
    def tables(start: int, rows: int) -> Iterator[pa.Table]:
        part = dataset.skip(start) if start else dataset
        yield from part.with_format("arrow").iter(batch_size=rows)

    return tables


def _local_parquet_rows(files: Sequence[Any]) -> int | None:
    """The row count of local Parquet files, from their footers; None for other inputs."""
    paths = [Path(os.fspath(f)) for f in files]
    if not paths or not all(p.suffix.lower() == ".parquet" and p.is_file() for p in paths):
        return None
    return sum(pq.read_metadata(p).num_rows for p in paths)


def open_input(input: str | os.PathLike, split: str = "train") -> RowSource:
    """The rows of `input`: a file, a folder of files, a `save_to_disk` folder or a Hub dataset id (module doc).

    A folder or Hub id is read as `datasets.load_dataset(input, split=split)` reads it (files named after
    splits are those splits, other files are all `train`); a single file is read whole, whatever `split`.
    """
    import datasets

    path = Path(os.fspath(input))
    if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise KeyError(f"{path} has no split {split!r}; its splits are {sorted(loaded)} (see --split).")
            loaded = loaded[split]
        dataset = loaded.with_format("arrow")

        def sliced(start: int, rows: int) -> Iterator[pa.Table]:
            for begin in range(start, len(dataset), rows):
                yield dataset[begin : begin + rows]

        return RowSource(f"{path} ({split})", len(dataset), sliced)
    if path.is_file():
        builder, options = FILE_FORMATS.get(path.suffix.lower(), (None, {}))
        if builder is None:
            raise ValueError(f"{path}: cannot tell the input format; expected a file ending in {', '.join(sorted(FILE_FORMATS))}.")
        dataset = datasets.load_dataset(builder, data_files=[str(path)], split="train", streaming=True, **options)
        return RowSource(str(path), _local_parquet_rows([path]), _streamed(dataset))
    hub_id = re.fullmatch(r"[\w.-]+(/[\w.-]+)?", os.fspath(input)) is not None  # "name" or "user/name"
    if not path.exists() and (path.suffix.lower() in FILE_FORMATS or not hub_id):
        raise FileNotFoundError(f"{input}: no such file or folder (and not a Hub dataset id such as 'user/name').")
    builder = datasets.load_dataset_builder(os.fspath(input))
    data_files = builder.config.data_files
    if data_files is not None and split not in data_files:
        raise KeyError(f"{input} has no split {split!r}; its splits are {sorted(data_files)} (see --split).")
    splits = builder.info.splits or {}
    num_rows = splits[split].num_examples if split in splits and splits[split].num_examples else None
    if num_rows is None and data_files is not None:
        num_rows = _local_parquet_rows(data_files[split])
    return RowSource(f"{input} ({split})", num_rows, _streamed(builder.as_streaming_dataset(split=split)))


# ---------------------------------------------------------------------------- the job
@dataclass
class AnnotateResult:
    output: Path
    rows: int  # rows this process annotated (parts it kept from an earlier run excluded)
    parts_written: int
    parts_kept: int
    seconds: float
    world_size: int
    rank: int
    merged: bool  # whether this process wrote the final output


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) of a `torchrun` / `accelerate launch` process; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def _output_format(output: Path, output_format: str | None) -> str:
    if output_format is None:
        return "jsonl" if output.suffix.lower() in (".jsonl", ".ndjson", ".json") else "parquet"
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format {output_format!r} is not supported; expected one of {list(OUTPUT_FORMATS)}.")
    return output_format


def parts_dir(output: str | os.PathLike) -> Path:
    output = Path(os.fspath(output))
    return output.with_name(output.name + ".parts")


def _part_path(folder: Path, index: int) -> Path:
    return folder / f"part-{index:06d}.parquet"


def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _check_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write the run's settings into the parts folder, or check that its parts come from the same settings."""
    path = folder / MANIFEST
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        differs = sorted(k for k in set(saved) | set(manifest) if saved.get(k) != manifest.get(k))
        if differs:
            shown = "; ".join(f"{k}: {saved.get(k)!r} then, {manifest.get(k)!r} now" for k in differs)
            raise ValueError(
                f"{folder} holds parts of an annotation run with other settings ({shown}); rerun with the same "
                "settings to resume it, or delete the folder to start over."
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    temporary = _atomic_path(path)
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


def _inputs_of(table: pa.Table, first_row: int, text_column: str, pair_column: str | None) -> list[Any]:
    """The pipeline's inputs for a chunk: its texts (and text pairs); errors name the row and column."""
    for name in (text_column, pair_column):
        if name is not None and name not in table.column_names:
            raise KeyError(f"the input has no column {name!r}; its columns are {table.column_names} (see --text-column).")
    texts = table.column(text_column).to_pylist()
    pairs = table.column(pair_column).to_pylist() if pair_column else None
    for name, values in ((text_column, texts), (pair_column, pairs)):
        for offset, value in enumerate(values or ()):
            if not isinstance(value, str):
                raise ValueError(
                    f"row {first_row + offset}, column {name!r}: expected a string, got {'no value' if value is None else repr(value)[:60]}."
                )
    if pairs is None:
        return texts
    return [{"text": t, "text_pair": p} for t, p in zip(texts, pairs)]


class _Annotator:
    """The pipeline and the output columns of the requested heads."""

    def __init__(self, predictor: Any, tasks: Sequence[str] | None):
        self.predictor = predictor
        config = predictor.model.config
        self.tasks = list(config.select_tasks(tasks) if tasks else config.task_names)
        self.columns = {name: annotation_columns(name, config.get_task(name)) for name in self.tasks}
        self.params: dict[str, dict[str, Any]] = {}
        for name, columns in self.columns.items():
            for key, value in columns.call_params.items():
                self.params.setdefault(key, {})[name] = value

    @property
    def fields(self) -> list[pa.Field]:
        return [f for columns in self.columns.values() for f in columns.fields]

    def annotate(self, inputs: list[Any], batch_size: int, progress: Any) -> list[pa.Array]:
        results: dict[str, list[Any]] = {name: [] for name in self.tasks}
        for result in self.predictor(iter(inputs), tasks=self.tasks, batch_size=batch_size, **self.params):
            for name in self.tasks:
                results[name].append(result[name])
            if progress is not None:
                progress.update(1)
        arrays = []
        for name, columns in self.columns.items():
            for f, values in zip(columns.fields, columns.values(results[name])):
                arrays.append(pa.array(values, type=f.type))
        return arrays


def _load_predictor(model: Any, device: Any, batch_size: int) -> Any:
    if hasattr(model, "model") and callable(model):  # a pipeline already
        return model
    from transformers import pipeline

    from .pipeline import register_pipeline

    register_pipeline()
    return pipeline("multitask", model=model, device=device, batch_size=batch_size)


def _merge(folder: Path, num_parts: int, output: Path, output_format: str) -> None:
    """Concatenate the parts, in order, into `output` (atomically; one part in memory at a time)."""
    paths = [_part_path(folder, k) for k in range(num_parts)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {len(missing)} part(s) ({', '.join(missing[:5])}); rerun to annotate them.")
    schemas = [pq.read_schema(p) for p in paths]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if len(schemas) > 1 else schemas[0]
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = _atomic_path(output)
    try:
        if output_format == "parquet":
            with pq.ParquetWriter(temporary, schema) as writer:
                for path in paths:
                    writer.write_table(pq.read_table(path).cast(schema))
        else:
            with open(temporary, "w", encoding="utf-8") as handle:
                for path in paths:
                    for batch in pq.ParquetFile(path).iter_batches():
                        for row in batch.to_pylist():
                            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        os.replace(temporary, output)
    finally:
        if temporary.exists():
            temporary.unlink()


def _write_part(
    annotator: _Annotator, table: pa.Table, k: int, folder: Path, rows_per_part: int, text_column: str,
    pair_column: str | None, batch_size: int, bar: Any,
) -> int:
    """Annotate one chunk and write it as part `k` (a temporary file renamed into place); its row count."""
    for f in annotator.fields:
        if f.name in table.column_names:
            raise ValueError(
                f"the input already has a column {f.name!r}, which the annotation would overwrite; rename that "
                "column first (or leave that head out with --tasks)."
            )
    inputs = _inputs_of(table, k * rows_per_part, text_column, pair_column)
    for f, array in zip(annotator.fields, annotator.annotate(inputs, batch_size, bar)):
        table = table.append_column(f, array)
    path = _part_path(folder, k)
    temporary = _atomic_path(path)
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    return table.num_rows


def annotate_dataset(
    model: Any,
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    tasks: str | Sequence[str] | None = None,
    batch_size: int = 32,
    split: str = "train",
    output_format: str | None = None,
    rows_per_part: int = DEFAULT_ROWS_PER_PART,
    device: Any = None,
    progress: bool = True,
    keep_parts: bool = False,
) -> AnnotateResult:
    """Annotate every row of `input` with the heads of `model` and write `output` (module docstring).

    `model` is a model folder, Hub id or ONNX export folder (or a `MultiTaskPipeline`); `tasks` the heads to run
    (default all); `output_format` `"parquet"` or `"jsonl"` (default: from the output's suffix, else Parquet).
    Run under `torchrun`/`accelerate launch`, each process annotates its share and process 0 writes `output`.
    """
    if batch_size < 1 or rows_per_part < 1:
        raise ValueError(f"batch_size and rows_per_part must be positive integers, got {batch_size} and {rows_per_part}.")
    started = time.perf_counter()
    output = Path(os.fspath(output))
    output_format = _output_format(output, output_format)
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    rank, world_size, local_rank = _distributed()
    if device is None and world_size > 1:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{local_rank}"
    source = open_input(input, split)
    num_rows = source.count_rows() if world_size > 1 else source.num_rows
    if num_rows == 0:
        raise ValueError(f"{source.description} has no rows.")
    annotator = _Annotator(_load_predictor(model, device, batch_size), tasks)
    folder = parts_dir(output)
    manifest = {
        "input": os.path.abspath(input) if Path(os.fspath(input)).exists() else os.fspath(input),
        "split": split,
        "text_column": text_column,
        "text_pair_column": text_pair_column,
        "tasks": annotator.tasks,
        "model": str(getattr(annotator.predictor.model, "name_or_path", "")),
        "rows_per_part": rows_per_part,
    }
    _check_manifest(folder, manifest)

    num_parts = math.ceil(num_rows / rows_per_part) if num_rows is not None else None
    first, stop = 0, num_parts
    if world_size > 1:
        first, stop = rank * num_parts // world_size, (rank + 1) * num_parts // world_size

    def rows_in(k: int) -> int:
        return min(rows_per_part, num_rows - k * rows_per_part) if num_rows is not None else rows_per_part

    kept = [k for k in range(first, stop if stop is not None else first) if _part_path(folder, k).is_file()]
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        total = None if stop is None else sum(rows_in(k) for k in range(first, stop)) - sum(rows_in(k) for k in kept)
        desc = "Annotating" + (f" (process 0 of {world_size})" if world_size > 1 else "")
        bar = tqdm(total=total, desc=desc, unit=" rows", unit_scale=True, file=sys.stderr, dynamic_ncols=True)

    written = kept_count = annotated = 0
    k = first
    try:
        while stop is None or k < stop:
            if _part_path(folder, k).is_file():
                kept_count += 1
                k += 1
                continue
            # stream from the first missing part until the end of this process's share or the next finished part
            exhausted = True
            for table in source.tables(k * rows_per_part, rows_per_part):
                annotated += _write_part(annotator, table, k, folder, rows_per_part, text_column, text_pair_column, batch_size, bar)
                written += 1
                k += 1
                if (stop is not None and k >= stop) or _part_path(folder, k).is_file():
                    exhausted = False
                    break
            if exhausted:
                break
    finally:
        if bar is not None:
            bar.close()
    if num_parts is None:
        num_parts = k
    if num_parts == 0:
        raise ValueError(f"{source.description} has no rows.")

    merged = False
    _barrier(world_size)
    if rank == 0:
        _merge(folder, num_parts, output, output_format)
        if not keep_parts:
            shutil.rmtree(folder, ignore_errors=True)
        merged = True
    return AnnotateResult(output, annotated, written, kept_count, time.perf_counter() - started, world_size, rank, merged)


def _barrier(world_size: int) -> None:
    """Wait for every process (gloo, CPU); sets up and tears down a process group when none is running."""
    if world_size <= 1:
        return
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    try:
        dist.barrier()
    finally:
        if created:
            dist.destroy_process_group()


__all__ = [
    "AnnotateResult",
    "AnnotationColumns",
    "DEFAULT_ROWS_PER_PART",
    "annotate_dataset",
    "annotation_columns",
    "open_input",
    "parts_dir",
    "register_annotation_columns",
]
