"""Real MiniLM encoder on slices of ../shared/data: three tasks train, losses fall, every metric reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import pytest

from hf_mtl import (
    MultiTaskModel,
    MultiTaskTrainer,
    MultiTaskTrainingArguments,
    SequenceClassificationTask,
    TokenClassificationTask,
)

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AG_NEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DATA_DIR / "sst2").is_dir(),
        reason=f"real data not found at {DATA_DIR} (the project's ../shared/data); integration test skipped",
    ),
]


def _load(split: str, n: int, seed: int = 0) -> dict:
    from hf_mtl.data.loaders import read_conll, read_delimited

    sst_file = "train.tsv" if split == "train" else "validation.tsv"
    sst = read_delimited(DATA_DIR / "sst2" / sst_file, delimiter="\t", header=True, quotechar=None)
    sst = sst.shuffle(seed=seed).select(range(n)).map(lambda r: {"text": r["sentence"], "label": int(r["label"])})
    ag = read_delimited(
        DATA_DIR / "ag_news" / f"{split}.csv", header=False, column_names=["label", "title", "description"]
    )
    ag = ag.shuffle(seed=seed).select(range(n)).map(
        lambda r: {"text": f"{r['title']}. {r['description']}", "label": AG_NEWS_CLASSES[int(r["label"]) - 1]}
    )
    conll = read_conll(DATA_DIR / "conll2003" / f"{split}.txt")
    conll = conll.shuffle(seed=seed).select(range(n))
    return {"sentiment": sst, "topic": ag, "ner": conll}


def test_real_minilm_three_task_fine_tune(tmp_path, minilm_dir):
    tasks = [
        SequenceClassificationTask("sentiment", ["negative", "positive"]),
        SequenceClassificationTask("topic", AG_NEWS_CLASSES),
        TokenClassificationTask("ner", CONLL_LABELS),
    ]
    torch.manual_seed(0)  # the heads' initialisation must not depend on which tests ran before
    model = MultiTaskModel.from_encoder(minilm_dir, tasks=tasks)
    args = MultiTaskTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=2e-4,
        warmup_steps=0,
        max_steps=36,
        logging_steps=6,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        group_by_length=True,
        max_length=96,
        disable_tqdm=True,
    )
    trainer = MultiTaskTrainer(
        model=model,
        args=args,
        train_dataset=_load("train", 192),
        eval_dataset=_load("validation", 64),
    )
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log and "eval_average" not in log]
    for task in ("sentiment", "topic", "ner"):
        series = [log[f"{task}_loss"] for log in logs if f"{task}_loss" in log]
        assert len(series) >= 4, (task, series)
        assert np.mean(series[-2:]) < np.mean(series[:2]), (task, series)
    metrics = trainer.evaluate()
    for key in ("eval_sentiment_accuracy", "eval_topic_accuracy", "eval_ner_f1", "eval_ner_precision",
                "eval_ner_recall", "eval_average", "eval_loss"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert metrics["eval_topic_accuracy"] > 0.4  # well above the 0.25 of chance after 12 batches
    trainer.save_model(tmp_path / "model")
    reloaded = MultiTaskModel.from_pretrained(tmp_path / "model")
    assert reloaded.config.task_names == ["sentiment", "topic", "ner"]
