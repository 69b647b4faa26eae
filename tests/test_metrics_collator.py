"""Offline metrics per head type, and the single-task collator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_mtl import MultiTaskDataCollator, SequenceClassificationTask, TokenClassificationTask, compute_task_metrics
from hf_mtl.metrics import multi_label_metrics, regression_metrics, single_label_metrics, token_metrics
from hf_mtl.modeling_multitask import IGNORE_INDEX

from conftest import NER_LABELS


def _onehot_logits(ids, n):
    logits = np.full((len(ids), n), -5.0)
    logits[np.arange(len(ids)), ids] = 5.0
    return logits


def test_single_label_accuracy_and_macro_f1():
    gold = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2])
    out = single_label_metrics(_onehot_logits(pred, 3), gold)
    assert out["accuracy"] == pytest.approx(0.8)
    # F1 per class: 0 -> 2/3, 1 -> 0.8, 2 -> 1.0
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1.0) / 3)


def test_multi_label_micro_f1():
    gold = np.array([[1, 0, 1], [0, 1, 0]], dtype=float)
    logits = np.array([[3.0, -3.0, -3.0], [-3.0, 3.0, 3.0]])
    out = multi_label_metrics(logits, gold)
    # tp=2 fp=1 fn=1 -> micro F1 = 4/6
    assert out["micro_f1"] == pytest.approx(2 / 3)
    assert out["subset_accuracy"] == 0.0


def test_regression_correlations():
    gold = np.array([1.0, 2.0, 3.0, 4.0])
    out = regression_metrics(np.array([[1.1], [1.9], [3.2], [3.9]]), gold)
    assert out["pearson"] > 0.99 and out["spearman"] == pytest.approx(1.0)
    assert regression_metrics(np.zeros(4), gold)["pearson"] == 0.0  # constant predictions: defined, not NaN


def test_token_metrics_are_conlleval_entities_plus_strict_iob2_at_word_level():
    id2label = dict(enumerate(NER_LABELS))
    lid = {l: i for i, l in id2label.items()}
    # 2 sentences padded to length 6; -100 marks special tokens, continuation sub-words and padding
    gold = np.array([
        [IGNORE_INDEX, lid["B-PER"], lid["I-PER"], IGNORE_INDEX, lid["O"], IGNORE_INDEX],
        [IGNORE_INDEX, lid["B-LOC"], lid["O"], lid["B-ORG"], IGNORE_INDEX, IGNORE_INDEX],
    ])
    pred_ids = np.array([
        [0, lid["B-PER"], lid["I-PER"], lid["B-LOC"], lid["O"], 0],  # continuation prediction ignored
        [0, lid["I-LOC"], lid["O"], lid["B-ORG"], 0, 0],  # an I-LOC start: an entity for conlleval only
    ])
    logits = np.eye(len(NER_LABELS))[pred_ids] * 5
    out = token_metrics(logits, gold, id2label)
    # conlleval's reading (the headline): 3 predicted entities, all right
    assert (out["precision"], out["recall"], out["f1"]) == (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))
    # strict IOB2: 2 predicted entities (the I-LOC one is not), both right
    assert out["strict_precision"] == pytest.approx(1.0)
    assert out["strict_recall"] == pytest.approx(2 / 3)
    assert out["strict_f1"] == pytest.approx(0.8)
    assert out["accuracy"] == pytest.approx(5 / 6)


def test_token_metrics_for_tags_without_entities_are_word_accuracy_only():
    id2label = {0: "NN", 1: "VB", 2: "DT"}
    gold = np.array([[IGNORE_INDEX, 2, 0, 1]])
    logits = np.eye(3)[np.array([[0, 2, 0, 0]])]
    out = token_metrics(logits, gold, id2label)
    assert out == {"accuracy": pytest.approx(2 / 3)}  # no f1/precision/recall: there are no entities


def test_compute_task_metrics_dispatches_on_task():
    sent = SequenceClassificationTask("s", ["a", "b"])
    assert set(compute_task_metrics(sent, _onehot_logits([0, 1], 2), np.array([0, 1]))) == {"accuracy", "macro_f1"}
    reg = SequenceClassificationTask("r", problem_type="regression")
    assert "pearson" in compute_task_metrics(reg, np.array([[0.1], [0.4], [0.3]]), np.array([0.0, 0.5, 0.2]))


def test_collator_pads_one_task_and_carries_its_name(tokenizer):
    ner = TokenClassificationTask("ner", NER_LABELS)
    sent = SequenceClassificationTask("s", ["a", "b"])
    reg = SequenceClassificationTask("r", problem_type="regression")
    collate = MultiTaskDataCollator(tokenizer, [ner, sent, reg])
    batch = collate([
        {"input_ids": [101, 7, 8, 102], "attention_mask": [1, 1, 1, 1], "labels": [-100, 1, 2, -100], "length": 4, "task_name": "ner"},
        {"input_ids": [101, 9, 102], "attention_mask": [1, 1, 1], "labels": [-100, 0, -100], "length": 3, "task_name": "ner"},
    ])
    assert batch["task_name"] == "ner"
    assert batch["input_ids"].tolist() == [[101, 7, 8, 102], [101, 9, 102, 0]]
    assert batch["labels"].tolist() == [[-100, 1, 2, -100], [-100, 0, -100, -100]]
    assert "length" not in batch
    s = collate([{"input_ids": [101, 102], "attention_mask": [1, 1], "labels": 1, "task_name": "s"}])
    assert s["labels"].dtype == torch.long and s["labels"].tolist() == [1]
    r = collate([{"input_ids": [101, 102], "attention_mask": [1, 1], "labels": 0.5, "task_name": "r"}])
    assert r["labels"].dtype == torch.float32
    with pytest.raises(ValueError, match="mixes tasks"):
        collate([
            {"input_ids": [101], "attention_mask": [1], "labels": 1, "task_name": "s"},
            {"input_ids": [101], "attention_mask": [1], "labels": 0.5, "task_name": "r"},
        ])
    with pytest.raises(KeyError, match="unknown task 'x'"):
        collate([{"input_ids": [101], "attention_mask": [1], "labels": 1, "task_name": "x"}])
