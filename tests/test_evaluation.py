"""Evaluation and prediction: unweighted losses, whole-sentence NER scoring, `predict()`, metric functions."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers.trainer_utils import EvalPrediction, PredictionOutput

from hf_mtl import (
    MultiTaskPredictionOutput,
    MultiTaskTrainer,
    MultiTaskTrainingArguments,
    TokenClassificationTask,
    compute_task_metrics,
    prepare_datasets,
)
from hf_mtl.evaluation import merge_windows
from hf_mtl.modeling_multitask import IGNORE_INDEX

from conftest import NER_LABELS, make_model, raw_datasets

NER = TokenClassificationTask("ner", NER_LABELS)
L = {label: i for i, label in enumerate(NER_LABELS)}

# 16 one-token words; with max_length=10 the sentence is split into windows and the entity "john smith"
# (words 6 and 7) is cut by the window edge: word 6 is scored in the first window, word 7 in the second.
LONG_WORDS = "alpha the cat sat on a john smith in the big old house by the sea".split()
LONG_TAGS = ["O"] * 6 + ["B-PER", "I-PER"] + ["O"] * 8


def _args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "out"), per_device_eval_batch_size=8, report_to=[], use_cpu=True,
        disable_tqdm=True, save_strategy="no",
    )
    kwargs.update(overrides)
    return MultiTaskTrainingArguments(**kwargs)


def _trainer(tmp_path, tasks, tokenizer, **kwargs):
    args = kwargs.pop("args", None) or _args(tmp_path, **kwargs.pop("arg_overrides", {}))
    return MultiTaskTrainer(model=make_model(tasks), args=args, processing_class=tokenizer, **kwargs)


# ---------------------------------------------------------------------------- 1. unweighted evaluation losses
def test_task_weights_do_not_change_evaluation_losses(tmp_path, three_tasks, tokenizer):
    data = raw_datasets(8)
    results = []
    for weights in (None, {"sentiment": 0.0, "topic": 3.0}):
        overrides = {"task_weights": json.dumps(weights)} if weights else {}
        trainer = _trainer(tmp_path, three_tasks, tokenizer, eval_dataset=data, arg_overrides=overrides)
        results.append(trainer.evaluate())
    plain, weighted = results
    for key in ("eval_sentiment_loss", "eval_topic_loss", "eval_ner_loss", "eval_loss"):
        assert weighted[key] == pytest.approx(plain[key], rel=1e-6), key
    assert weighted["eval_sentiment_loss"] > 0.1  # a weight of 0 used to report a loss of 0


# ---------------------------------------------------------------------------- 2. whole-sentence NER scoring
def _window_arrays():
    """Token-level arrays of one sentence split into two windows (as prepared for evaluation): window 0 scores
    words 0-3 (its last one, B-PER, starts the entity), window 1 scores words 4-5 (I-PER ends it). The
    predictions get window 0 right and miss the I-PER in window 1."""
    word_index = [[-1, 0, 1, 2, 3, -1, -1], [-1, -1, 4, 5, -1, -1, -1]]
    gold_words = [L["O"], L["O"], L["O"], L["B-PER"], L["I-PER"], L["O"]]
    predicted_words = [L["O"], L["O"], L["O"], L["B-PER"], L["O"], L["O"]]
    labels = np.full((2, 7), IGNORE_INDEX)
    logits = np.zeros((2, 7, len(NER_LABELS)), dtype=np.float32)
    for row, index in enumerate(word_index):
        for position, word in enumerate(index):
            if word >= 0:
                labels[row, position] = gold_words[word]
                logits[row, position, predicted_words[word]] = 5.0
    return logits, labels, word_index, gold_words


def test_windows_are_merged_into_one_word_level_sentence():
    logits, labels, word_index, gold_words = _window_arrays()
    # scored window by window, the error is invisible: window 0 holds a correct PER, window 1 no entity start
    assert compute_task_metrics(NER, logits, labels)["f1"] > 0.5
    words_logits, word_labels = merge_windows(logits, labels, word_index, row_of=np.array([0, 0]), num_rows=1)
    assert words_logits.shape == (1, 6, len(NER_LABELS)) and word_labels.shape == (1, 6)
    assert word_labels[0].tolist() == gold_words
    np.testing.assert_array_equal(words_logits[0, 4], logits[1, 2])
    merged = compute_task_metrics(NER, words_logits, word_labels)
    assert merged["f1"] == 0.0  # the predicted PER covers one of the entity's two words
    assert merged["accuracy"] == pytest.approx(5 / 6)


def test_merge_places_rows_and_pads_missing_ones():
    logits, labels, word_index, _ = _window_arrays()
    # the two windows belong to raw row 2 of 4 (rows 0, 1, 3 were skipped): their rows are padding
    words_logits, word_labels = merge_windows(logits, labels, word_index, np.array([2, 2]), num_rows=4, num_words=8)
    assert words_logits.shape == (4, 8, len(NER_LABELS))
    assert (word_labels[[0, 1, 3]] == IGNORE_INDEX).all() and (words_logits[[0, 1, 3]] == IGNORE_INDEX).all()
    assert (word_labels[2, 6:] == IGNORE_INDEX).all() and (word_labels[2, :6] != IGNORE_INDEX).all()


def _answer_key_model(model, tokenizer):
    """The model's NER logits replaced by the gold tags in windows that start the sentence (first word
    'alpha') and by 'O' everywhere in later windows: right in one window, wrong in the other."""
    original = model.forward
    alpha = tokenizer.convert_tokens_to_ids("alpha")

    def forward(*args, task_name=None, labels=None, **kwargs):
        out = original(*args, task_name=task_name, labels=labels, **kwargs)
        if task_name == "ner" and labels is not None:
            gold = torch.where(labels >= 0, labels, 0)
            first_window = (kwargs["input_ids"][:, 1] == alpha).unsqueeze(1)
            predicted = torch.where(first_window, gold, torch.zeros_like(gold))
            out.logits = torch.nn.functional.one_hot(predicted, len(NER_LABELS)).float() * 10
        return out

    model.forward = forward
    return model


def test_evaluate_scores_a_windowed_sentence_as_one_sequence(tmp_path, tokenizer):
    data = {"ner": Dataset.from_dict({"tokens": [LONG_WORDS], "tags": [LONG_TAGS]})}
    trainer = _trainer(tmp_path, [NER], tokenizer, arg_overrides={"max_length": 10})
    prepared = prepare_datasets(data, [NER], tokenizer, split="validation", max_length=10)["ner"]
    assert len(prepared) >= 2  # the sentence is split into windows
    first, second = ([l for l in row if l != IGNORE_INDEX] for row in prepared["labels"][:2])
    assert first[-1] == L["B-PER"] and second[0] == L["I-PER"]  # the entity is cut by the window edge
    _answer_key_model(trainer.model, tokenizer)
    metrics = trainer.evaluate(data)
    assert metrics["eval_ner_f1"] == 0.0
    assert metrics["eval_ner_accuracy"] == pytest.approx(15 / 16)


def test_metric_functions_see_one_row_per_sentence_and_one_position_per_word(tmp_path, tokenizer):
    sentences = [LONG_WORDS, ["John", "Smith", "works", "at", "Acme"], LONG_WORDS[:3]]
    tags = [LONG_TAGS, ["B-PER", "I-PER", "O", "O", "B-ORG"], ["O", "O", "O"]]
    data = {"ner": Dataset.from_dict({"tokens": sentences, "tags": tags})}
    seen = []

    def metric(prediction: EvalPrediction) -> dict:
        seen.append(prediction)
        return {"rows": float(len(prediction.label_ids))}

    trainer = _trainer(tmp_path, [NER], tokenizer, compute_metrics=metric, arg_overrides={"max_length": 10})
    metrics = trainer.evaluate(data)
    (prediction,) = seen
    assert metrics["eval_ner_rows"] == 3
    assert prediction.predictions.shape == (3, len(LONG_WORDS), len(NER_LABELS))
    for row, sentence_tags in enumerate(tags):  # input order, every word once, in word order
        gold = prediction.label_ids[row]
        assert gold[: len(sentence_tags)].tolist() == [L[t] for t in sentence_tags]
        assert (gold[len(sentence_tags) :] == IGNORE_INDEX).all()
        assert (prediction.predictions[row, : len(sentence_tags)] != IGNORE_INDEX).all()


# ---------------------------------------------------------------------------- 3. predict
def _single_forward(model, tokenizer, text=None, words=None, task_name=None):
    model.eval()
    with torch.no_grad():
        if words is not None:
            encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
            logits = model(**encoded, task_name=task_name).logits[0]
            word_ids = encoded.word_ids(0)
            firsts = [word_ids.index(w) for w in range(len(words))]
            return logits[firsts].numpy()
        return model(**tokenizer(text, return_tensors="pt"), task_name=task_name).logits[0].numpy()


def test_predict_returns_every_task_in_input_order(tmp_path, three_tasks, tokenizer):
    data = raw_datasets(12)
    trainer = _trainer(tmp_path, three_tasks, tokenizer)
    output = trainer.predict(data)
    assert isinstance(output, MultiTaskPredictionOutput) and list(output) == ["sentiment", "topic", "ner"]
    for name in ("sentiment", "topic", "ner"):
        assert isinstance(output[name], PredictionOutput)
        assert len(output[name].predictions) == len(output[name].label_ids) == 12
        assert f"test_{name}_loss" in output[name].metrics
    for key in ("test_sentiment_accuracy", "test_topic_macro_f1", "test_ner_f1", "test_average", "test_loss",
                "test_runtime"):
        assert key in output.metrics, key
    mains = [output.metrics[k] for k in ("test_sentiment_accuracy", "test_topic_accuracy", "test_ner_f1")]
    assert output.metrics["test_average"] == pytest.approx(np.mean(mains))
    # rows in input order (not the longest-first order the batches ran in): each equals a batch-of-one run
    model = trainer.model
    for i, text in enumerate(data["sentiment"]["text"]):
        np.testing.assert_allclose(
            output["sentiment"].predictions[i], _single_forward(model, tokenizer, text, task_name="sentiment"), atol=1e-5
        )
    assert output["sentiment"].label_ids.tolist() == [1 if label == "positive" else 0 for label in data["sentiment"]["label"]]
    ner = output["ner"]
    assert ner.predictions.shape == (12, 9, len(NER_LABELS))
    for i, (words, tags) in enumerate(zip(data["ner"]["tokens"], data["ner"]["tags"])):
        np.testing.assert_allclose(
            ner.predictions[i, : len(words)], _single_forward(model, tokenizer, words=words, task_name="ner"), atol=1e-5
        )
        assert ner.label_ids[i].tolist() == [L[t] for t in tags] + [IGNORE_INDEX] * (9 - len(tags))


def test_predict_unlabelled_and_prepared_data(tmp_path, three_tasks, tokenizer):
    data = raw_datasets(6)
    trainer = _trainer(tmp_path, three_tasks, tokenizer)
    labelled = trainer.predict(data)
    unlabelled = trainer.predict(
        {"sentiment": data["sentiment"].remove_columns("label"), "ner": data["ner"].remove_columns("tags")}
    )
    assert list(unlabelled) == ["sentiment", "ner"]
    for name in ("sentiment", "ner"):
        assert unlabelled[name].label_ids is None
        np.testing.assert_allclose(unlabelled[name].predictions, labelled[name].predictions, atol=1e-5)
        assert not any(k.startswith(f"test_{name}_") for k in unlabelled[name].metrics)
    assert "test_average" not in unlabelled.metrics and "test_loss" not in unlabelled.metrics
    assert "test_runtime" in unlabelled.metrics
    with pytest.raises(ValueError, match=r"Task 'sentiment' \(validation\): column\(s\) \['label'\] not found"):
        trainer.evaluate({"sentiment": data["sentiment"].remove_columns("label")})  # evaluation needs labels
    # datasets prepared beforehand (with or without hf_mtl's bookkeeping columns)
    prepared = prepare_datasets(data, three_tasks, tokenizer, split="test")
    bare = {name: ds.remove_columns([c for c in ("example_index", "word_index") if c in ds.column_names])
            for name, ds in prepared.items()}
    for given in (prepared, bare):
        again = trainer.predict(given)
        for name in data:
            np.testing.assert_allclose(again[name].predictions, labelled[name].predictions, atol=1e-5)
            np.testing.assert_array_equal(again[name].label_ids, labelled[name].label_ids)
    # a reordered subset of prepared rows: one output row per example, in the order given
    subset = trainer.predict({name: ds.select([4, 2, 0]) for name, ds in prepared.items()})
    for name in data:
        np.testing.assert_allclose(subset[name].predictions, labelled[name].predictions[[4, 2, 0]], atol=1e-5)


def test_predict_a_single_dataset(tmp_path, three_tasks, tokenizer):
    data = raw_datasets(6)
    trainer = _trainer(tmp_path, three_tasks, tokenizer)
    both = trainer.predict({"ner": data["ner"]})
    single = trainer.predict(data["ner"], task_name="ner")
    assert isinstance(single, PredictionOutput)
    np.testing.assert_allclose(single.predictions, both["ner"].predictions, atol=1e-6)
    assert single.metrics["test_ner_f1"] == both.metrics["test_ner_f1"] and "test_loss" in single.metrics
    with pytest.raises(ValueError, match=r"tasks \['sentiment', 'topic', 'ner'\]: pass task_name="):
        trainer.predict(data["ner"])
    with pytest.raises(ValueError, match="task_name is for a single dataset"):
        trainer.predict({"ner": data["ner"]}, task_name="ner")
    # a one-task model needs no task_name
    one = _trainer(tmp_path, [NER], tokenizer)
    assert one.predict(data["ner"]).predictions.shape == single.predictions.shape


def test_predict_keeps_one_row_per_raw_row_and_merges_windows(tmp_path, three_tasks, tokenizer):
    trainer = _trainer(tmp_path, three_tasks, tokenizer, arg_overrides={"max_length": 10})
    texts = ["good", "   ", "a bad film", ""]
    sentences = [["John", "ran"], [], LONG_WORDS, []]
    output = trainer.predict({
        "sentiment": Dataset.from_dict({"text": texts}),
        "ner": Dataset.from_dict({"tokens": sentences, "tags": [["B-PER", "O"], [], LONG_TAGS, []]}),
    })
    sentiment = output["sentiment"].predictions
    assert sentiment.shape == (4, 2) and (sentiment[[1, 3]] == IGNORE_INDEX).all()  # empty texts are skipped
    np.testing.assert_allclose(sentiment[2], _single_forward(trainer.model, tokenizer, "a bad film", task_name="sentiment"), atol=1e-5)
    ner = output["ner"]
    assert ner.predictions.shape == (4, len(LONG_WORDS), len(NER_LABELS))
    assert (ner.label_ids[[1, 3]] == IGNORE_INDEX).all()
    assert ner.label_ids[2].tolist() == [L[t] for t in LONG_TAGS]
    assert (ner.predictions[2] != IGNORE_INDEX).all()  # every word of the windowed sentence has a prediction


def test_left_padding_keeps_tokens_and_words_aligned(tmp_path, tokenizer):
    left = copy.deepcopy(tokenizer)
    left.padding_side = "left"
    data = raw_datasets(6)["ner"]
    trainer = _trainer(tmp_path, [NER], left)
    output = trainer.predict(data)
    for i, tags in enumerate(data["tags"]):
        assert output.label_ids[i, : len(tags)].tolist() == [L[t] for t in tags]
        assert (output.predictions[i, : len(tags)] != IGNORE_INDEX).all()
        assert (output.predictions[i, len(tags) :] == IGNORE_INDEX).all()


def test_token_predictions_with_extra_outputs_are_an_error(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, [NER], tokenizer)
    trainer.model.encoder.config.output_hidden_states = True
    with pytest.raises(ValueError, match=r"Task 'ner': the model returned 2 outputs.*ignore_keys"):
        trainer.predict(raw_datasets(3)["ner"])
    assert trainer.predict(raw_datasets(3)["ner"], ignore_keys=["hidden_states"]).predictions.ndim == 3


# ---------------------------------------------------------------------------- 4. metric functions
def test_a_plain_compute_metrics_function_runs_for_every_task(tmp_path, three_tasks, tokenizer):
    shapes = {}

    def metric(prediction: EvalPrediction) -> dict:
        shapes[prediction.predictions.shape[-1]] = prediction.predictions.shape
        return {"rows": float(len(prediction.label_ids)), "other": -1.0}

    data = raw_datasets(8)
    trainer = _trainer(tmp_path, three_tasks, tokenizer, eval_dataset=data, compute_metrics=metric)
    metrics = trainer.evaluate()
    for name in ("sentiment", "topic", "ner"):
        assert metrics[f"eval_{name}_rows"] == 8 and metrics[f"eval_{name}_other"] == -1.0
        assert f"eval_{name}_loss" in metrics and f"eval_{name}_accuracy" not in metrics
    assert metrics["eval_average"] == 8.0  # the first key is each task's headline
    assert shapes[len(NER_LABELS)] == (8, 9, len(NER_LABELS))  # word level: 8 sentences, up to 9 words


def test_compute_metrics_with_task_name_and_the_dict_form(tmp_path, three_tasks, tokenizer):
    calls = []

    def named(prediction, task_name):
        calls.append(task_name)
        return {"score": float(len(task_name))}

    data = raw_datasets(8)
    metrics = _trainer(tmp_path, three_tasks, tokenizer, eval_dataset=data, compute_metrics=named).evaluate()
    assert calls == ["sentiment", "topic", "ner"]
    assert (metrics["eval_sentiment_score"], metrics["eval_topic_score"], metrics["eval_ner_score"]) == (9.0, 5.0, 3.0)
    # dict form: tasks not named keep their built-in metrics
    trainer = _trainer(tmp_path, three_tasks, tokenizer, eval_dataset=data,
                       compute_metrics={"topic": lambda p: {"constant": 0.25}})
    metrics = trainer.evaluate()
    assert metrics["eval_topic_constant"] == 0.25 and "eval_topic_accuracy" not in metrics
    expected = np.mean([metrics["eval_sentiment_accuracy"], 0.25, metrics["eval_ner_f1"]])
    assert metrics["eval_average"] == pytest.approx(expected)


def test_preprocess_logits_for_metrics_output_is_regrouped_by_word(tmp_path, tokenizer):
    """The HF habit of shrinking logits to ids per batch still works: ids come back one per word."""
    data = {"ner": Dataset.from_dict({"tokens": [LONG_WORDS, ["John", "ran"]], "tags": [LONG_TAGS, ["B-PER", "O"]]})}
    seen = []

    def accuracy(prediction):
        seen.append(prediction)
        keep = prediction.label_ids != IGNORE_INDEX
        return {"word_accuracy": float((prediction.predictions[keep] == prediction.label_ids[keep]).mean())}

    trainer = _trainer(tmp_path, [NER], tokenizer, compute_metrics=accuracy, arg_overrides={"max_length": 10},
                       preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1))
    metrics = trainer.evaluate(data)
    (prediction,) = seen
    assert prediction.predictions.shape == prediction.label_ids.shape == (2, len(LONG_WORDS))
    ids = trainer.predict(data["ner"]).predictions  # predict() applies the hook too
    assert ids.shape == (2, len(LONG_WORDS)) and ids.dtype.kind == "i"
    assert 0.0 <= metrics["eval_ner_word_accuracy"] <= 1.0


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"batch_eval_metrics": True}, "batch_eval_metrics"),
        ({"eval_do_concat_batches": False}, "eval_do_concat_batches"),
        ({"include_for_metrics": ["inputs"]}, "include_for_metrics"),
    ],
)
def test_evaluation_options_that_cannot_work_are_refused(tmp_path, three_tasks, tokenizer, overrides, message):
    with pytest.raises(ValueError, match=f"does not support {message}"):
        _trainer(tmp_path, three_tasks, tokenizer, arg_overrides=overrides)


def test_compute_metrics_of_the_wrong_type(tmp_path, three_tasks, tokenizer):
    with pytest.raises(TypeError, match="compute_metrics must be a function"):
        _trainer(tmp_path, three_tasks, tokenizer, compute_metrics=42)
    with pytest.raises(TypeError, match=r"compute_metrics\['topic'\] must be a function"):
        _trainer(tmp_path, three_tasks, tokenizer, compute_metrics={"topic": "accuracy"})


# ---------------------------------------------------------------------------- multi-process
@pytest.mark.slow
def test_predict_under_two_processes_matches_one_process(tmp_path):
    """Under `torchrun` (2 CPU processes, batches dealt alternately, the last ones padded by accelerate), the
    gathered predictions come back in input order, windows merged, exactly as in one process."""
    import os
    import socket
    import sys
    from pathlib import Path

    from conftest import run_isolated

    scripts = Path(__file__).parent / "scripts"
    sys.path.insert(0, str(scripts))
    import ddp_predict

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(port), str(scripts / "ddp_predict.py"), str(tmp_path),
    ]
    result = run_isolated(command, env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    arrays = np.load(tmp_path / "predict.npz")
    single = ddp_predict.trainer(str(tmp_path / "single")).predict(ddp_predict.data())
    for name, output in single.items():
        np.testing.assert_allclose(arrays[f"{name}_predictions"], output.predictions, atol=1e-5)
        np.testing.assert_array_equal(arrays[f"{name}_label_ids"], output.label_ids)
        for key, value in output.metrics.items():
            # the loss is transformers' mean of per-batch means, and the batches differ between the runs
            assert metrics[key] == pytest.approx(value, rel=1e-2 if key.endswith("_loss") else 1e-6), key
    assert arrays["ner_predictions"].shape == (10, len(ddp_predict.LONG_WORDS), 5)
    assert arrays["ner_label_ids"][4].tolist() == [
        {"O": 0, "B-PER": 1, "I-PER": 2}[t] for t in ddp_predict.LONG_TAGS
    ]
