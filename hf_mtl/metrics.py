"""Offline metrics, one function per kind of head (no `evaluate.load`, which fetches from the Hub).

The names returned here are the metric names everywhere: `evaluate()` reports them as
`eval_<task>_<name>`, and the model card and benchmarks read them back. Each task's headline metric is
`task.main_metric` (accuracy, micro_f1, pearson, f1); `eval_average` is the mean of those.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from .modeling_multitask import IGNORE_INDEX
from .tasks import MULTI_LABEL, REGRESSION, SINGLE_LABEL, Task, TokenClassificationTask


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


def is_iob_scheme(labels: Sequence[str]) -> bool:
    """Whether a tag set is IOB-style (every tag but `O` starts with `B-` or `I-`)."""
    return any(l.startswith("B-") for l in labels) and all(l == "O" or l[:2] in ("B-", "I-") for l in labels)


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


def token_metrics(logits: np.ndarray, labels: np.ndarray, id2label: Mapping[int, str]) -> dict[str, float]:
    """Entity-level precision/recall/F1 (seqeval, strict IOB2) plus word accuracy, at word level.

    For tag sets that are not IOB (POS tags, say) there are no entities: precision, recall and F1 are
    then micro-averaged over words (all three equal word accuracy).
    """
    gold_seqs, pred_seqs = word_sequences(logits, labels, id2label)
    flat_gold = [t for s in gold_seqs for t in s]
    flat_pred = [t for s in pred_seqs for t in s]
    accuracy = float(np.mean([g == p for g, p in zip(flat_gold, flat_pred)])) if flat_gold else 0.0
    if not is_iob_scheme(list(id2label.values())):
        return {"precision": accuracy, "recall": accuracy, "f1": accuracy, "accuracy": accuracy}
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    kwargs = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "precision": float(precision_score(gold_seqs, pred_seqs, **kwargs)),
            "recall": float(recall_score(gold_seqs, pred_seqs, **kwargs)),
            "f1": float(f1_score(gold_seqs, pred_seqs, **kwargs)),
            "accuracy": accuracy,
        }


def compute_task_metrics(task: Task, predictions: Any, label_ids: Any) -> dict[str, float]:
    """The metrics of one task's evaluation predictions (logits) and gold labels."""
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    if isinstance(task, TokenClassificationTask):
        return token_metrics(predictions, label_ids, task.id2label)
    if task.problem_type == SINGLE_LABEL:
        return single_label_metrics(predictions, label_ids)
    if task.problem_type == MULTI_LABEL:
        return multi_label_metrics(predictions, label_ids)
    if task.problem_type == REGRESSION:
        return regression_metrics(predictions, label_ids)
    raise ValueError(f"No metrics for task {task.name!r} of problem type {task.problem_type!r}.")


__all__ = [
    "compute_task_metrics",
    "multi_label_metrics",
    "regression_metrics",
    "single_label_metrics",
    "token_metrics",
]
