"""A task kind added from outside hf_mtl in one file (tests/plugins/word_scores.py, registered by importing it):
trained with two built-in kinds through `MultiTaskTrainer`, saved, reloaded, evaluated, predicted through
`pipeline("multitask")`, read from recipes and data files and described on the card; without the plugin a
checkpoint of that kind fails to load with a clear error. Also the checks `register_task_kind` makes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import pipeline

from hf_mtl import (
    MultiTaskDataCollator,
    MultiTaskModel,
    MultiTaskTrainer,
    MultiTaskTrainingArguments,
    SequenceClassificationTask,
    Task,
    TokenClassificationTask,
    WordLevelTask,
    prepare_datasets,
    register_task_kind,
)
from hf_mtl.card import TaskCardInfo
from hf_mtl.data.sources import DataSource, load_task_data
from hf_mtl.heads_multitask import IGNORE_INDEX, TokenClassificationHead
from hf_mtl.postprocessing import TokenClassificationPostprocessor
from hf_mtl.recipe import RecipeError, parse_recipe
from hf_mtl.tasks import task_from_config

from conftest import NER_LABELS, make_model, raw_datasets
from plugins.word_scores import WORD_REGRESSION, WordRegressionTask

ROOT = Path(__file__).resolve().parents[1]
COMPLEXITY = WordRegressionTask("complexity", tokens_column="words", scores_column="complexity")


def word_scores(n: int = 24) -> Dataset:
    """Sentences whose words score 1.0 when capitalised, else 0.0: learnable from the tokens alone."""
    sentences = [
        "John Smith works at Acme Corporation in Paris .".split(),
        "Mary visited the old Hospital in Zürich".split(),
        "the weather is nice today".split(),
    ]
    words = [sentences[i % 3] for i in range(n)]
    return Dataset.from_dict({"words": words, "complexity": [[float(w[0].isupper()) for w in s] for s in words]})


def tasks() -> list[Task]:
    return [
        SequenceClassificationTask("sentiment", ["negative", "positive"]),
        TokenClassificationTask("ner", NER_LABELS),
        COMPLEXITY,
    ]


def data(n: int = 24) -> dict[str, Dataset]:
    raw = raw_datasets(n)
    return {"sentiment": raw["sentiment"], "ner": raw["ner"], "complexity": word_scores(n)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer):
    """A model with the plugin kind and two built-in kinds, trained through MultiTaskTrainer and saved."""
    out = tmp_path_factory.mktemp("plugin")
    args = MultiTaskTrainingArguments(
        output_dir=str(out / "run"), max_steps=60, learning_rate=3e-3, per_device_train_batch_size=8,
        per_device_eval_batch_size=8, logging_steps=10, report_to=[], use_cpu=True, disable_tqdm=True,
        save_strategy="no", seed=0,
    )
    trainer = MultiTaskTrainer(
        model=make_model(tasks()), args=args, processing_class=tokenizer, train_dataset=data(), eval_dataset=data(12)
    )
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    trainer.save_model(str(out / "model"))
    return {"trainer": trainer, "before": before, "after": after, "dir": out / "model", "tokenizer": tokenizer}


def test_the_plugin_kind_trains_with_built_in_kinds_and_its_metrics_are_reported(trained):
    before, after = trained["before"], trained["after"]
    assert after["eval_complexity_loss"] < 0.5 * before["eval_complexity_loss"]
    for metric in ("pearson", "spearman", "mse"):
        assert f"eval_complexity_{metric}" in after
    assert after["eval_complexity_pearson"] > 0.8
    # its headline metric counts in the average with the built-in kinds'
    mains = [after["eval_sentiment_accuracy"], after["eval_ner_f1"], after["eval_complexity_pearson"]]
    assert after["eval_average"] == pytest.approx(np.mean(mains))
    logged = [entry["complexity_loss"] for entry in trained["trainer"].state.log_history if "complexity_loss" in entry]
    assert len(logged) >= 2 and logged[-1] < logged[0]


def test_the_plugin_kind_round_trips_through_save_and_from_pretrained(trained, tokenizer):
    model = trained["trainer"].model.eval()
    reloaded = MultiTaskModel.from_pretrained(trained["dir"]).eval()
    assert reloaded.config.get_task("complexity")["task_type"] == WORD_REGRESSION
    assert task_from_config(reloaded.config.get_task("complexity")) == COMPLEXITY
    inputs = tokenizer(["John lives in Paris", "the weather is nice"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected, got = model(**inputs).logits, reloaded(**inputs).logits
    assert list(got) == ["sentiment", "ner", "complexity"]
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert got["complexity"].shape == (2, inputs["input_ids"].shape[1], 1)


def test_task_view_of_the_plugin_kind_is_a_generic_single_task_view(trained, tokenizer):
    from hf_mtl import MultiTaskTaskView

    model = trained["trainer"].model.eval()
    view = model.task_view("complexity")
    assert type(view) is MultiTaskTaskView and view.task_name == "complexity"
    assert view.config.problem_type is None and view.config.id2label == {0: "score"}
    inputs = tokenizer(["John lives in Paris"], return_tensors="pt")
    labels = torch.full(inputs["input_ids"].shape, float(IGNORE_INDEX))
    labels[0, 1] = 1.0
    with torch.no_grad():
        out = view(**inputs, labels=labels)
        expected = model(**inputs, task_name="complexity").logits
    assert torch.equal(out.logits, expected)
    assert out.loss == pytest.approx(float((expected[0, 1, 0] - 1.0) ** 2))


def test_predict_regroups_the_plugin_kinds_outputs_by_word(trained):
    output = trained["trainer"].predict(
        {"complexity": Dataset.from_dict({"words": [["Mary", "lives", "in", "Zürich"], ["ok"]]})}
    )["complexity"]
    assert output.predictions.shape == (2, 4, 1) and output.label_ids is None
    assert np.all(output.predictions[1, 1:] == IGNORE_INDEX)  # the second sentence has one word


def test_the_plugin_kind_answers_through_pipeline_multitask(trained):
    nlp = pipeline("multitask", model=str(trained["dir"]))
    text = "John Smith moved to Paris yesterday"
    result = nlp(text)
    assert set(result) == {"sentiment", "ner", "complexity"}
    words = result["complexity"]
    assert [w["word"] for w in words] == text.lower().split()  # the uncased tokenizer lower-cases
    assert [text[w["start"] : w["end"]] for w in words] == text.split()
    # each word's score is the head's output at its first sub-word
    model = nlp.model
    inputs = nlp.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs, tasks=["complexity"]).logits["complexity"][0, :, 0]
    first_subwords = [inputs.word_ids().index(i) for i in range(len(text.split()))]
    assert [w["score"] for w in words] == pytest.approx(logits[first_subwords].tolist(), abs=1e-5)
    capitalised = [w["score"] for w, raw in zip(words, text.split()) if raw[0].isupper()]
    lower = [w["score"] for w, raw in zip(words, text.split()) if not raw[0].isupper()]
    assert min(capitalised) > max(lower)
    json.dumps(result)  # plain Python numbers


def test_the_plugin_kind_covers_long_texts_in_windows_once_per_word(trained):
    nlp = pipeline("multitask", model=str(trained["dir"]), tasks="complexity")
    words = [f"w{i}" for i in range(700)]  # longer than the encoder's 512 positions
    result = nlp(" ".join(words), stride=64)["complexity"]
    assert [w["word"] for w in result] == words
    # the built-in kinds still answer alongside, from the same encoder passes
    both = nlp(["short text", " ".join(words)], tasks=["ner", "complexity"])
    assert [len(r["complexity"]) for r in both] == [2, 700]


def test_checkpoint_of_the_plugin_kind_without_the_plugin_is_a_clear_error(trained, tmp_path):
    script = textwrap.dedent(
        """
        import sys
        import hf_mtl
        from transformers import AutoModel

        assert "plugins.word_scores" not in sys.modules
        for load in (hf_mtl.MultiTaskModel.from_pretrained, AutoModel.from_pretrained):
            try:
                load(sys.argv[1])
            except ValueError as err:
                print(err)
            else:
                raise SystemExit("loaded without the plugin")
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(trained["dir"])], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    messages = result.stdout.strip().splitlines()
    assert len(messages) == 2
    for message in messages:
        assert "Task 'complexity': task_type 'word_regression' is not a registered task kind" in message
        assert "'sequence_classification', 'token_classification'" in message
        assert "import the package that defines it" in message


