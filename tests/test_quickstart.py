"""`hf-mtl quickstart` end to end with the real MiniLM encoder (about a minute on 2 CPU cores)."""

from __future__ import annotations

import re

import pytest
from huggingface_hub import ModelCard

from hf_mtl.cli import main


@pytest.mark.slow
def test_quickstart_trains_evaluates_saves_and_predicts(tmp_path, capsys):
    out_dir = tmp_path / "quickstart"
    assert main(["quickstart", "--output-dir", str(out_dir)]) == 0
    out = capsys.readouterr().out

    scores = dict(re.findall(r"^  (sentiment|topic|ner) +(?:accuracy|f1) ([0-9.]+)", out, flags=re.M))
    assert set(scores) == {"sentiment", "topic", "ner"}, out
    # the shipped data are easy: every head learns well beyond chance in the short run
    assert float(scores["sentiment"]) > 0.8 and float(scores["topic"]) > 0.8 and float(scores["ner"]) > 0.4

    assert "Predictions of the saved model:" in out
    predictions = out.split("Predictions of the saved model:")[1]
    assert predictions.count("sentiment: ") == 3 and predictions.count("ner: ") == 3
    assert "[PER]" in predictions  # "Maria Lopez" in the last example

    for name in ("config.json", "model.safetensors", "modeling_multitask.py", "configuration_multitask.py",
                 "tokenizer.json", "README.md", "training_curves.png"):
        assert (out_dir / name).is_file(), name
    card = ModelCard.load(out_dir / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.model_name == "hf-mtl-quickstart-minilm"
    assert {r.task_name for r in card.data.eval_results} == {"sentiment", "topic", "ner"}
    assert "![Training loss and evaluation metric per task over training steps](training_curves.png)" in card.text
