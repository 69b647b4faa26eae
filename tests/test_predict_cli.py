"""`hf-mtl predict`: TEXT arguments, files (plain text and JSON lines), stdin, --tasks, --output, errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import BertConfig

from hf_mtl import MultiTaskConfig, MultiTaskModel, MultiTaskPipeline
from hf_mtl.cli import main

TASKS = [
    {"name": "sentiment", "task_type": "sequence_classification", "id2label": {0: "negative", 1: "positive"}},
    {"name": "ner", "task_type": "token_classification", "id2label": dict(enumerate(["O", "B-LOC", "I-LOC"]))},
]
TEXTS = ["Apple opened a store in Paris", "", "Zürich is lovely, isn't it?", "a somewhat longer third line of text here"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer) -> str:
    torch.manual_seed(0)
    encoder = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=TASKS))
    out = tmp_path_factory.mktemp("predict_model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def expected(model_dir) -> list[dict]:
    return MultiTaskPipeline(model=model_dir, device="cpu")(TEXTS)


def _read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _assert_same(results: list[dict], expected: list[dict]) -> None:
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        assert list(got) == list(want)
        assert got["sentiment"]["label"] == want["sentiment"]["label"]
        assert got["sentiment"]["score"] == pytest.approx(want["sentiment"]["score"], abs=1e-5)
        assert [(e["entity_group"], e["start"], e["end"]) for e in got["ner"]] == [
            (e["entity_group"], e["start"], e["end"]) for e in want["ner"]
        ]


def test_plain_text_file_to_output_file(model_dir, expected, tmp_path, capsys):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"
    assert main(["predict", model_dir, "--input", str(source), "--output", str(target), "--batch-size", "2"]) == 0
    _assert_same(_read_jsonl(target.read_text(encoding="utf-8")), expected)
    assert "Predicting" in capsys.readouterr().err  # progress bar on files


def test_jsonl_from_stdin_to_stdout(model_dir, expected, monkeypatch, capsys):
    lines = [json.dumps({"text": t, "id": i}) for i, t in enumerate(TEXTS)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n\n"))
    assert main(["predict", model_dir, "--input", "-", "--no-progress"]) == 0
    _assert_same(_read_jsonl(capsys.readouterr().out), expected)


def test_text_arguments_and_tasks(model_dir, expected, capsys):
    assert main(["predict", model_dir, TEXTS[0], TEXTS[2], "--tasks", "ner"]) == 0
    results = _read_jsonl(capsys.readouterr().out)
    assert [list(r) for r in results] == [["ner"], ["ner"]]
    assert results[0]["ner"] == expected[0]["ner"] and results[1]["ner"] == expected[2]["ner"]


def test_token_heads_default_to_the_pipelines_first_strategy(model_dir, capsys):
    text = "Schwarzenegger Kowalczyk Düsseldorf"  # words of several sub-words: "first" and "simple" differ here
    pipe = MultiTaskPipeline(model=model_dir, device="cpu")
    first, simple = (pipe(text, tasks="ner", aggregation_strategy=s)["ner"] for s in ("first", "simple"))
    assert first != simple
    assert main(["predict", model_dir, text, "--tasks", "ner"]) == 0
    assert _read_jsonl(capsys.readouterr().out)[0]["ner"] == first
    assert main(["predict", model_dir, text, "--tasks", "ner", "--aggregation-strategy", "simple"]) == 0
    assert _read_jsonl(capsys.readouterr().out)[0]["ner"] == simple


def test_text_pairs_in_jsonl(model_dir, tmp_path, capsys):
    source = tmp_path / "pairs.jsonl"
    source.write_text(json.dumps({"text": "Paris", "text_pair": "I love it"}) + "\n", encoding="utf-8")
    assert main(["predict", model_dir, "--input", str(source), "--no-progress"]) == 0
    (result,) = _read_jsonl(capsys.readouterr().out)
    pipe = MultiTaskPipeline(model=model_dir, device="cpu")
    assert result["sentiment"]["label"] == pipe({"text": "Paris", "text_pair": "I love it"})["sentiment"]["label"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "fine"}\n{"txt": "typo"}\n', "line 2: expected an object with a \"text\" string"),
        ('{"text": "fine"}\n{not json\n', "line 2: not valid JSON"),
    ],
)
def test_bad_jsonl_lines_are_reported_with_their_line(model_dir, tmp_path, capsys, content, message):
    source = tmp_path / "bad.jsonl"
    source.write_text(content, encoding="utf-8")
    assert main(["predict", model_dir, "--input", str(source)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_errors_without_input_or_with_an_unknown_task(model_dir, capsys):
    assert main(["predict", model_dir]) == 2
    assert "nothing to predict on" in capsys.readouterr().err
    assert main(["predict", model_dir, "text", "--tasks", "nope"]) == 2
    assert "['sentiment', 'ner']" in capsys.readouterr().err
    assert main(["predict", model_dir, "--input", "/no/such/file.txt"]) == 2


@pytest.mark.slow
def test_module_entry_point_reads_real_stdin(model_dir, expected):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "hf_mtl", "predict", model_dir, "--input", "-"],
        input="\n".join(TEXTS) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    _assert_same(_read_jsonl(done.stdout), expected)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pretty_prints_a_few_texts_on_a_terminal(model_dir, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["predict", model_dir, TEXTS[0]]) == 0
    shown = terminal.getvalue()
    assert shown.startswith(f">>> {TEXTS[0]}\n{{\n") and '  "sentiment": {' in shown
