"""Bad input, everywhere: each case is a clear error (naming task, split, row and value where there is one)
or a documented, counted skip (a warning with the count and the rows). Nothing is silently wrong."""

from __future__ import annotations

import logging
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModel

SCRIPTS = Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import mtl_fixture  # noqa: E402

import hf_mtl  # noqa: E402
from hf_mtl import (  # noqa: E402
    MultiTaskConfig,
    MultiTaskModel,
    MultiTaskTrainer,
    MultiTaskTrainingArguments,
    SequenceClassificationTask,
    prepare_datasets,
)


@pytest.fixture(scope="module")
def tok():
    return mtl_fixture.tokenizer()


def trainer_with(tok, tmp_path, train=None, eval=None, **arg_overrides) -> MultiTaskTrainer:
    args = MultiTaskTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **arg_overrides)
    return MultiTaskTrainer(
        model=mtl_fixture.model(), args=args, train_dataset=train, eval_dataset=eval, processing_class=tok
    )


def sentiment(texts, labels) -> dict[str, Dataset]:
    return {"sentiment": Dataset.from_dict({"text": texts, "label": labels})}


# ---------------------------------------------------------------------------- labels
def test_label_not_in_label_set(tok, tmp_path):
    with pytest.raises(ValueError, match=r"Task 'sentiment', split 'train', row 2: label 'neutral' is not in the task's label set"):
        trainer_with(tok, tmp_path, train=sentiment(["a", "b", "c"], ["positive", "negative", "neutral"]))
    with pytest.raises(ValueError, match=r"split 'validation', row 1: label 5 is not in the task's label set"):
        trainer_with(tok, tmp_path, eval=sentiment(["a", "b"], [0, 5]))


@pytest.mark.parametrize(
    ("labels", "shown"),
    [([0.0, 1.0], "label 0.0 has type float"), ([[0], [1]], r"label \[0\] has type list"), ([True, False], "label True has type bool")],
)
def test_label_column_of_wrong_type(tok, tmp_path, labels, shown):
    with pytest.raises(ValueError, match=rf"Task 'sentiment', split 'train', row 0: {shown}; expected a label name"):
        trainer_with(tok, tmp_path, train=sentiment(["a", "b"], labels))


def test_multi_label_row_with_unknown_label(tok, tmp_path):
    train = {"topics": Dataset.from_dict({"text": ["a", "b"], "label": [["World"], ["Sports", "Weather"]]})}
    with pytest.raises(ValueError, match=r"Task 'topics', split 'train', row 1: label 'Weather' is not in the task's label set"):
        trainer_with(tok, tmp_path, train=train)
    single = {"topics": Dataset.from_dict({"text": ["a"], "label": ["World"]})}  # not a list
    with pytest.raises(ValueError, match=r"row 0: multi-label value 'World' must be a list"):
        trainer_with(tok, tmp_path, train=single)


def test_class_label_id_whose_name_is_not_a_task_label(tok, tmp_path):
    from datasets import ClassLabel, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "neutral", "positive"])})
    data = {"sentiment": Dataset.from_dict({"text": ["a", "b"], "label": [2, 1]}, features=features)}
    with pytest.raises(ValueError, match=r"Task 'sentiment', split 'train', row 1: label 1 \(ClassLabel name 'neutral' of "
                                         r"column 'label'\) is not in the task's label set; known labels are \['negative', 'positive'\]"):
        trainer_with(tok, tmp_path, train=data)


# ---------------------------------------------------------------------------- token classification rows
def test_ner_row_whose_tags_and_tokens_differ_in_length(tok, tmp_path):
    train = {"ner": Dataset.from_dict({"tokens": [["John", "lives"], ["in", "Paris", "now"]],
                                       "tags": [["B-PER", "O"], ["O", "B-LOC"]]})}
    with pytest.raises(ValueError, match=r"Task 'ner', split 'train', row 1: 3 words in 'tokens' but 2 tags in 'tags'"):
        trainer_with(tok, tmp_path, train=train)


