"""MultiTaskPipeline: equivalence with transformers' built-in pipelines, one encoder pass per batch, long
texts, bad input, JSON output, task views and the `pipeline("multitask", ...)` registration."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path

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


def assert_same_results(ours, theirs) -> None:
    """Equal up to float noise (batches of other lengths pad differently)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs)
        for key in theirs:
            assert_same_results(ours[key], theirs[key])
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_same_results(a, b)
    elif isinstance(theirs, float):
        assert ours == pytest.approx(theirs, abs=1e-5)
    else:
        assert ours == theirs


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
    assert set(result["rating"]) == {"label", "score"} and result["rating"]["label"] == "score"
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


@pytest.fixture(scope="module")
def regression_model(minilm_dir, tokenizer) -> MultiTaskModel:
    """Untrained regression heads with one and three outputs (the output shapes are what is compared)."""
    torch.manual_seed(1)
    tasks = [
        {"name": "rating", "task_type": "sequence_classification", "problem_type": "regression", "id2label": {0: "score"}},
        {"name": "vad", "task_type": "sequence_classification", "problem_type": "regression",
         "id2label": {0: "valence", 1: "arousal", 2: "dominance"}},
    ]
    config = MultiTaskConfig(encoder=tiny_config(vocab_size=tokenizer.vocab_size), tasks=tasks, base_model_name_or_path=minilm_dir)
    return MultiTaskModel(config).eval()


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 1}, {"top_k": 2}, {"top_k": None}, {"function_to_apply": "sigmoid"}])
@pytest.mark.parametrize("task", ["rating", "vad"])
def test_regression_head_matches_text_classification_pipeline(regression_model, tokenizer, task, kwargs):
    # text-classification on a regression model: no function applied, and the outputs are ranked like label
    # scores ({"label": id2label[argmax], "score": max} by default; sorted lists with top_k)
    predict = MultiTaskPipeline(model=regression_model, tokenizer=tokenizer, device="cpu")
    builtin = pipeline("text-classification", model=regression_model.task_view(task), tokenizer=tokenizer, device="cpu")
    ours = predict(TEXTS, tasks=task, **kwargs)
    theirs = builtin(TEXTS, **kwargs)
    for our, their in zip(ours, theirs):
        assert_same_classification(our[task], their)
    if not kwargs:
        assert ours[0][task]["label"] in regression_model.config.get_task(task)["id2label"].values()


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


def test_default_aggregation_is_first_word_level_groups(mtl, model, tokenizer):
    # token heads default to "first" (the built-in's default is "none": one dict per sub-word token)
    first = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, aggregation_strategy="first", device="cpu")
    simple = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, aggregation_strategy="simple", device="cpu")
    ours = mtl(TEXTS, tasks="ner")
    for our, their in zip(ours, first(TEXTS)):
        assert_same_entities(our["ner"], [_plain(e) for e in their])
        assert all(set(e) == {"entity_group", "score", "word", "start", "end"} for e in our["ner"])
    # the comparison can tell "first" from "simple" on these texts (words of several sub-words)
    assert [[_plain(e) for e in r] for r in simple(TEXTS)] != [[_plain(e) for e in r] for r in first(TEXTS)]


@pytest.mark.parametrize("pair", [{"text": TEXTS[0], "text_pair": ""}, [[TEXTS[0], ""]]])
def test_empty_text_pair_is_no_pair(mtl, model, tokenizer, pair):
    # as text-classification (and training, through encoders.effective_text_pair): [CLS] text [SEP]
    builtin = pipeline("text-classification", model=model.task_view("sentiment"), tokenizer=tokenizer, device="cpu")
    (ours,) = mtl([pair])
    (theirs,) = builtin([pair])
    assert_same_classification(ours["sentiment"], theirs)
    alone = mtl({"text": TEXTS[0]})
    assert_same_results(ours, alone)
    assert ours["ner"] == alone["ner"] == mtl(TEXTS[0])["ner"]


def test_legacy_pair_list_matches_text_classification_pipeline(mtl, model, tokenizer):
    # text-classification's backward-compatible form: an input [[text, text_pair]]
    legacy = [[["Apple opened a store in Paris", "I love it"]], "I love it"]
    builtin = pipeline("text-classification", model=model.task_view("sentiment"), tokenizer=tokenizer, device="cpu")
    ours = mtl(legacy)
    for our, their in zip(ours, builtin(legacy)):
        assert_same_classification(our["sentiment"], their)
    as_dict = mtl({"text": "Apple opened a store in Paris", "text_pair": "I love it"})
    assert ours[0]["sentiment"] == pytest.approx(as_dict["sentiment"]) and ours[0]["ner"] == as_dict["ner"]


