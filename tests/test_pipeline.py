"""MultiTaskPipeline: equivalence with transformers' built-in pipelines, one encoder pass per batch, long
texts, bad input, JSON output, task views and the `pipeline("multitask", ...)` registration."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    pipeline,
)

import hf_mtl
from hf_mtl import MultiTaskConfig, MultiTaskModel, MultiTaskPipeline
from hf_mtl.modeling_multitask import MultiTaskForSequenceClassification, MultiTaskForTokenClassification

ENTITY_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
TASKS = [
    {"name": "sentiment", "task_type": "sequence_classification", "id2label": {0: "negative", 1: "positive"}},
    {
        "name": "topic",
        "task_type": "sequence_classification",
        "problem_type": "multi_label_classification",
        "id2label": {0: "business", 1: "travel", 2: "sports"},
    },
    {"name": "rating", "task_type": "sequence_classification", "problem_type": "regression", "id2label": {0: "score"}},
    {"name": "ner", "task_type": "token_classification", "id2label": dict(enumerate(ENTITY_LABELS))},
]
# (words, entity tags, sentiment, topics, rating): multi-sub-word names, punctuation and unicode
TRAIN = [
    ("Apple opened a store in Paris and I love it".split(), "B-ORG O O O O B-LOC O O O O", 1, [0, 1], 0.8),
    ("Arnold Schwarzenegger hated the hotel in Zürich .".split(), "B-PER I-PER O O O O B-LOC O", 0, [1], -0.6),
    ("Kowalczyk signed with Düsseldorf United , great news !".split(), "B-PER O O B-ORG I-ORG O O O O", 1, [2], 0.9),
    ("Microsoft shares fell sharply in London today".split(), "B-ORG O O O O B-LOC O", 0, [0], -0.4),
    ("Angela Merkel enjoyed her trip to São Paulo".split(), "B-PER I-PER O O O O B-LOC I-LOC", 1, [1], 0.5),
    ("The match was boring and the fans left early".split(), "O O O O O O O O O", 0, [2], -0.8),
    ("Siemens hired Müller-Lüdenscheidt in Berlin !".split(), "B-ORG O B-PER O B-LOC O", 1, [0], 0.3),
    ("Nothing happened , the weather was dull .".split(), "O O O O O O O O", 0, [], -0.2),
]
TEXTS = [
    "Apple opened a store in Paris and I love it",
    "Arnold Schwarzenegger met Kowalczyk in Zürich, São Paulo and Düsseldorf!",
    "Müller-Lüdenscheidt (Siemens) flew to London... great!!",
    "the weather was dull",
    "Microsoft 🚀 Paris — naïve café owners in Berlin",
    "x",
]


def tiny_config(**overrides) -> BertConfig:
    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def _train(model: MultiTaskModel, tokenizer, steps: int = 120) -> None:
    """A few plain-torch optimizer steps on TRAIN, every head each step."""
    words = [w for w, *_ in TRAIN]
    enc = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
    tag_ids = []
    for i, (_, tags, *_rest) in enumerate(TRAIN):
        tags = tags.split()
        row, previous = [], None
        for word in enc.word_ids(i):
            if word is None:
                row.append(-100)
            else:
                tag = tags[word]
                if word == previous and tag.startswith("B-"):
                    tag = "I-" + tag[2:]
                row.append(ENTITY_LABELS.index(tag))
            previous = word
        tag_ids.append(row)
    labels = {
        "sentiment": torch.tensor([s for *_, s, _, _ in TRAIN]),
        "topic": torch.tensor([[float(k in t) for k in range(3)] for *_, t, _ in TRAIN]),
        "rating": torch.tensor([r for *_, r in TRAIN]),
        "ner": torch.tensor(tag_ids),
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = sum(model(**enc, task_name=name, labels=target).loss for name, target in labels.items())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, minilm_dir, tokenizer) -> str:
    torch.manual_seed(0)
    config = MultiTaskConfig(
        encoder=tiny_config(vocab_size=tokenizer.vocab_size), tasks=TASKS, base_model_name_or_path=minilm_dir
    )
    model = MultiTaskModel(config)
    _train(model, tokenizer)
    out = tmp_path_factory.mktemp("trained")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def model(trained_dir) -> MultiTaskModel:
    return MultiTaskModel.from_pretrained(trained_dir).eval()


@pytest.fixture(scope="session")
def mtl(model, tokenizer) -> MultiTaskPipeline:
    return MultiTaskPipeline(model=model, tokenizer=tokenizer, device="cpu")


def _plain(entity: dict) -> dict:
    return {k: float(v) if k == "score" else v for k, v in entity.items()}


def assert_same_entities(ours: list[dict], theirs: list[dict]) -> None:
    assert [sorted(e) for e in ours] == [sorted(e) for e in theirs]
    for a, b in zip(ours, theirs):
        assert {k: v for k, v in a.items() if k != "score"} == {k: v for k, v in b.items() if k != "score"}
        assert a["score"] == pytest.approx(float(b["score"]), abs=1e-5)


def assert_same_classification(ours, theirs) -> None:
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours["label"] == theirs["label"]
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-5)
        return
    assert [d["label"] for d in ours] == [d["label"] for d in theirs]
    assert [d["score"] for d in ours] == pytest.approx([d["score"] for d in theirs], abs=1e-5)


def walk_numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from walk_numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_numbers(v)
    elif not isinstance(value, (str, bool)) and value is not None:
        yield value


# ---------------------------------------------------------------------------- registration and the promise
def test_pipeline_task_is_registered_and_answers_every_head(trained_dir):
    predict = pipeline("multitask", model=trained_dir)
    assert isinstance(predict, MultiTaskPipeline)
    result = predict("Apple opened a store in Paris and I love it")
    assert list(result) == ["sentiment", "topic", "rating", "ner"]
    assert set(result["sentiment"]) == {"label", "score"} and result["sentiment"]["label"] == "positive"
    assert result["topic"]["label"] in {"business", "travel", "sports"}
    assert set(result["rating"]) == {"score"}
    groups = {(e["entity_group"], e["word"]) for e in result["ner"]}
    assert ("ORG", "apple") in groups and ("LOC", "paris") in groups
    for entity in result["ner"]:
        assert set(entity) == {"entity_group", "score", "word", "start", "end"}
    assert json.loads(json.dumps(result)) == result


def test_constructible_from_a_path_and_hf_mtl_export(trained_dir):
    assert hf_mtl.MultiTaskPipeline is MultiTaskPipeline
    predict = MultiTaskPipeline(model=trained_dir, tasks="sentiment", device="cpu")
    assert list(predict("I love it")) == ["sentiment"]


def test_tokenizer_falls_back_to_the_base_encoder(model):
    # An in-memory model has no directory with a tokenizer: config.base_model_name_or_path provides it.
    predict = pipeline("multitask", model=model, device="cpu")
    assert predict.tokenizer.is_fast
    assert predict("paris")["ner"] is not None


# ---------------------------------------------------------------------------- equivalence with built-in pipelines
@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_head_matches_token_classification_pipeline(mtl, model, tokenizer, strategy):
    builtin = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, aggregation_strategy=strategy, device="cpu")
    ours = mtl(TEXTS, aggregation_strategy=strategy, batch_size=4)
    theirs = builtin(TEXTS)
    for our, their in zip(ours, theirs):
        assert_same_entities(our["ner"], [_plain(e) for e in their])
    found = [e for r in ours for e in r["ner"]]
    assert len(found) >= 5  # the trained head finds entities, so the comparison is not vacuous
    if strategy != "none":
        assert any(" " in e["word"] for e in found)  # entity groups spanning several words


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 1}, {"top_k": 2}, {"top_k": None}, {"function_to_apply": "sigmoid", "top_k": None}, {"function_to_apply": "none"}])
@pytest.mark.parametrize("task", ["sentiment", "topic"])
def test_classification_head_matches_text_classification_pipeline(mtl, model, tokenizer, task, kwargs):
    builtin = pipeline("text-classification", model=model.task_view(task), tokenizer=tokenizer, device="cpu")
    ours = mtl(TEXTS, tasks=[task], **kwargs)
    theirs = builtin(TEXTS, **kwargs)
    for our, their in zip(ours, theirs):
        assert_same_classification(our[task], their)
    # a single string: the built-in wraps the default result in a list; the head's result is the dict itself
    single = builtin(TEXTS[0], **kwargs)
    assert_same_classification(mtl(TEXTS[0], tasks=task, **kwargs)[task], single if "top_k" in kwargs else single[0])


def test_regression_head_returns_a_score(mtl, model, tokenizer):
    builtin = pipeline("text-classification", model=model.task_view("rating"), tokenizer=tokenizer, device="cpu")
    ours = mtl(TEXTS, tasks="rating")
    theirs = builtin(TEXTS)
    for our, their in zip(ours, theirs):
        assert set(our["rating"]) == {"score"}
        assert our["rating"]["score"] == pytest.approx(their["score"], abs=1e-5)


def test_multi_label_head_uses_sigmoid(mtl, model, tokenizer):
    result = mtl(TEXTS[0], tasks="topic", top_k=None)["topic"]
    assert 1.0 < sum(d["score"] for d in result) < 3.0 or all(0 < d["score"] < 1 for d in result)
    with torch.inference_mode():
        logits = model(**tokenizer(TEXTS[0], return_tensors="pt"), tasks=["topic"]).logits["topic"][0]
    expected = sorted(torch.sigmoid(logits).tolist(), reverse=True)
    assert [d["score"] for d in result] == pytest.approx(expected, abs=1e-5)


def test_text_pairs_match_text_classification_pipeline(mtl, model, tokenizer):
    pair = {"text": "Apple opened a store in Paris", "text_pair": "I love it"}
    builtin = pipeline("text-classification", model=model.task_view("sentiment"), tokenizer=tokenizer, device="cpu")
    ours = mtl([pair, "I love it"], batch_size=8)
    assert_same_classification(ours[0]["sentiment"], builtin(pair))
    for entity in ours[0]["ner"]:  # token heads read the first text; offsets point into it
        assert pair["text"][entity["start"] : entity["end"]].lower() == entity["word"]


def test_per_task_parameters_and_construction_defaults(model, tokenizer):
    predict = MultiTaskPipeline(model=model, tokenizer=tokenizer, device="cpu", top_k={"topic": None}, aggregation_strategy="first")
    result = predict(TEXTS[1])
    assert isinstance(result["sentiment"], dict)
    assert isinstance(result["topic"], list) and len(result["topic"]) == 3
    assert predict(TEXTS[1], top_k=1)["sentiment"][0]["label"] in {"negative", "positive"}
    assert predict(TEXTS[1], aggregation_strategy="none")["ner"] == predict(TEXTS[1], aggregation_strategy="none", batch_size=1)["ner"]


# ---------------------------------------------------------------------------- one pass, sorting, order
def _count_encoder_calls(model):
    calls = []
    handle = model.encoder.register_forward_hook(lambda module, args, kwargs, out: calls.append(kwargs["input_ids"].shape), with_kwargs=True)
    return calls, handle


@pytest.mark.parametrize("tasks", [None, ["ner"], ["sentiment", "topic"], ["rating", "ner", "sentiment"]])
def test_encoder_runs_once_per_batch_whatever_the_heads(mtl, model, tasks):
    calls, handle = _count_encoder_calls(model)
    heads_called = []
    hooks = [h.register_forward_hook(lambda m, a, o, n=name: heads_called.append(n)) for name, h in model.heads.items()]
    try:
        result = mtl(TEXTS * 2, tasks=tasks, batch_size=5)
    finally:
        handle.remove()
        for hook in hooks:
            hook.remove()
    assert len(calls) == 3  # 12 texts in batches of 5
    requested = tasks or model.task_names
    assert sorted(heads_called) == sorted(requested * 3)  # only the requested heads are computed
    assert all(list(r) == requested for r in result)


def test_batches_are_length_sorted_and_results_keep_input_order(mtl, model):
    texts = ["short", "a much longer text about Apple and Paris and Berlin and London", "mid length text here", "x y"]
    calls, handle = _count_encoder_calls(model)
    try:
        batched = mtl(texts, batch_size=2)
    finally:
        handle.remove()
    widths = [shape[1] for shape in calls]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    one_by_one = [mtl(t) for t in texts]
    for a, b in zip(batched, one_by_one):
        assert a["sentiment"]["label"] == b["sentiment"]["label"]
        assert a["sentiment"]["score"] == pytest.approx(b["sentiment"]["score"], abs=1e-5)
        assert [(e["entity_group"], e["start"], e["end"]) for e in a["ner"]] == [(e["entity_group"], e["start"], e["end"]) for e in b["ner"]]


def test_training_mode_is_restored(model, tokenizer):
    predict = MultiTaskPipeline(model=model, tokenizer=tokenizer, device="cpu")
    model.train()
    try:
        first = predict(TEXTS[0])
        assert model.training
        assert predict(TEXTS[0]) == first  # dropout was off during prediction
    finally:
        model.eval()


# ---------------------------------------------------------------------------- long texts
def test_long_text_gets_entities_from_its_last_sentence(mtl, model, tokenizer, caplog):
    filler = "the weather was dull and nothing happened . " * 375  # 3,000 words
    last = "Arnold Schwarzenegger opened a store in Paris ."
    text = filler + last
    assert len(text.split()) > 3000
    with caplog.at_level(logging.WARNING, logger="hf_mtl.pipeline"):
        mtl._truncation_logged = False
        result = mtl(text, stride=32)
        mtl([text, "short"], tasks="sentiment")
    warnings = [r for r in caplog.records if "longer than the model's maximum" in r.getMessage()]
    assert len(warnings) == 1  # said once
    tail = [e for e in result["ner"] if e["start"] >= len(filler)]
    assert {"PER", "LOC"} & {e["entity_group"] for e in tail}
    assert all(text[e["start"] : e["end"]].lower() == e["word"] for e in tail)
    assert result["sentiment"]["label"] in {"negative", "positive"}
    # the built-in pipeline with the same stride finds the same entities across its chunks
    builtin = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, aggregation_strategy="simple", stride=32, device="cpu")
    assert_same_entities(result["ner"], [_plain(e) for e in builtin(text)])


def test_windows_merge_overlapping_entities(mtl):
    text = ("nothing happened . " * 150) + "Angela Merkel enjoyed her trip to São Paulo . " + ("the weather was dull . " * 150)
    result = mtl(text, tasks="ner", stride=100)["ner"]
    starts = [e["start"] for e in result]
    assert starts == sorted(starts) and len(starts) == len(set(starts))  # no duplicates from overlaps


def test_invalid_parameters(mtl):
    with pytest.raises(ValueError, match="stride"):
        mtl("x", stride=10_000)
    with pytest.raises(ValueError, match="aggregation_strategy"):
        mtl("x", aggregation_strategy="longest")
    with pytest.raises(ValueError, match="function_to_apply"):
        mtl("x", function_to_apply="relu")
    with pytest.raises(TypeError, match="unexpected parameters"):
        mtl("x", temperature=2)
    with pytest.raises(ValueError, match="batch_size"):
        mtl("x", batch_size=0)
    with pytest.raises(ValueError, match="top_k"):
        mtl("x", top_k=-1)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "inputs, error, pattern",
    [
        (None, TypeError, "inputs is None"),
        (["fine", None], TypeError, r"Input 1 is None; expected a string or a dict"),
        (["fine", "also fine", 42], TypeError, r"Input 2 is a int: 42; expected"),
        ([{"txt": "typo"}], ValueError, r"Input 0 is a dict without a 'text' key"),
        ([{"text": None}], TypeError, r"Input 0 has a 'text' of type NoneType"),
        ([{"text": "a", "text_pair": 3}], TypeError, r"Input 0 has a 'text_pair' of type int"),
        ([{"text": "a", "label": 1}], ValueError, r"Input 0 has unexpected keys \['label'\]"),
        (b"bytes", TypeError, "inputs is a bytes"),
    ],
)
def test_bad_inputs_fail_before_any_compute(mtl, model, inputs, error, pattern):
    calls, handle = _count_encoder_calls(model)
    try:
        with pytest.raises(error, match=pattern):
            mtl(inputs)
    finally:
        handle.remove()
    assert calls == []  # validated up front: nothing ran
    assert mtl(["fine", "still fine"])[1]["sentiment"]  # and the pipeline is unharmed


def test_every_bad_item_is_reported(mtl):
    with pytest.raises(TypeError) as info:
        mtl(["ok", None, "ok", 7, {"x": 1}])
    message = str(info.value)
    assert "3 of 5 inputs are invalid" in message
    assert "Input 1" in message and "Input 3" in message and "Input 4" in message


def test_unknown_task_lists_the_models_tasks(mtl):
    with pytest.raises(KeyError, match=r"'nope'.*\['sentiment', 'topic', 'rating', 'ner'\]"):
        mtl("text", tasks=["ner", "nope"])
    with pytest.raises(KeyError, match="sentiment"):
        mtl("text", top_k={"nope": 1})


def test_empty_string_and_empty_list(mtl):
    result = mtl("")
    assert result["ner"] == []
    assert result["sentiment"]["label"] in {"negative", "positive"} and 0 <= result["sentiment"]["score"] <= 1
    assert mtl(["", "   "])[1]["ner"] == []
    assert mtl([]) == []


# ---------------------------------------------------------------------------- JSON
@pytest.mark.parametrize("kwargs", [{}, {"aggregation_strategy": "none", "top_k": None}, {"aggregation_strategy": "average", "top_k": 2}])
def test_results_are_plain_json(mtl, kwargs):
    results = mtl(TEXTS + [{"text": "a", "text_pair": "b"}], **kwargs)
    assert json.loads(json.dumps(results)) == results
    numbers = list(walk_numbers(results))
    assert numbers and all(type(n) in (float, int) for n in numbers)


# ---------------------------------------------------------------------------- task views
def test_task_view_shares_weights_and_carries_labels(model):
    view = model.task_view("ner")
    assert isinstance(view, MultiTaskForTokenClassification)
    assert view.config.id2label == dict(enumerate(ENTITY_LABELS)) and view.config.num_labels == 7
    assert view.heads["ner"].classifier.weight.data_ptr() == model.heads["ner"].classifier.weight.data_ptr()
    assert view.encoder is model.encoder
    assert model.config.id2label != view.config.id2label  # the model's own config is untouched
    seq = model.task_view("topic")
    assert isinstance(seq, MultiTaskForSequenceClassification)
    assert seq.config.problem_type == "multi_label_classification" and seq.config.label2id["travel"] == 1
    inputs = {"input_ids": torch.tensor([[101, 2003, 102]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    with torch.inference_mode():
        assert torch.equal(seq(**inputs).logits, model(**inputs, task_name="topic").logits)
    with pytest.raises(KeyError, match="this model's tasks are"):
        model.task_view("nope")


def test_auto_classes_load_a_head_of_a_multitask_checkpoint(trained_dir, model):
    token_model = AutoModelForTokenClassification.from_pretrained(trained_dir)
    assert isinstance(token_model, MultiTaskForTokenClassification) and token_model.task_name == "ner"
    seq_model = AutoModelForSequenceClassification.from_pretrained(trained_dir)
    assert seq_model.task_name == "sentiment" and seq_model.config.id2label == {0: "negative", 1: "positive"}
    assert torch.equal(seq_model.heads["sentiment"].out_proj.weight, model.heads["sentiment"].out_proj.weight)
