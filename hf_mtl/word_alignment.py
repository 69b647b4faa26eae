"""Word-level task kinds: pre-split sentences -> model inputs with one target per word, in named steps.

Every kind that predicts per word (`WordLevelTask`: token classification, and kinds added outside hf_mtl such
as per-word scores) prepares its data the same way; only how a word's raw value becomes a target differs (the
task's `word_target_encoder`). `prepare_words` runs the steps:

1. `drop_empty_sentences`: a sentence without words has nothing to tag (skipped, counted, logged);
2. `check_sentences`: words are lists of strings and there is one target per word (located errors), encoded
   by the task;
3. `tokenize_into_windows`: one fast-tokenizer call; a sentence longer than `max_length` tokens becomes
   windows overlapping by `stride` tokens (`return_overflowing_tokens`);
4. `sentence_windows` groups each sentence's windows; `align_sentence` marks each word's first sub-word
   (`first_subwords`), gives each word to the one window where it has most context (`best_windows`), and
   `align_window` puts the word's target on its first sub-word there (on every sub-word when the task trains
   them all), -100 elsewhere, with the `word_index` column (for evaluation) saying which word each token scores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from datasets import Dataset, Sequence as SequenceFeature, Value

from . import preprocessing
from .heads_multitask import IGNORE_INDEX
from .preprocessing import (
    EXAMPLE_INDEX_COLUMN,
    MODEL_INPUT_COLUMNS,
    WORD_INDEX_COLUMN,
    map_rows,
    no_rows,
    prepared_features,
    report_skipped,
    row_count,
)

if TYPE_CHECKING:  # pragma: no cover - tasks.py imports this module
    from .tasks import WordLevelTask

#: data-preparation messages of every kind go to one logger, hf_mtl.preprocessing's
logger = logging.getLogger(preprocessing.__name__)

#: turns one sentence's raw values (one per word) into its per-word targets; gets the raw row for messages
WordTargetEncoder = Callable[[Sequence[Any], int], np.ndarray]


def require_fast_tokenizer(task: WordLevelTask, tokenizer: Any) -> None:
    """Word alignment reads `word_ids()`, which only fast tokenizers give."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"Task {task.name!r}: {task.task_type.replace('_', ' ')} needs a fast tokenizer (word_ids() for label "
            f"alignment); {type(tokenizer).__name__} is not one. Load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True)."
        )


def drop_empty_sentences(
    words_batch: list, values_batch: list, rows: list[int], skipped: list[int]
) -> tuple[list, list, list[int]]:
    """The batch without its sentences of no words (their rows are added to `skipped`)."""
    empty = [i for i, words in enumerate(words_batch) if isinstance(words, (list, tuple)) and not words]
    if not empty:
        return words_batch, values_batch, rows
    skipped.extend(rows[i] for i in empty)
    empty_set = set(empty)
    kept = [i for i in range(len(words_batch)) if i not in empty_set]
    return [words_batch[i] for i in kept], [values_batch[i] for i in kept], [rows[i] for i in kept]


def check_sentences(
    task: WordLevelTask,
    words_batch: list,
    values_batch: list,
    rows: list[int],
    split: str,
    encode_targets: WordTargetEncoder | None,
) -> list[np.ndarray]:
    """Check every sentence's words (and, with `encode_targets`, that it has one value per word) and return the
    per-word targets (empty without `encode_targets`: unlabelled prediction data)."""
    targets = []
    for words, values, row in zip(words_batch, values_batch, rows):
        if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
            raise ValueError(
                f"Task {task.name!r}, split {split!r}, row {row}: column {task.tokens_column!r} must be a list "
                f"of word strings, got {words!r}."
            )
        if encode_targets is None:
            continue
        if not isinstance(values, (list, tuple)) or len(values) != len(words):
            raise ValueError(
                f"Task {task.name!r}, split {split!r}, row {row}: {len(words)} words in "
                f"{task.tokens_column!r} but {len(values) if isinstance(values, (list, tuple)) else values!r} "
                f"{task.word_target_name}s in {task.label_column!r}; expected one {task.word_target_name} per word."
            )
        targets.append(encode_targets(values, row))
    return targets