@pytest.mark.parametrize("strategy", ["none", "simple", "first"])
@pytest.mark.parametrize("delimiter", [None, "_"])
def test_pre_tokenized_words_match_the_built_in_pipelines(mtl, model, tokenizer, strategy, delimiter):
    words = [text.split() for text in TEXTS if text.split()]
    extra = {} if delimiter is None else {"delimiter": delimiter}
    tokens = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, aggregation_strategy=strategy, device="cpu")
    ours = mtl(words, is_split_into_words=True, aggregation_strategy=strategy, **extra)
    theirs = tokens(words, is_split_into_words=True, **extra)
    for our, their, sentence in zip(ours, theirs, words):
        assert_same_entities(our["ner"], [_plain(e) for e in their])
        joined = (delimiter or " ").join(sentence)  # offsets point into the words joined by the delimiter
        assert all(joined[e["start"] : e["end"]] for e in our["ner"])
    assert sum(len(r["ner"]) for r in ours) >= 5
    # one list of words is one input (the built-in wraps its result in a list; ours is the result itself)
    single = mtl(words[1], is_split_into_words=True, aggregation_strategy=strategy, **extra)
    assert_same_entities(single["ner"], [_plain(e) for e in tokens(words[1], is_split_into_words=True, **extra)[0]])
    # classification heads read the same encoding: text-classification takes it as {"text": words}
    builtin = pipeline("text-classification", model=model.task_view("sentiment"), tokenizer=tokenizer, device="cpu")
    for our, sentence in zip(ours, words):
        assert_same_classification(our["sentiment"], builtin({"text": sentence}, is_split_into_words=True))
    pair = {"text": words[0], "text_pair": ["I", "love", "it"]}
    assert_same_classification(mtl(pair, is_split_into_words=True)["sentiment"], builtin(pair, is_split_into_words=True))


def test_long_pre_tokenized_input_matches_the_built_in_with_stride(mtl, model, tokenizer):
    words = ("the weather was dull and nothing happened .".split() * 120) + "Arnold Schwarzenegger opened a store in Paris".split()
    builtin = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, aggregation_strategy="first", stride=32, device="cpu")
    ours = mtl(words, is_split_into_words=True, stride=32, tasks="ner")["ner"]
    assert_same_entities(ours, [_plain(e) for e in builtin(words, is_split_into_words=True)[0]])
    assert any(e["word"] == "arnold schwarzenegger" for e in ours)


@pytest.mark.parametrize("bad, pattern", [
    ("Paris is nice", r"inputs is a str: 'Paris is nice' \(is_split_into_words=True takes lists of words\)"),
    ([["Paris", 3]], r"Input 0 is a list: \['Paris', 3\]; with is_split_into_words=True expected a list of words"),
    ([["ok"], "Paris"], r"Input 1 is a str: 'Paris'; with is_split_into_words=True expected a list of words"),
    ({"text": "Paris"}, r"Input 0's 'text' is a str: 'Paris'; with is_split_into_words=True"),
])
def test_pre_tokenized_inputs_are_checked(mtl, bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        mtl(bad, is_split_into_words=True)


@pytest.mark.parametrize("strategy", ["none", "first"])
def test_offset_mapping_replaces_the_tokenizers_offsets(mtl, model, tokenizer, strategy):
    builtin = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, aggregation_strategy=strategy, ignore_labels=[], device="cpu")
    texts = ["Apple opened a store in Paris", "Angela Merkel visited Zürich"]
    # a slow tokenizer's caller would give these: here, every token's offsets shifted by 3 characters
    mappings = [[(s + 3, e + 3) if e else (0, 0) for s, e in tokenizer(t, return_offsets_mapping=True)["offset_mapping"]] for t in texts]
    padded = ["   " + t for t in texts]  # so that the shifted offsets still point at the words
    single = mtl(padded[0], offset_mapping=mappings[0], aggregation_strategy=strategy, ignore_labels=[], tasks="ner")["ner"]
    assert_same_entities(single, [_plain(e) for e in builtin(padded[0], offset_mapping=mappings[0])])
    assert single[0]["start"] == 3
    # a list of inputs takes one list per input (the built-in applies the first input's list to all of them)
    both = mtl(padded, offset_mapping=mappings, aggregation_strategy=strategy, ignore_labels=[], tasks="ner")
    for our, text, mapping in zip(both, padded, mappings):
        assert_same_entities(our["ner"], [_plain(e) for e in builtin(text, offset_mapping=mapping)])
    with pytest.raises(ValueError, match="offset_mapping should have the same batch size as the input"):
        mtl(padded, offset_mapping=mappings[:1])
    with pytest.raises(ValueError, match=r"offset_mapping of input 0 has 2 \(start, end\) pairs, but the input has 8 tokens"):
        mtl(padded[0], offset_mapping=mappings[0][:2], tasks="ner")
    with pytest.raises(ValueError, match="offset_mapping needs a list of inputs"):
        mtl((t for t in padded), offset_mapping=mappings)