def test_empty_tokens_list_is_a_counted_skip(tok, tmp_path, caplog):
    train = {"ner": Dataset.from_dict({"tokens": [["John"], [], ["Paris"], []],
                                       "tags": [["B-PER"], [], ["B-LOC"], []]})}
    with caplog.at_level(logging.WARNING, logger="hf_mtl.preprocessing"):
        trainer = trainer_with(tok, tmp_path, train=train)
    assert len(trainer.train_datasets["ner"]) == 2
    assert "Task 'ner' (train): skipped 2 of 4 rows with an empty word list (rows 1, 3)" in caplog.text


# ---------------------------------------------------------------------------- texts
@pytest.mark.parametrize("blank", ["", "   ", "\t\n", "\u3000\u00a0"], ids=["empty", "spaces", "tab-newline", "unicode-spaces"])
def test_empty_or_whitespace_text_is_a_counted_skip(tok, tmp_path, caplog, blank):
    with caplog.at_level(logging.WARNING, logger="hf_mtl.preprocessing"):
        trainer = trainer_with(tok, tmp_path, train=sentiment(["good", blank, "bad"], [1, 1, 0]),
                               eval=sentiment([blank, "fine"], [0, 1]))
    assert trainer.train_datasets["sentiment"]["labels"] == [1, 0]
    assert len(trainer.eval_datasets["sentiment"]) == 1
    assert "Task 'sentiment' (train): skipped 1 of 3 rows with empty or whitespace-only text (rows 1)" in caplog.text
    assert "Task 'sentiment' (validation): skipped 1 of 2 rows" in caplog.text


def test_text_pair_with_an_empty_text_is_a_counted_skip_and_an_empty_pair_is_no_pair(tok, caplog):
    task = SequenceClassificationTask("nli", ["yes", "no"], text_pair_column="hypothesis")
    data = Dataset.from_dict({"text": ["a cat", "a dog", "", "a cow"], "hypothesis": ["an animal", " ", "x", None],
                              "label": [0, 1, 0, 1]})
    with caplog.at_level(logging.WARNING, logger="hf_mtl.preprocessing"):
        prepared = prepare_datasets({"nli": data}, [task], tok)
    # as the built-in text-classification pipeline: a whitespace pair stays a pair, a missing one is no pair
    assert prepared["nli"]["input_ids"] == [tok(text=t, text_pair=p)["input_ids"] for t, p in
                                            [("a cat", "an animal"), ("a dog", " "), ("a cow", None)]]
    assert "skipped 1 of 4 rows with empty or whitespace-only text (rows 2)" in caplog.text


def test_text_that_is_not_a_string(tok, tmp_path):
    with pytest.raises(ValueError, match=r"row 1: column 'text' holds None \(NoneType\); expected a string"):
        trainer_with(tok, tmp_path, train=sentiment(["good", None], [1, 0]))


def test_max_length_longer_than_the_encoder_positions(tok, tmp_path):
    with pytest.raises(ValueError, match=r"max_length=600 is longer than the model can take: its encoder reads at most 512"):
        trainer_with(tok, tmp_path, train=sentiment(["good"], [1]), max_length=600)


# ---------------------------------------------------------------------------- empty tasks
def test_task_with_zero_rows_after_filtering(tok, tmp_path):
    data = mtl_fixture.datasets()
    data["sentiment"] = data["sentiment"].filter(lambda row: False)
    with pytest.raises(ValueError, match=r"Task 'sentiment' \(train\): the dataset is empty"):
        trainer_with(tok, tmp_path, train=data)
    with pytest.raises(ValueError, match=r"Task 'sentiment' \(train\): no rows left: all 2 rows have empty or whitespace-only text"):
        trainer_with(tok, tmp_path, train=sentiment(["", " "], [0, 1]))
    with pytest.raises(ValueError, match=r"Task 'ner' \(train\): no rows left: all 1 rows have an empty word list"):
        trainer_with(tok, tmp_path, train={"ner": Dataset.from_dict({"tokens": [[]], "tags": [[]]})})


