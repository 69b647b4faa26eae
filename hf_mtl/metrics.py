"""Offline metrics, one function per kind of head (no `evaluate.load`, which fetches from the Hub); each task
kind picks its function (`Task.compute_metrics`).

The names returned here are the metric names everywhere: `evaluate()` reports them as
`eval_<task>_<name>`, and the model card and benchmarks read them back. Each task's headline metric is
`task.main_metric` (accuracy, micro_f1, pearson; f1 for tagging with entities, accuracy for tagging
without); `eval_average` is the mean of those.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from .heads_multitask import IGNORE_INDEX
from .tag_schemes import BILOU, IOE1, detect_tag_scheme, split_tag

if TYPE_CHECKING:  # pragma: no cover - tasks.py imports this module
    from .tasks import Task


def _f1_per_class(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> np.ndarray:
    f1 = np.zeros(num_labels)
    for c in range(num_labels):
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        f1[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return f1


def single_label_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (over classes present in gold or predictions) of argmax predictions."""
    logits = np.asarray(logits)
    labels = np.asarray(labels).reshape(-1)
    pred = logits.argmax(-1).reshape(-1)
    present = np.union1d(np.unique(labels), np.unique(pred)).astype(int)
    f1 = _f1_per_class(pred, labels, logits.shape[-1])[present]
    return {"accuracy": float(np.mean(pred == labels)), "macro_f1": float(f1.mean()) if len(f1) else 0.0}


