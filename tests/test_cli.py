"""The `hf-mtl` train/evaluate/push/quickstart commands: help, exit codes, one-line errors, a tiny end-to-end run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import write_tiny_recipe_files
from huggingface_hub import ModelCard

from hf_mtl.cli import main

COMMANDS = ("train", "evaluate", "search", "annotate", "export", "merge", "push", "quickstart")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_complete(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: hf-mtl {command}" in text and "examples:" in text
    if command in ("train", "evaluate", "search"):
        assert "--set KEY.PATH=VALUE" in text and "--data-dir DIR" in text


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "hf_mtl", "train", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "usage: hf-mtl train" in result.stdout


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"hf-mtl {command}: error: ")
    return err


# ---------------------------------------------------------------------------- a tiny recipe
def write_recipe(folder: Path, encoder: Path, **changes) -> Path:
    write_tiny_recipe_files(folder)
    recipe = {
        "encoder": str(encoder),
        "output_dir": str(folder / "model"),
        "num_threads": 1,
        "tasks": [
            {"name": "sentiment", "type": "sequence_classification", "labels": ["neg", "pos"],
             "data": {"files": {"train": "s.tsv", "validation": "s.tsv"}}},
            {"name": "topic", "type": "sequence_classification", "labels": ["even", "odd"],
             "data": {"files": {"train": "t.csv", "validation": "t.csv"}, "header": False,
                      "column_names": ["label", "text"], "label_map": {1: "odd", 2: "even"}}},
            {"name": "ner", "type": "token_classification", "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
             "data": {"files": {"train": "n.conll", "validation": "n.conll"}}},
        ],
        "training": {"max_steps": 4, "per_device_train_batch_size": 4, "logging_steps": 2, "eval_strategy": "steps",
                     "eval_steps": 2, "save_strategy": "no", "report_to": "none", "max_length": 32,
                     "use_cpu": True},
        "card": {"model_name": "tiny-cli"},
        "predict": ["Anna loved the film in Oslo."],
    }
    recipe.update(changes)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def test_train_evaluate_end_to_end(tmp_path, tiny_encoder, capsys):
    recipe = write_recipe(tmp_path, tiny_encoder)
    assert main(["train", str(recipe), "--set", "training.seed=3"]) == 0
    out = capsys.readouterr().out
    assert "Evaluation on validation:" in out and "average" in out
    assert "Predictions of the saved model:" in out and "Anna loved the film in Oslo." in out
    assert "sentiment:" in out and "ner:" in out
    model_dir = tmp_path / "model"
    for name in ("config.json", "model.safetensors", "modeling_multitask.py", "tokenizer.json", "README.md",
                 "training_curves.png"):
        assert (model_dir / name).is_file(), name
    card = ModelCard.load(model_dir / "README.md")
    assert card.data.model_name == "tiny-cli" and len({r.task_name for r in card.data.eval_results}) == 3
    assert card.data.base_model is None  # a local encoder folder is not a Hub id
    assert "| `topic` | text classification | `even`, `odd` | train: t.csv; validation: t.csv |" in card.text
    assert f"`{tiny_encoder.name}` (a local model) encoder" in card.text

    results = tmp_path / "results.json"
    assert main(["evaluate", str(model_dir), str(recipe), "--json", str(results), "--batch-size", "8"]) == 0
    assert "Evaluation on validation:" in capsys.readouterr().out
    metrics = json.loads(results.read_text())
    assert {"validation_sentiment_accuracy", "validation_topic_accuracy", "validation_ner_f1",
            "validation_average"} <= set(metrics)

    assert main(["evaluate", str(model_dir), str(recipe), "--split", "test"]) == 2
    assert "no task of the recipe has a 'test' split" in one_line_error(capsys, "evaluate")
    assert main(["evaluate", str(model_dir), str(recipe), "--set", "tasks[1].labels=[a, b]",
                 "--set", "tasks[1].data.label_map=[a, b, a]"]) == 2
    assert "tasks[1].labels: ['a', 'b'] differ from the model's labels" in one_line_error(capsys, "evaluate")


def test_user_errors_exit_2_with_one_line(tmp_path, tiny_encoder, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "recipe not found" in one_line_error(capsys, "train")

    recipe = write_recipe(tmp_path, tiny_encoder)
    assert main(["train", str(recipe), "--set", "tasks[0].data.format=xml"]) == 2
    assert "tasks[0].data.format: 'xml' is not one of" in one_line_error(capsys, "train")

    assert main(["train", str(recipe), "--set", "training.learning_rate"]) == 2
    assert "expected KEY.PATH=VALUE" in one_line_error(capsys, "train")

    assert main(["train", str(recipe), "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in one_line_error(capsys, "train")

    # data problems are found before the encoder is loaded (it does not even exist here)
    (tmp_path / "s.tsv").write_text("text\tlabel\nfine\tpos\nodd\tmeh\n", encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    assert main(["train", str(recipe), "--set", "encoder=does/not/exist"]) == 2
    err = one_line_error(capsys, "train")
    assert "s.tsv (task 'sentiment', train), row 1: not one of the task's labels ['neg', 'pos']" in err

    assert main(["train", str(recipe), "--set", "training.eval_strategy=bogus"]) == 2
    assert "training: " in one_line_error(capsys, "train")

    assert main(["evaluate", str(tmp_path / "no_model"), str(recipe)]) == 2
    one_line_error(capsys, "evaluate")

    assert main(["quickstart", "--set", "training.max_stepz=3"]) == 2
    assert "training.max_stepz: unknown key; did you mean 'max_steps'?" in one_line_error(capsys, "quickstart")


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: hf-mtl" in capsys.readouterr().out


def test_train_is_reproducible_with_the_recipe_seed(tmp_path, tiny_encoder, capsys):
    """The recipe's seed also covers the heads' initialisation (the model is built before the Trainer seeds),
    so two runs with the same seed save bit-identical weights, and another seed does not."""
    from safetensors.numpy import load_file

    def train(folder: Path, seed: int) -> dict:
        folder.mkdir()
        recipe = write_recipe(folder, tiny_encoder)
        assert main(["train", str(recipe), "--set", f"training.seed={seed}"]) == 0
        capsys.readouterr()
        return load_file(str(folder / "model" / "model.safetensors"))

    first, second, other = train(tmp_path / "a", 5), train(tmp_path / "b", 5), train(tmp_path / "c", 6)
    assert all((first[k] == second[k]).all() for k in first)
    assert any((first[k] != other[k]).any() for k in first if k.startswith("heads."))


def test_quickstart_prints_its_recipe_as_a_copy_to_edit(tmp_path, capsys):
    from hf_mtl.recipe import load_recipe

    assert main(["quickstart", "--print-recipe"]) == 0
    copy = tmp_path / "my_quickstart.yaml"
    copy.write_text(capsys.readouterr().out, encoding="utf-8")
    recipe = load_recipe(copy)  # runs from any folder: the data paths point at the installed files
    assert recipe.card.model_name == "hf-mtl-quickstart-minilm" and len(recipe.tasks) == 3
    assert all(Path(p).is_absolute() and Path(p).is_file() for t in recipe.tasks for p in t.data.files.values())
    assert main(["quickstart", "--print-recipe", "--set", "training.max_steps=3"]) == 2
    assert "--print-recipe prints the shipped recipe as it is" in one_line_error(capsys, "quickstart")


# ---------------------------------------------------------------------------- the job layer, without the CLI
def test_jobs_return_results_and_print_nothing(tmp_path, tiny_encoder, capsys):
    from hf_mtl.jobs import evaluate_recipe, train_recipe
    from hf_mtl.recipe import load_recipe

    recipe = load_recipe(write_recipe(tmp_path, tiny_encoder), ["training.eval_strategy='no'", "training.max_steps=2"])
    lines = []
    result = train_recipe(recipe, progress=lines.append)
    out = capsys.readouterr().out  # the Trainer's own log lines only: the job reports through its results
    assert "Evaluation on" not in out and "Saved the model" not in out and "Predictions" not in out
    assert lines[0].startswith("hf-mtl: task 'sentiment': 12 train, 12 validation examples from ")
    assert lines[-1].startswith("hf-mtl: loading encoder ")
    assert result.output_dir == tmp_path / "model" and (result.output_dir / "README.md").is_file()
    assert set(result.metrics) >= {"eval_sentiment_accuracy", "eval_ner_f1", "eval_average"}
    assert len(result.predictions) == 1 and set(result.predictions[0]) == {"sentiment", "topic", "ner"}
    # the job recorded the recipe's data sources and card settings for the card
    record = result.trainer.run_record
    assert record.data_sources["topic"]["description"] == "train: t.csv; validation: t.csv"
    assert record.card_settings.model_name == "tiny-cli"
    assert record.card_settings.example_text == "Anna loved the film in Oslo."

    evaluation = evaluate_recipe(result.output_dir, recipe, "validation", batch_size=4)
    assert evaluation.split == "validation" and "validation_topic_accuracy" in evaluation.metrics
    assert "Evaluation on" not in capsys.readouterr().out