# ---------------------------------------------------------------------------- tasks and keys
def test_two_tasks_with_the_same_name():
    tasks = [mtl_fixture.tasks()[0], SequenceClassificationTask("sentiment", ["bad", "good", "meh"])]
    with pytest.raises(ValueError, match=r"Task names must be unique; \['sentiment'\] appear more than once"):
        MultiTaskConfig(encoder=mtl_fixture.model().config.encoder, tasks=[t.to_config_dict() for t in tasks])
    with pytest.raises(ValueError, match="Task names must be unique"):
        hf_mtl.tasks.check_unique_names(tasks)


def test_dataset_key_that_is_not_a_model_task(tok, tmp_path):
    data = {**mtl_fixture.datasets(), "sentiments": mtl_fixture.datasets()["sentiment"]}
    with pytest.raises(KeyError, match=r"\['sentiments'\] that are not tasks of the model; its tasks are \['sentiment', 'topics', 'ner'\]"):
        trainer_with(tok, tmp_path, train=data)
    with pytest.raises(KeyError, match="not tasks of the model"):
        trainer_with(tok, tmp_path, eval={"pos": mtl_fixture.datasets()["ner"]})
    with pytest.raises(KeyError, match="task_weights has key"):
        trainer_with(tok, tmp_path, train=mtl_fixture.datasets(), task_weights={"nerr": 2.0})


# ---------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt")
    mtl_fixture.model().save_pretrained(path)
    return path


def copy_of(checkpoint: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(checkpoint, tmp_path / "copy"))


def test_checkpoint_whose_tasks_differ(checkpoint):
    changed = mtl_fixture.tasks()
    changed[0] = SequenceClassificationTask("sentiment", ["negative", "neutral", "positive"])
    with pytest.raises(ValueError, match=r"Task 'sentiment' exists in the checkpoint as .* with labels \['negative', 'positive'\]"):
        MultiTaskModel.from_pretrained(checkpoint, tasks=changed)


def test_from_pretrained_on_a_directory_without_weights(checkpoint, tmp_path):
    target = copy_of(checkpoint, tmp_path)
    (target / "model.safetensors").unlink()
    with pytest.raises(OSError, match="no file named model.safetensors"):
        MultiTaskModel.from_pretrained(target)


@pytest.mark.parametrize("keep", [0.5, 0.999, 5 / 4_000_000])
def test_loading_a_truncated_model_safetensors(checkpoint, tmp_path, keep):
    target = copy_of(checkpoint, tmp_path)
    data = (target / "model.safetensors").read_bytes()
    (target / "model.safetensors").write_bytes(data[: max(1, int(len(data) * keep))])
    with pytest.raises(OSError, match=r"model.safetensors is truncated or corrupt.*download or save it again"):
        MultiTaskModel.from_pretrained(target)
    with pytest.raises(OSError, match="truncated or corrupt"):
        AutoModel.from_pretrained(target)