def test_the_plugin_kinds_data_is_prepared_collated_and_read_from_files(tokenizer, tmp_path):
    raw = Dataset.from_dict({"words": [["Hello", "worldwide"], ["Hi"]], "complexity": [[1.0, 0.5], [0.25]]})
    prepared = prepare_datasets({"complexity": raw}, [COMPLEXITY], tokenizer)["complexity"]
    assert tokenizer.convert_ids_to_tokens(prepared[0]["input_ids"]) == ["[CLS]", "hello", "worldwide", "[SEP]"]
    assert prepared["labels"] == [[IGNORE_INDEX, 1.0, 0.5, IGNORE_INDEX], [IGNORE_INDEX, 0.25, IGNORE_INDEX]]
    batch = MultiTaskDataCollator(tokenizer, [COMPLEXITY])([{**row, "task_name": "complexity"} for row in prepared])
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[-100.0, 1.0, 0.5, -100.0], [-100.0, 0.25, -100.0, -100.0]]
    with pytest.raises(ValueError, match=r"Task 'complexity', split 'train', row 0: word score 'high' is not a finite"):
        prepare_datasets({"complexity": Dataset.from_dict({"words": [["a"]], "complexity": [["high"]]})}, [COMPLEXITY],
                         tokenizer)
    with pytest.raises(ValueError, match=r"row 0: 2 words in 'words' but 1 scores in 'complexity'"):
        prepare_datasets({"complexity": Dataset.from_dict({"words": [["a", "b"]], "complexity": [[1.0]]})},
                         [COMPLEXITY], tokenizer)
    # a data file: per-word values converted as the kind's label_values (numbers) say
    path = tmp_path / "scores.jsonl"
    path.write_text(json.dumps({"words": ["a", "b"], "complexity": ["0.5", "2"]}) + "\n")  # numbers as strings
    loaded = load_task_data(DataSource(files={"train": str(path)}), COMPLEXITY, splits=("train",))["train"]
    assert loaded["complexity"] == [[0.5, 2.0]]