def test_truncation_matches_text_classification_pipeline(mtl, model, tokenizer, caplog):
    long_text = "the weather was dull and nothing happened . " * 100
    builtin = pipeline("text-classification", model=model.task_view("sentiment"), tokenizer=tokenizer, device="cpu")
    with caplog.at_level(logging.WARNING, logger="hf_mtl.pipeline"):
        mtl._truncation_logged = False
        ours = mtl([long_text, "I love it"], truncation=True, tasks="sentiment")
    assert not [r for r in caplog.records if "longer than the model's maximum" in r.getMessage()]  # asked for: no warning
    for our, their in zip(ours, builtin([long_text, "I love it"], truncation=True)):
        assert_same_classification(our["sentiment"], their)
    pair = {"text": long_text, "text_pair": "I love it"}
    for strategy in ("only_first", "longest_first"):
        assert_same_classification(mtl(pair, truncation=strategy)["sentiment"], builtin(pair, truncation=strategy))
    # truncation=False: the built-in model fails on the too-long input; here it is refused before any compute
    calls, handle = _count_encoder_calls(model)
    try:
        with pytest.raises(ValueError, match=r"truncation=False, but 1 input\(s\) \(index 1\) are longer than the model's maximum of 512"):
            mtl(["short", long_text], truncation=False)
    finally:
        handle.remove()
    assert calls == []
    assert mtl(["short", long_text], truncation=False, tasks="ner")[1]["ner"] is not None  # token heads: windows
    with pytest.raises(ValueError, match="truncation='sideways' is not True, False or one of"):
        mtl("x", truncation="sideways")


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
    # the built-in pipeline with the same stride (and our default strategy) finds the same entities across its chunks
    builtin = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, aggregation_strategy="first", stride=32, device="cpu")
    assert_same_entities(result["ner"], [_plain(e) for e in builtin(text)])


def test_none_on_long_texts_reports_each_token_once_with_its_index_in_the_whole_text(mtl, model, tokenizer):
    text = ("nothing happened . " * 200) + "Angela Merkel enjoyed her trip to São Paulo . " + ("the weather was dull . " * 150)
    full = tokenizer(text, return_offsets_mapping=True)
    assert len(full["input_ids"]) > 2 * mtl.max_length  # three windows or more
    ours = mtl(text, tasks="ner", aggregation_strategy="none", ignore_labels=[], stride=64)["ner"]
    indices = [e["index"] for e in ours]
    assert indices == list(range(1, len(full["input_ids"]) - 1))  # every token once, in order, numbered as unwindowed
    assert [e["word"] for e in ours] == tokenizer.convert_ids_to_tokens(full["input_ids"])[1:-1]
    assert [(e["start"], e["end"]) for e in ours] == [tuple(o) for o in full["offset_mapping"][1:-1]]
    # The built-in refuses stride with aggregation_strategy="none" given together, but runs them when "none" is
    # its default: it then keeps each token of an overlap once (aggregate_overlapping_entities: the window with the
    # higher score), with its position in that window as 'index'. Same tokens and scores; only 'index' differs.
    builtin = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, ignore_labels=[], device="cpu")
    with pytest.raises(ValueError, match="stride"):
        builtin(text, stride=64, aggregation_strategy="none")
    theirs = [_plain(e) for e in builtin(text, stride=64)]
    assert len({e["index"] for e in theirs}) < len(theirs)  # its indices repeat
    assert_same_entities([{k: v for k, v in e.items() if k != "index"} for e in ours], [{k: v for k, v in e.items() if k != "index"} for e in theirs])
    # default ignore_labels: the same tokens, filtered
    tagged = mtl(text, tasks="ner", aggregation_strategy="none", stride=64)["ner"]
    assert all(e["entity"] != "O" for e in tagged) and any(e["index"] > mtl.max_length for e in tagged)
    assert [e["index"] for e in tagged] == sorted({e["index"] for e in tagged})


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
PAIR_HINT = r"if you are trying to send a text pair, send a dict \{'text': 'My text', 'text_pair': 'My pair'\}"