# ---------------------------------------------------------------------------- security
class _Payload:
    """Unpickling this creates a marker directory: proof that a pickle was executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_weights_never_load_from_a_pickle(checkpoint, tmp_path):
    target = copy_of(checkpoint, tmp_path)
    (target / "model.safetensors").unlink()
    marker = tmp_path / "pickle-was-executed"
    (target / "pytorch_model.bin").write_bytes(pickle.dumps({"encoder.x": _Payload(str(marker))}))
    for load in (MultiTaskModel.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(OSError, match="safetensors only"):
            load(target)
    with pytest.raises(ValueError, match="safetensors only"):
        MultiTaskModel.from_pretrained(checkpoint, use_safetensors=False)
    assert not marker.exists()
    # what save_pretrained writes: safetensors weights, no pickle
    assert (checkpoint / "model.safetensors").is_file() and not list(checkpoint.glob("*.bin"))


def test_hf_mtl_checkpoint_loads_without_trust_remote_code(checkpoint):
    config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=False)
    model = AutoModel.from_pretrained(checkpoint, trust_remote_code=False)
    assert type(config) is hf_mtl.MultiTaskConfig
    assert type(model) is hf_mtl.MultiTaskModel  # the installed class, not code copied from the checkpoint
    reference = mtl_fixture.model()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


# ============================================================================ issue 6: files, recipes, CLI
# Bad data files and recipes: each is a clear error naming the file and line (or the recipe key path) and
# what was expected; nothing in a recipe is executed or evaluated.
from hf_mtl.cli import main  # noqa: E402
from hf_mtl.data.loaders import DataFileError, read_file  # noqa: E402
from hf_mtl.recipe import RecipeError, apply_overrides, load_recipe  # noqa: E402

# the same rows in three formats; line 3 holds "Zürich" written as latin-1 (0xfc), not UTF-8
_LATIN1_FILES = {
    "ner.conll": ("Anna B-PER\nsings O\nZürich B-LOC\n", 2),
    "rows.csv": ("text,label\nfine,pos\nZürich,neg\n", 2),
    "rows.jsonl": ('{"text": "fine"}\n\n{"text": "Zürich"}\n', 12),
}


@pytest.mark.parametrize("name", sorted(_LATIN1_FILES))
def test_data_file_that_is_not_utf8(tmp_path, name):
    text, column = _LATIN1_FILES[name]
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataFileError, match=rf"{name}:3: not valid utf-8 text \(byte 0xfc at column {column}\); "
                                            r"convert the file to utf-8 or set the source's `encoding:` option"):
        read_file(path)
    assert "Zürich" in str(read_file(path, encoding="latin-1").to_list())  # the option the message names
    with pytest.raises(DataFileError, match=rf"{name}: unknown text encoding 'latin-9x'"):
        read_file(path, encoding="latin-9x")


def test_line_of_a_bad_byte_deep_in_a_file(tmp_path):
    """The reader decodes in chunks; the line is found again, counting rows that span lines and CR/LF endings."""
    path = tmp_path / "big.csv"
    body = "text,label\r\n" + "ok,pos\r\n" * 5000 + '"two\r\nlines",pos\r\n'
    path.write_bytes(body.encode() + b"caf\xe9,neg\r\n")
    with pytest.raises(DataFileError, match=r"big\.csv:5004: not valid utf-8 text \(byte 0xe9 at column 4\)"):
        read_file(path)
    path.write_bytes(b'{"a": 1}\n{"a": "\xc3')  # a character cut off at the end of the file
    with pytest.raises(DataFileError, match=r"big\.csv:2: not valid utf-8 text \(byte 0xc3 at column 8\)"):
        read_file(path, "jsonl")


def test_csv_row_with_a_missing_field(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("text,label\nfine,pos\nno label here\nalso fine,neg\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"rows\.csv:3: expected 2 fields \(text, label\), got 1: \['no label here'\]"):
        read_file(path)


def _recipe(folder: Path, encoder: str = "does/not/exist", **changes) -> dict:
    (folder / "s.csv").write_text("text,label\na great film,pos\nan awful film,neg\n", encoding="utf-8")
    recipe = {
        "encoder": encoder,
        "output_dir": str(folder / "out"),
        "tasks": [{"name": "sentiment", "type": "sequence_classification", "labels": ["negative", "positive"],
                   "data": {"files": {"train": "s.csv", "validation": "s.csv"},
                            "label_map": {"neg": "negative", "pos": "positive"}}}],
        "training": {"max_steps": 1, "use_cpu": True, "report_to": "none"},
    }
    recipe.update(changes)
    return recipe


def _write(folder: Path, recipe: dict) -> Path:
    import yaml

    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith(f"hf-mtl {command}: error: "), err
    return err


def test_not_utf8_data_through_a_recipe(tmp_path, capsys):
    recipe = _write(tmp_path, _recipe(tmp_path))
    (tmp_path / "s.csv").write_bytes("text,label\nfine,pos\nZürich,neg\n".encode("cp1252"))
    assert main(["train", str(recipe)]) == 2  # found before the (missing) encoder is loaded
    assert "s.csv:3: not valid utf-8 text (byte 0xfc at column 2)" in _one_line_error(capsys, "train")
    from hf_mtl.data.sources import load_task_data

    fixed = load_recipe(recipe, ["tasks[0].data.encoding=cp1252"]).tasks[0]
    assert load_task_data(fixed.data, fixed.task)["train"]["text"] == ["fine", "Zürich"]
    assert main(["train", str(recipe), "--set", "tasks[0].data.encoding=no-such-codec"]) == 2
    assert "unknown text encoding 'no-such-codec'" in _one_line_error(capsys, "train")


def test_recipe_python_tags_are_refused_and_never_run(tmp_path, capsys):
    marker = tmp_path / "pwned-marker"
    payload = f'!!python/object/apply:os.system ["touch {marker}"]'
    recipe = _write(tmp_path, _recipe(tmp_path))
    text = recipe.read_text(encoding="utf-8")
    for key in ("encoder", "  max_steps"):  # a top-level value and a nested one
        start = text.index(f"{key}:")
        line = text.count("\n", 0, start) + 1
        end = text.index("\n", start)
        recipe.write_text(f"{text[:start]}{key}: {payload}{text[end:]}", encoding="utf-8")
        with pytest.raises(RecipeError, match=rf"recipe\.yaml:{line}:\d+: not valid YAML \(could not determine a "
                                              r"constructor for the tag 'tag:yaml.org,2002:python/object/apply"):
            load_recipe(recipe)
        assert main(["train", str(recipe)]) == 2
        assert f"recipe.yaml:{line}:" in _one_line_error(capsys, "train")
    recipe.write_text(text, encoding="utf-8")
    for value in (payload, "!!python/name:os.getcwd ''"):  # --set values are YAML too, read just as safely
        with pytest.raises(RecipeError, match=r"--set training\.max_steps=.*: the value is not valid YAML"):
            apply_overrides({}, [f"training.max_steps={value}"])
        assert main(["train", str(recipe), "--set", f"training.max_steps={value}"]) == 2
        _one_line_error(capsys, "train")
    assert not marker.exists()


def test_recipe_values_are_never_evaluated(tmp_path, capsys):
    expression = "__import__('os').getcwd()"
    with pytest.raises(RecipeError, match=r"training\.learning_rate: expected float, got string \"__import__\('os'\)"):
        load_recipe(_write(tmp_path, _recipe(tmp_path, training={"learning_rate": expression})))
    recipe = _write(tmp_path, _recipe(tmp_path))
    for key in ("training.learning_rate", "tasks[0].weight", "training.max_steps"):
        assert main(["train", str(recipe), "--set", f"{key}={expression}"]) == 2
        assert f"{key}: expected" in _one_line_error(capsys, "train")
    # where a string is expected, the expression is kept as plain text, never run
    loaded = load_recipe(recipe, [f"tasks[0].data.name={expression}", f"training.run_name={expression}"])
    assert loaded.tasks[0].data.name == expression and loaded.training["run_name"] == expression


def test_evaluate_with_a_checkpoint_whose_tasks_differ(checkpoint, tmp_path, capsys):
    """The checkpoint has sentiment, topics and ner; a recipe task it lacks is a one-line error (exit 2)."""
    raw = _recipe(tmp_path)
    raw["tasks"][0]["name"] = "sentiments"
    assert main(["evaluate", str(checkpoint), str(_write(tmp_path, raw))]) == 2
    err = _one_line_error(capsys, "evaluate")
    assert "tasks[0].name: 'sentiments' is not a head of the model (its heads: ['ner', 'sentiment', 'topics'])" in err
    raw["tasks"][0].update(name="sentiment", labels=["negative", "neutral"])
    raw["tasks"][0]["data"]["label_map"] = {"neg": "negative", "pos": "neutral"}
    assert main(["evaluate", str(checkpoint), str(_write(tmp_path, raw))]) == 2
    assert "tasks[0].labels: ['negative', 'neutral'] differ from the model's labels for 'sentiment'" in (
        _one_line_error(capsys, "evaluate"))
    raw["tasks"][0].update(labels=["negative", "positive"], problem_type="multi_label_classification")
    raw["tasks"][0]["data"]["label_map"] = {"neg": "negative", "pos": "positive"}
    assert main(["evaluate", str(checkpoint), str(_write(tmp_path, raw))]) == 2
    assert ("tasks[0]: 'sentiment' is declared as sequence_classification/multi_label_classification but the "
            "model's head is sequence_classification/single_label_classification") in _one_line_error(capsys, "evaluate")