def test_recipes_take_the_plugin_kinds_settings_as_keys(tmp_path):
    (tmp_path / "scores.jsonl").write_text(json.dumps({"words": ["a"], "complexity": [1.0]}) + "\n")

    def recipe(**task):
        return {"encoder": "bert-base-uncased", "output_dir": "out",
                "tasks": [{"name": "complexity", "type": "word_regression", "data": {"files": {"train": "scores.jsonl"}},
                           **task}]}

    parsed = parse_recipe(recipe(tokens_column="words", scores_column="complexity"), base_dir=tmp_path)
    assert parsed.tasks[0].task == COMPLEXITY
    with pytest.raises(RecipeError, match=r"^tasks\[0\]\.tags_column: not valid for a word_regression task"):
        parse_recipe(recipe(tags_column="x"), base_dir=tmp_path)
    with pytest.raises(RecipeError, match=r"^tasks\[0\]\.scores_column: expected a string"):
        parse_recipe(recipe(scores_column=["x"]), base_dir=tmp_path)
    with pytest.raises(RecipeError, match=r"^tasks\[0\]\.type: 'span' is not one of .*word_regression"):
        parse_recipe(recipe(type="span"), base_dir=tmp_path)


def test_the_card_describes_the_plugin_kind():
    info = TaskCardInfo.from_task(COMPLEXITY)
    assert (info.kind, info.hub_task_type, info.main_metric) == ("word-level regression", "token-classification", "pearson")
    assert info.labels == []


# ---------------------------------------------------------------------------- register_task_kind's checks
def test_register_task_kind_refuses_what_would_break_later():
    class NotADataclass(WordRegressionTask):
        pass

    with pytest.raises(TypeError, match=r"must be decorated with @dataclass\(frozen=True\)"):
        register_task_kind(NotADataclass)

    @dataclass(frozen=True)
    class Clash(WordRegressionTask):  # same task_type, another class
        pass

    with pytest.raises(ValueError, match=r"task_type 'word_regression' is already registered with plugins\.word_scores"):
        register_task_kind(Clash)

    @dataclass(frozen=True)
    class SequenceWithTokenHead(SequenceClassificationTask):
        task_type = "sequence_with_token_head"
        head_class = TokenClassificationHead

    with pytest.raises(ValueError, match="serves 'token_classification'"):
        register_task_kind(SequenceWithTokenHead)

    class PerTextHead(TokenClassificationHead):  # a head that is not token-level
        task_type = "words_without_word_head"
        token_level = False

    @dataclass(frozen=True)
    class WordsWithoutWordHead(WordLevelTask):
        task_type = "words_without_word_head"
        head_class = PerTextHead
        postprocessor = TokenClassificationPostprocessor

    with pytest.raises(TypeError, match="needs word-aligned data"):
        register_task_kind(WordsWithoutWordHead)
    with pytest.raises(TypeError, match="takes a Task subclass"):
        register_task_kind(PerTextHead)
    assert register_task_kind(WordRegressionTask) is WordRegressionTask  # the same class again: a no-op
    from hf_mtl.tasks import task_kinds

    assert list(task_kinds())[:2] == ["sequence_classification", "token_classification"]
    assert "words_without_word_head" not in task_kinds() and "sequence_with_token_head" not in task_kinds()


def test_the_extending_guide_shows_the_plugin_as_tested():
    guide = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    section = guide.split("## A new task kind", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert (ROOT / "tests" / "plugins" / "word_scores.py").read_text(encoding="utf-8") in blocks