@pytest.mark.parametrize(
    "inputs, pattern, builtin_raises",
    [
        (None, "inputs is None", True),
        (["fine", None], r"Input 1 is None; expected a string or a dict", True),
        (["fine", "also fine", 42], r"Input 2 is a int: 42; expected", True),
        (42, r"inputs is a int: 42; expected", True),
        ([{"txt": "typo"}], r"Input 0 is a dict without a 'text' key", True),
        ([{"text": None}], r"Input 0 has a 'text' of type NoneType", True),
        ([{"text": "a", "text_pair": 3}], r"Input 0 has a 'text_pair' of type int", True),
        (b"bytes", "inputs is a bytes", True),
        # a list where a text pair was meant: ValueError with the built-in's advice
        ([["a", "b"]], rf"Input 0 is a list: \['a', 'b'\], which is not a valid input: {PAIR_HINT}", True),
        ([["a", "b"], ["c", "d"]], rf"2 of 2 inputs are invalid.*Input 1 is a list.*{PAIR_HINT}", True),
        ([[["a", "b", "c"]]], rf"Input 0 is a list.*{PAIR_HINT}", True),
        ([[["a", 3]]], r"Input 0 has a text_pair of type int", True),
        # refused here, though the built-in gets by: it passes 'label' to the tokenizer, which ignores it, and
        # reads a tuple as a batch of two texts and classifies the first
        ([{"text": "a", "label": 1}], r"Input 0 has unexpected keys \['label'\]", False),
        ([("a", "b")], rf"Input 0 is a tuple.*{PAIR_HINT}", False),
    ],
)
def test_bad_inputs_fail_before_any_compute(mtl, model, tokenizer, inputs, pattern, builtin_raises):
    calls, handle = _count_encoder_calls(model)
    try:
        with pytest.raises(ValueError, match=pattern) as info:  # the built-in pipelines' error type
            mtl(inputs)
    finally:
        handle.remove()
    assert calls == []  # validated up front: nothing ran
    assert isinstance(info.value, TypeError)  # also what earlier versions raised for wrong types
    assert mtl(["fine", "still fine"])[1]["sentiment"]  # and the pipeline is unharmed
    if builtin_raises:
        builtin = pipeline("text-classification", model=model.task_view("sentiment"), tokenizer=tokenizer, device="cpu")
        with pytest.raises(ValueError):
            builtin(inputs)


def test_every_bad_item_is_reported(mtl):
    with pytest.raises(ValueError) as info:
        mtl(["ok", None, "ok", 7, {"x": 1}])
    message = str(info.value)
    assert "3 of 5 inputs are invalid" in message
    assert "Input 1" in message and "Input 3" in message and "Input 4" in message


def test_unknown_task_lists_the_models_tasks(mtl):
    with pytest.raises(KeyError, match=r"'nope'.*\['sentiment', 'topic', 'rating', 'ner'\]"):
        mtl("text", tasks=["ner", "nope"])
    with pytest.raises(KeyError, match="sentiment"):
        mtl("text", top_k={"nope": 1})


def test_empty_string_and_empty_list(mtl, model, tokenizer):
    result = mtl("")
    assert result["ner"] == []
    assert result["sentiment"]["label"] in {"negative", "positive"} and 0 <= result["sentiment"]["score"] <= 1
    assert mtl(["", "   "])[1]["ner"] == []
    # an empty list is refused as token-classification refuses it (text-classification fails on it with IndexError)
    builtin = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, device="cpu")
    with pytest.raises(ValueError, match="At least one input is required"):
        builtin([])
    with pytest.raises(ValueError, match="At least one input is required"):
        mtl([])
    assert list(mtl(x for x in [])) == []  # an empty stream is an empty iterator


# ---------------------------------------------------------------------------- streaming
def test_a_generator_is_streamed_lazily_in_chunks(mtl):
    pulled = 0

    def texts():
        nonlocal pulled
        for i in range(100_000):
            pulled += 1
            yield TEXTS[i % len(TEXTS)]

    results = mtl(texts(), batch_size=8)
    assert isinstance(results, Iterator) and pulled == 0  # nothing read before the first result is asked for
    first = list(itertools.islice(results, 20))
    assert pulled == 8 * MultiTaskPipeline_chunk_batches()  # one chunk of inputs read, not the 100,000
    expected = mtl([TEXTS[i % len(TEXTS)] for i in range(20)], batch_size=8)
    assert_same_results(first, expected)


def MultiTaskPipeline_chunk_batches() -> int:
    from hf_mtl.pipeline import STREAM_CHUNK_BATCHES

    return STREAM_CHUNK_BATCHES


