"""Evaluation and prediction arrays in the shape of the raw data.

`Trainer.evaluation_loop` returns one row per *prepared* row, in the order the batches ran (longest first),
and for token tasks one position per sub-word token of each window. Metrics and users want the raw data's
shape: one row per raw example, in input order, and for token tasks one position per word of the whole
sentence, a long sentence's windows merged. The functions here do that reshaping; `MultiTaskTrainer`
calls them with the prepared dataset's bookkeeping columns (`example_index`, `word_index`, see
`hf_mtl.preprocessing`). Positions and rows without a prediction hold -100, the value `transformers` pads
evaluation arrays with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from transformers.trainer_utils import PredictionOutput

from .modeling_multitask import IGNORE_INDEX

#: fill value of rows and positions that have no prediction (as `transformers` pads evaluation arrays)
PAD = IGNORE_INDEX


def nested_map(fn: Callable[[np.ndarray], np.ndarray], value: Any) -> Any:
    """`fn` applied to every array of a (possibly nested) tuple or list of arrays."""
    if isinstance(value, (tuple, list)):
        return type(value)(nested_map(fn, v) for v in value)
    return fn(value)


def restore_order(value: Any, order: Sequence[int]) -> Any:
    """Arrays whose row `k` belongs to dataset row `order[k]` (the order batches ran in), put back in
    dataset order."""
    inverse = np.argsort(np.asarray(order), kind="stable")
    return nested_map(lambda a: np.asarray(a)[inverse], value)


def rows_in_order(example_index: np.ndarray) -> tuple[np.ndarray, int]:
    """One output row per distinct example, in the order examples first appear: each prepared row's output
    row, and the number of rows (a sentence's windows share one)."""
    _, first, inverse = np.unique(np.asarray(example_index), return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)], len(first)


def to_examples(value: Any, row_of: np.ndarray, num_rows: int) -> Any:
    """One row per example: prepared row `r` goes to row `row_of[r]` of `num_rows`; rows no prepared row
    fills (raw rows skipped in preprocessing) hold -100."""

    def place(array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        out = np.full((num_rows, *array.shape[1:]), PAD, dtype=array.dtype)
        out[row_of] = array
        return out

    return nested_map(place, value)


def word_index_from_labels(label_ids: np.ndarray) -> list[np.ndarray]:
    """Word positions of prepared rows that do not record them (prepared outside hf_mtl): the positions
    whose label is not -100, numbered in order, each row a sentence of its own."""
    out = []
    for row in np.asarray(label_ids):
        keep = row != IGNORE_INDEX
        out.append(np.where(keep, np.cumsum(keep) - 1, -1))
    return out


def _word_positions(word_index: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prepared row, token position, word) of every position that predicts a word. Reads an Arrow list
    column (what `Dataset.with_format("arrow")[column]` gives) without a Python loop over rows."""
    if isinstance(word_index, pa.ChunkedArray):
        word_index = word_index.combine_chunks() if word_index.num_chunks else pa.array([], pa.list_(pa.int32()))
    if isinstance(word_index, (pa.ListArray, pa.LargeListArray)):
        rows = word_index.value_parent_indices().to_numpy().astype(np.int64)
        words = word_index.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = word_index.offsets.to_numpy().astype(np.int64)
        positions = np.arange(len(words), dtype=np.int64) - (offsets[rows] - offsets[0])
    else:
        index_rows = [np.asarray(index, dtype=np.int64) for index in word_index]
        rows = np.repeat(np.arange(len(index_rows), dtype=np.int64), [len(index) for index in index_rows])
        positions = np.concatenate([np.arange(len(index)) for index in index_rows] or [np.zeros(0)]).astype(np.int64)
        words = np.concatenate(index_rows or [np.zeros(0)]).astype(np.int64)
    found = words >= 0
    return rows[found], positions[found], words[found]


def merge_windows(
    predictions: np.ndarray,
    label_ids: np.ndarray | None,
    word_index: Sequence[Sequence[int]] | pa.Array | pa.ChunkedArray,
    row_of: np.ndarray,
    num_rows: int,
    num_words: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Token-level arrays of prepared rows (windows) -> word-level arrays of whole sentences.

    Args:
        predictions: `(prepared_rows, tokens, ...)` (logits, or whatever `preprocess_logits_for_metrics`
            made of them), rows in dataset order.
        label_ids: `(prepared_rows, tokens)` or None.
        word_index: per prepared row and token, the sentence's word that token predicts (-1: none), as lists
            or an Arrow list column. Each word is predicted by exactly one token of one window.
        row_of: per prepared row, its sentence's output row.
        num_rows: number of output rows.
        num_words: the output has at least this many word positions.

    Returns:
        `(num_rows, max_words, ...)` predictions and `(num_rows, max_words)` label ids: position `w` of row
        `s` is word `w` of sentence `s`; -100 where a sentence has no such word, or where a word produced no
        sub-word token (it then has no prediction).
    """
    predictions = np.asarray(predictions)
    rows_flat, positions_flat, words_flat = _word_positions(word_index)
    width = max(int(num_words), int(words_flat.max()) + 1 if len(words_flat) else 0)
    targets = np.asarray(row_of, dtype=np.int64)[rows_flat]

    def merge(array: np.ndarray) -> np.ndarray:
        if len(positions_flat) and positions_flat.max() >= array.shape[1]:
            raise ValueError(
                f"Token position {int(positions_flat.max())} is outside the evaluation arrays' width {array.shape[1]}: "
                "the predictions do not line up with the prepared rows' tokens."
            )
        out = np.full((num_rows, width, *array.shape[2:]), PAD, dtype=array.dtype)
        out[targets, words_flat] = array[rows_flat, positions_flat]
        return out

    merged_labels = merge(np.asarray(label_ids)) if label_ids is not None else None
    return merge(predictions), merged_labels


class MultiTaskPredictionOutput(Mapping[str, PredictionOutput]):
    """What `MultiTaskTrainer.predict` returns for a dict of datasets: task name -> that task's
    `transformers.trainer_utils.PredictionOutput` (`predictions`, `label_ids`, `metrics`), plus `metrics`,
    every task's metrics merged with `<prefix>_average`, `<prefix>_loss` and runtime figures, as `evaluate()`
    returns them."""

    def __init__(self, outputs: Mapping[str, PredictionOutput], metrics: dict[str, float]):
        self._outputs = dict(outputs)
        self.metrics = metrics

    def __getitem__(self, task_name: str) -> PredictionOutput:
        try:
            return self._outputs[task_name]
        except KeyError:
            raise KeyError(f"No predictions for task {task_name!r}; predicted tasks are {list(self._outputs)}.") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)

    def __repr__(self) -> str:
        shapes = {
            name: getattr(output.predictions, "shape", type(output.predictions).__name__)
            for name, output in self._outputs.items()
        }
        return f"MultiTaskPredictionOutput(predictions={shapes}, metrics={self.metrics})"


__all__ = [
    "MultiTaskPredictionOutput",
    "merge_windows",
    "nested_map",
    "restore_order",
    "rows_in_order",
    "to_examples",
    "word_index_from_labels",
]