def tokenize_into_windows(tokenizer: Any, words_batch: list, max_length: int, stride: int) -> tuple[Any, list[int]]:
    """The sentences tokenized as pre-split words, long ones as overlapping windows; and for each window the
    position of its sentence in the batch (windows of a sentence are consecutive)."""
    encoded = tokenizer(
        [list(words) for words in words_batch],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
    )
    return encoded, encoded.pop("overflow_to_sample_mapping")


def sentence_windows(sample_map: Sequence[int]) -> list[tuple[int, int]]:
    """`(start, end)` of each sentence's run of consecutive windows."""
    spans = []
    start = 0
    while start < len(sample_map):
        end = start
        while end < len(sample_map) and sample_map[end] == sample_map[start]:
            end += 1
        spans.append((start, end))
        start = end
    return spans


def first_subwords(word_ids: np.ndarray) -> np.ndarray:
    """Mask of the tokens that start a word (word id >= 0 and unlike the previous token's)."""
    previous = np.concatenate(([-1], word_ids[:-1]))
    return (word_ids >= 0) & (word_ids != previous)


def best_windows(word_ids_per_window: list[np.ndarray], first_masks: list[np.ndarray]) -> list[np.ndarray]:
    """For a sentence split into overlapping windows, label each word in exactly one window: the one where
    its first sub-word has the most context on both sides. Returns per-window boolean keep masks."""
    best: dict[int, tuple[int, int]] = {}  # word -> (context, window)
    for w, (wids, first) in enumerate(zip(word_ids_per_window, first_masks)):
        content = np.flatnonzero(wids >= 0)
        lo, hi = content[0], content[-1]
        for pos in np.flatnonzero(first):
            context = min(pos - lo, hi - pos)
            word = int(wids[pos])
            if word not in best or context > best[word][0]:
                best[word] = (context, w)
    keeps = []
    for w, (wids, first) in enumerate(zip(word_ids_per_window, first_masks)):
        keep = np.zeros_like(first)
        for pos in np.flatnonzero(first):
            keep[pos] = best[int(wids[pos])][1] == w
        keeps.append(keep)
    return keeps


def align_window(
    word_ids: np.ndarray,
    first: np.ndarray,
    keep: np.ndarray,
    targets: np.ndarray | None,
    subword_targets: np.ndarray | None,
) -> list | None:
    """One window's token labels: each kept first sub-word gets its word's target, -100 elsewhere; with
    `subword_targets` (per word, training every sub-word) a kept word's other sub-words get those."""
    if targets is None:
        return None
    safe = np.where(word_ids >= 0, word_ids, 0)
    labels = np.where(keep, targets[safe], IGNORE_INDEX)
    if subword_targets is not None:
        inside = (word_ids >= 0) & ~first
        # continuation sub-words belong to the window that labels their word
        owner = np.zeros_like(keep)
        owner[first & keep] = True
        word_owned = set(word_ids[owner].tolist())
        continuation = inside & np.isin(word_ids, list(word_owned))
        labels = np.where(continuation, subword_targets[safe], labels)
    return labels.tolist()


def align_sentence(
    encoded: Any,
    start: int,
    end: int,
    targets: np.ndarray | None,
    subword_targets: np.ndarray | None,
    labels: list,
    word_index: list,
) -> int:
    """Fill `labels` and `word_index` for one sentence's windows (`encoded` rows `start..end-1`): each word is
    scored in one window (`best_windows`) on its first sub-word. Returns how many of its words some token
    covers (words of only control or zero-width characters produce no token)."""
    wids = [np.asarray([-1 if w is None else w for w in encoded.word_ids(i)]) for i in range(start, end)]
    firsts = [first_subwords(ids) for ids in wids]
    keeps = firsts if end - start == 1 else best_windows(wids, firsts)
    covered = set()
    for k, (ids, first, keep) in enumerate(zip(wids, firsts, keeps)):
        word_index[start + k] = np.where(keep, ids, -1).tolist()
        covered.update(ids[keep].tolist())
        labels[start + k] = align_window(ids, first, keep, targets, subword_targets)
    return len(covered)