def test_key_dataset_columns_stream_and_equal_the_list_call(mtl):
    from datasets import Dataset
    from transformers.pipelines.pt_utils import KeyDataset, KeyPairDataset

    rows = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(70)]
    dataset = Dataset.from_dict({"text": rows, "other": ["I love it"] * 70, "label": list(range(70))})
    streamed = mtl(KeyDataset(dataset, "text"), batch_size=2)
    assert isinstance(streamed, Iterator)
    outputs = list(streamed)
    assert_same_results(outputs, mtl(rows, batch_size=2))  # the list's results, in order, across chunks
    pairs = list(mtl(KeyPairDataset(dataset, "text", "other"), tasks="sentiment", batch_size=4))
    assert_same_results(pairs, mtl([{"text": t, "text_pair": "I love it"} for t in rows], tasks="sentiment"))
    assert_same_results(list(mtl(dataset.select_columns(["text"]), tasks="sentiment")), mtl(rows, tasks="sentiment"))
    assert isinstance(mtl(tuple(rows[:3])), list)  # a list or tuple still gives a list


def test_a_bad_item_in_a_stream_is_named_by_its_index_in_the_stream(mtl):
    def texts():
        for i in range(600):
            yield None if i == 300 else "fine"

    results = mtl(texts(), batch_size=4, tasks="sentiment")  # chunks of 64
    assert len(list(itertools.islice(results, 256))) == 256  # chunks before the bad one come through
    with pytest.raises(ValueError, match="Input 300 is None"):
        next(results)
    with pytest.raises(TypeError, match="unexpected parameters"):
        mtl(texts(), temperature=1)  # parameters are checked when the call is made, not when iterated


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


# ---------------------------------------------------------------------------- real encoder, real data
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "conll2003").is_dir(), reason=f"real data not found at {REAL_DATA}")
def test_real_minilm_on_real_data_matches_the_built_in_pipelines(minilm_dir, tokenizer):
    from datasets import Dataset
    from transformers.pipelines.pt_utils import KeyDataset

    from hf_mtl import SequenceClassificationTask, TokenClassificationTask
    from hf_mtl.data.loaders import read_conll, read_delimited

    torch.manual_seed(0)
    labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    model = MultiTaskModel.from_encoder(
        minilm_dir, tasks=[SequenceClassificationTask("sentiment", ["negative", "positive"]), TokenClassificationTask("ner", labels)]
    ).eval()
    nlp = MultiTaskPipeline(model=model, tokenizer=tokenizer, device="cpu", ignore_labels=[])
    sentences = list(read_conll(REAL_DATA / "conll2003" / "validation.txt").select(range(150))["tokens"])
    for strategy in ("none", "first"):
        builtin = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, aggregation_strategy=strategy, ignore_labels=[], device="cpu")
        ours = nlp(sentences, is_split_into_words=True, aggregation_strategy=strategy, tasks="ner", batch_size=16)
        for our, their in zip(ours, builtin(sentences, is_split_into_words=True)):
            assert_same_entities(our["ner"], [_plain(e) for e in their])
    # a long document: "none" reports each token once, numbered in the whole text, as the built-in's merge keeps it
    document = " ".join(" ".join(words) for words in sentences)
    assert len(tokenizer(document)["input_ids"]) > 2 * nlp.max_length
    ours = nlp(document, aggregation_strategy="none", tasks="ner", stride=64)["ner"]
    assert [e["index"] for e in ours] == list(range(1, len(tokenizer(document)["input_ids"]) - 1))
    builtin = pipeline("token-classification", model=model.task_view("ner"), tokenizer=tokenizer, ignore_labels=[], device="cpu")
    theirs = [{k: v for k, v in _plain(e).items() if k != "index"} for e in builtin(document, stride=64)]
    assert_same_entities([{k: v for k, v in e.items() if k != "index"} for e in ours], theirs)
    # SST-2 sentences streamed from a datasets column, as a list, and through the built-in
    sst = read_delimited(REAL_DATA / "sst2" / "validation.tsv", delimiter="\t", header=True, quotechar=None).select(range(300))
    texts = list(sst["sentence"])
    rows = Dataset.from_dict({"text": texts})
    streamed = list(nlp(KeyDataset(rows, "text"), tasks="sentiment", batch_size=8))  # 3 chunks of 128
    assert_same_results(streamed, nlp(texts, tasks="sentiment"))
    text_classification = pipeline("text-classification", model=model.task_view("sentiment"), tokenizer=tokenizer, device="cpu")
    for our, their in zip(streamed, text_classification(texts)):
        assert_same_classification(our["sentiment"], their)