def multi_label_metrics(logits: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Micro-F1, macro-F1 and subset (exact-match) accuracy of sigmoid(logits) >= threshold."""
    logits = np.asarray(logits, dtype=np.float64)
    gold = np.asarray(labels) >= 0.5
    pred = 1.0 / (1.0 + np.exp(-logits)) >= threshold
    tp, fp, fn = (pred & gold).sum(0), (pred & ~gold).sum(0), (~pred & gold).sum(0)
    micro_den = 2 * tp.sum() + fp.sum() + fn.sum()
    per_class_den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(per_class_den > 0, 2 * tp / per_class_den, 0.0)
    active = per_class_den > 0
    return {
        "micro_f1": float(2 * tp.sum() / micro_den) if micro_den else 0.0,
        "macro_f1": float(per_class[active].mean()) if active.any() else 0.0,
        "subset_accuracy": float(np.mean(np.all(pred == gold, axis=1))),
    }


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation (over all outputs) and mean squared error."""
    pred = np.asarray(predictions, dtype=np.float64).reshape(-1)
    gold = np.asarray(labels, dtype=np.float64).reshape(-1)
    out = {"mse": float(np.mean((pred - gold) ** 2))}
    if len(pred) < 2 or np.std(pred) == 0 or np.std(gold) == 0:
        # correlation is undefined for constant inputs; report 0 rather than NaN so averages stay usable
        out.update(pearson=0.0, spearman=0.0)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["pearson"] = float(stats.pearsonr(pred, gold)[0])
            out["spearman"] = float(stats.spearmanr(pred, gold)[0])
    return out


def word_sequences(logits: np.ndarray, labels: np.ndarray, id2label: Mapping[int, str]) -> tuple[list, list]:
    """Gold and predicted tag sequences at word level: positions whose label is not -100 (the first
    sub-word of each word in evaluation data), one prediction per word."""
    pred_ids = np.asarray(logits).argmax(-1)
    labels = np.asarray(labels)
    gold_seqs, pred_seqs = [], []
    for pred_row, gold_row in zip(pred_ids, labels):
        keep = gold_row != IGNORE_INDEX
        if not keep.any():
            continue
        gold_seqs.append([id2label[int(i)] for i in gold_row[keep]])
        pred_seqs.append([id2label[int(i)] for i in pred_row[: len(gold_row)][keep]])
    return gold_seqs, pred_seqs


def _iobes_from_bilou(sequences: list[list[str]]) -> list[list[str]]:
    """BILOU tags renamed to IOBES (`L` is `E`, `U` is `S`): the same entities, in prefixes seqeval's
    default mode knows (it reads `L`/`U` as neither start nor end, merging `U-X U-X` into one entity)."""
    rename = {"L": "E", "U": "S"}
    return [[rename.get(tag[0], tag[0]) + tag[1:] if split_tag(tag) else tag for tag in seq] for seq in sequences]


def _mirrored_ioe1(sequences: list[list[str]]) -> list[list[str]]:
    """IOE1 sentences reversed with `E` renamed `B`: IOB1 sentences with the same entities (mirrored).

    seqeval's strict IOE1 mode misses valid entities (an `E-X` right after `O`); its strict IOB1 mode
    decodes IOB1 correctly, and IOE1 is IOB1 read right to left.
    """
    return [["B" + tag[1:] if tag.startswith("E") and split_tag(tag) else tag for tag in reversed(seq)]
            for seq in sequences]


def entity_scores(gold_seqs: list[list[str]], pred_seqs: list[list[str]], scheme: str) -> dict[str, float]:
    """Micro-averaged entity precision/recall/F1 of tag sequences in `scheme` (see `hf_mtl.tag_schemes`).

    `precision`/`recall`/`f1` follow the CoNLL evaluation script conlleval (seqeval's default mode, which
    transformers' NER example reports): entities are read leniently, so one that starts with `I-` counts
    when its span and type are right. conlleval has no `S`/`U` tag; for IOBES and BILOU the rules are
    seqeval's extension of conlleval's (`E`/`S` end an entity, `B`/`S` start one; BILOU read as IOBES).
    `strict_*` count only entities whose tags are well-formed in `scheme` (seqeval's strict mode).
    """
    from seqeval import scheme as seqeval_schemes
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support as lenient_prfs
    from seqeval.metrics.v1 import precision_recall_fscore_support as strict_prfs

    lenient_gold, lenient_pred = gold_seqs, pred_seqs
    if scheme == BILOU:
        lenient_gold, lenient_pred = _iobes_from_bilou(gold_seqs), _iobes_from_bilou(pred_seqs)
    strict_gold, strict_pred, strict_scheme = gold_seqs, pred_seqs, getattr(seqeval_schemes, scheme)
    if scheme == IOE1:
        strict_gold, strict_pred = _mirrored_ioe1(gold_seqs), _mirrored_ioe1(pred_seqs)
        strict_scheme = seqeval_schemes.IOB1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns about bare tags such as `B` (valid, typeless entities)
        p, r, f, _ = lenient_prfs(lenient_gold, lenient_pred, average="micro", zero_division=0)
        sp, sr, sf, _ = strict_prfs(strict_gold, strict_pred, average="micro", zero_division=0, scheme=strict_scheme)
    return {
        "precision": float(p), "recall": float(r), "f1": float(f),
        "strict_precision": float(sp), "strict_recall": float(sr), "strict_f1": float(sf),
    }


def token_metrics(
    logits: np.ndarray, labels: np.ndarray, id2label: Mapping[int, str], *, task_name: str | None = None
) -> dict[str, float]:
    """Word-level metrics of a tagging head: word `accuracy`, and for tag sets with entities the entity
    scores of `entity_scores` (`precision`/`recall`/`f1` as conlleval computes them, and `strict_*`).

    Tag sets without entities (POS tags) get `accuracy` only; a tag set whose entities no supported scheme
    reads raises (see `hf_mtl.tag_schemes.detect_tag_scheme`), rather than scoring something else as F1.
    """
    scheme = detect_tag_scheme(id2label.values(), task_name)
    gold_seqs, pred_seqs = word_sequences(logits, labels, id2label)
    flat_gold = [t for s in gold_seqs for t in s]
    flat_pred = [t for s in pred_seqs for t in s]
    accuracy = float(np.mean([g == p for g, p in zip(flat_gold, flat_pred)])) if flat_gold else 0.0
    if scheme is None:
        return {"accuracy": accuracy}
    return {**entity_scores(gold_seqs, pred_seqs, scheme), "accuracy": accuracy}


def compute_task_metrics(task: Task, predictions: Any, label_ids: Any) -> dict[str, float]:
    """The metrics of one task's evaluation predictions (logits; the first array of a tuple) and gold labels:
    those its kind picks from the functions above (`Task.compute_metrics`)."""
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    return task.compute_metrics(predictions, label_ids)


__all__ = [
    "compute_task_metrics",
    "entity_scores",
    "multi_label_metrics",
    "regression_metrics",
    "single_label_metrics",
    "token_metrics",
]