def prepare_words(
    task: WordLevelTask,
    dataset: Dataset,
    tokenizer: Any,
    *,
    split: str,
    max_length: int,
    for_training: bool,
    stride: int,
    with_labels: bool,
) -> Dataset:
    """A word-level task's raw dataset (pre-split sentences, one target per word) as model inputs (see the
    module docstring for the steps); evaluation data also get `example_index` and `word_index`."""
    require_fast_tokenizer(task, tokenizer)
    encode_targets = task.word_target_encoder(split, dataset.features.get(task.label_column)) if with_labels else None
    stride = max(0, min(stride, max_length // 2 - 2))
    stats = {"windowed": 0, "unlabelled_words": 0}
    skipped: list[int] = []

    def encode(batch: dict[str, list], rows: list[int]) -> dict[str, list]:
        words_batch = batch[task.tokens_column]
        values_batch = batch[task.label_column] if with_labels else [None] * len(words_batch)
        words_batch, values_batch, rows = drop_empty_sentences(words_batch, values_batch, rows, skipped)
        if not rows:
            return no_rows(features)
        targets = check_sentences(task, words_batch, values_batch, rows, split, encode_targets)
        encoded, sample_map = tokenize_into_windows(tokenizer, words_batch, max_length, stride)
        labels: list = [None] * len(sample_map)
        word_index: list = [None] * len(sample_map)
        for start, end in sentence_windows(sample_map):
            sentence = sample_map[start]
            sentence_targets = targets[sentence] if with_labels else None
            subword_targets = task.subword_targets(sentence_targets) if for_training and with_labels else None
            covered = align_sentence(encoded, start, end, sentence_targets, subword_targets, labels, word_index)
            stats["windowed"] += int(end - start > 1)
            stats["unlabelled_words"] += len(words_batch[sentence]) - covered
        out: dict[str, list] = {k: encoded[k] for k in MODEL_INPUT_COLUMNS if k in encoded}
        if with_labels:
            out["labels"] = labels
        out["length"] = [len(ids) for ids in out["input_ids"]]
        if not for_training:  # lets evaluation score whole sentences, one prediction per word
            out[EXAMPLE_INDEX_COLUMN] = [rows[i] for i in sample_map]
            out[WORD_INDEX_COLUMN] = word_index
        return out

    extra = {}
    if not for_training:
        extra = {EXAMPLE_INDEX_COLUMN: Value("int64"), WORD_INDEX_COLUMN: SequenceFeature(Value("int32"))}
    features = prepared_features(tokenizer, SequenceFeature(task.word_target_feature) if with_labels else None, extra)
    prepared = map_rows(dataset, encode, features, task, split)
    report_skipped(task, split, row_count(dataset), row_count(prepared), skipped, "an empty word list")
    if stats["windowed"]:
        logger.warning(
            f"Task {task.name!r} ({split}): {stats['windowed']} sentences are longer than {max_length} tokens and "
            f"were split into overlapping windows (stride {stride}); every word is still labelled once."
        )
    if stats["unlabelled_words"]:
        logger.warning(
            f"Task {task.name!r} ({split}): {stats['unlabelled_words']} words produce no sub-word tokens "
            "(e.g. control or zero-width characters) and are left out of training and evaluation."
        )
    return prepared


__all__ = [
    "align_sentence",
    "align_window",
    "best_windows",
    "check_sentences",
    "drop_empty_sentences",
    "first_subwords",
    "prepare_words",
    "require_fast_tokenizer",
    "sentence_windows",
    "tokenize_into_windows",
]
