"""prepare_datasets: label encoding, sub-word alignment (real MiniLM tokenizer), windows, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, List, Sequence, Value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_mtl import SequenceClassificationTask, TokenClassificationTask, prepare_datasets
from hf_mtl.modeling_multitask import IGNORE_INDEX

from conftest import NER_LABELS

NER = TokenClassificationTask("ner", NER_LABELS)
NER_ALL = TokenClassificationTask("ner", NER_LABELS, label_all_subwords=True)
SENT = SequenceClassificationTask("sentiment", ["negative", "positive"])

# words that the uncased MiniLM WordPiece vocabulary splits into several pieces, punctuation, unicode
WORDS = ["Schwarzenegger", "Zürich", "antidisestablishmentarianism", "Ouagadougou", "naïve", "U.S.", "'s", "--",
         "3,500", "café", "北京", "Müller-Lüdenscheidt", "a", "the", "e-mail", "(", ")", "Nguyễn", "x"]


def _first_subword_labels(tokenizer, words, tags, labels):
    """Independent reference: label of each word's first sub-word, -100 elsewhere."""
    enc = tokenizer(words, is_split_into_words=True)
    expected, previous = [], None
    for word in enc.word_ids():
        expected.append(IGNORE_INDEX if word is None or word == previous else NER.label2id[tags[word]])
        previous = word
    return expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sentence=st.lists(
        st.tuples(st.sampled_from(WORDS), st.sampled_from(NER_LABELS)), min_size=1, max_size=25
    )
)
def test_first_subword_alignment_matches_word_ids(tokenizer, sentence):
    words = [w for w, _ in sentence]
    tags = [t for _, t in sentence]
    out = prepare_datasets({"ner": Dataset.from_dict({"tokens": [words], "tags": [tags]})}, [NER], tokenizer)["ner"]
    labels = out[0]["labels"]
    assert labels == _first_subword_labels(tokenizer, words, tags, labels)
    # exactly one label per word, in order
    assert [NER.id2label[l] for l in labels if l != IGNORE_INDEX] == tags
    assert out[0]["length"] == len(out[0]["input_ids"])


def test_label_all_subwords_turns_b_into_i_on_continuations(tokenizer):
    words, tags = ["Schwarzenegger", "visited", "Ouagadougou"], ["B-PER", "O", "B-LOC"]
    data = {"ner": Dataset.from_dict({"tokens": [words], "tags": [tags]})}
    train = prepare_datasets(data, [NER_ALL], tokenizer, split="train")["ner"][0]
    pieces = tokenizer.convert_ids_to_tokens(train["input_ids"])
    named = [(p, NER.id2label[l] if l != IGNORE_INDEX else None) for p, l in zip(pieces, train["labels"])]
    assert named[0] == ("[CLS]", None) and named[-1] == ("[SEP]", None)
    per = [label for piece, label in named[1:-1] if label and label.endswith("PER")]
    assert per[0] == "B-PER" and len(per) > 1 and set(per[1:]) == {"I-PER"}
    # evaluation data always scores one prediction per word
    evaluation = prepare_datasets(data, [NER_ALL], tokenizer, split="validation")["ner"][0]
    assert [l for l in evaluation["labels"] if l != IGNORE_INDEX] == [1, 0, 5]


def test_long_sentences_are_split_into_windows_and_every_word_labelled_once(tokenizer, caplog):
    words = [WORDS[i % len(WORDS)] for i in range(400)]
    tags = [NER_LABELS[i % len(NER_LABELS)] for i in range(400)]
    data = {"ner": Dataset.from_dict({"tokens": [words, ["short"]], "tags": [tags, ["O"]]})}
    with caplog.at_level(logging.WARNING):
        out = prepare_datasets(data, [NER], tokenizer, split="validation", max_length=64)["ner"]
    assert len(out) > 3
    assert "split into overlapping windows" in caplog.text
    windows = out.select(range(len(out) - 1))
    assert all(len(ids) <= 64 for ids in windows["input_ids"])
    labelled = [NER.id2label[l] for row in windows["labels"] for l in row if l != IGNORE_INDEX]
    assert labelled == tags  # every word once, in order: nothing dropped, nothing doubled
    assert out[len(out) - 1]["labels"] == [IGNORE_INDEX, 0, IGNORE_INDEX]


def test_sequence_labels_as_names_ids_and_classlabel(tokenizer):
    features = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    data = {
        "a": Dataset.from_dict({"text": ["good", "bad"], "label": ["positive", "negative"]}),
        "b": Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]}),
        "c": Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]}, features=features),
    }
    tasks = [SequenceClassificationTask(n, ["negative", "positive"]) for n in "abc"]
    out = prepare_datasets(data, tasks, tokenizer)
    assert out["a"]["labels"] == out["b"]["labels"] == out["c"]["labels"] == [1, 0]
    assert set(out["a"].column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels", "length"}


def test_multi_label_regression_and_pairs(tokenizer):
    ml = SequenceClassificationTask("ml", ["x", "y", "z"], problem_type="multi_label_classification")
    reg = SequenceClassificationTask("reg", problem_type="regression", text_pair_column="other")
    multi_reg = SequenceClassificationTask("mreg", ["p", "q"], problem_type="regression")
    out = prepare_datasets(
        {
            "ml": Dataset.from_dict({"text": ["a", "b"], "label": [["x", "z"], []]}),
            "reg": Dataset.from_dict({"text": ["a", "b"], "other": ["c", "d"], "label": [0.5, 2]}),
            "mreg": Dataset.from_dict({"text": ["a"], "label": [[0.1, 0.2]]}),
        },
        [ml, reg, multi_reg],
        tokenizer,
    )
    assert out["ml"]["labels"] == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert out["reg"]["labels"] == pytest.approx([0.5, 2.0])
    assert out["reg"][0]["token_type_ids"].count(1) == 2  # second segment: "c" [SEP]
    assert np.allclose(out["mreg"]["labels"][0], [0.1, 0.2])


def test_truncation_is_counted_in_a_warning(tokenizer, caplog):
    data = {"sentiment": Dataset.from_dict({"text": ["word " * 100, "short"], "label": [0, 1]})}
    with caplog.at_level(logging.WARNING):
        out = prepare_datasets(data, [SENT], tokenizer, max_length=16)["sentiment"]
    assert "1 of 2 texts are longer than 16 tokens and were truncated" in caplog.text
    assert out["length"] == [16, 3]


@pytest.mark.parametrize(
    "task,rows,message",
    [
        (SENT, {"text": ["a", "b"], "label": ["positive", "meh"]},
         r"Task 'sentiment', split 'train', row 1: label 'meh' is not in the task's label set; known labels are \['negative', 'positive'\]"),
        (SENT, {"text": ["a"], "label": [7]}, r"row 0: label 7 is not in the task's label set"),
        (SENT, {"text": ["a"], "label": [0.5]}, r"row 0: label 0.5 has type float; expected a label name"),
        (SENT, {"text": [None], "label": [1]}, r"row 0: column 'text' holds None"),
        (SequenceClassificationTask("ml", ["x"], problem_type="multi_label_classification"),
         {"text": ["a"], "label": [["x", "w"]]}, r"Task 'ml', split 'train', row 0: label 'w' is not in"),
        (SequenceClassificationTask("ml", ["x"], problem_type="multi_label_classification"),
         {"text": ["a"], "label": ["x"]}, r"multi-label value 'x' must be a list"),
        (SequenceClassificationTask("r", problem_type="regression"), {"text": ["a"], "label": ["high"]},
         r"regression target 'high' is not a finite number"),
        (NER, {"tokens": [["a", "b"]], "tags": [["O"]]}, r"row 0: 2 words in 'tokens' but 1 tags in 'tags'"),
        (NER, {"tokens": [["a"]], "tags": [["B-FOO"]]}, r"row 0: tag 'B-FOO' is not in the task's label set"),
        (SENT, {"txt": ["a"], "label": [0]}, r"column\(s\) \['text'\] not found; the dataset has columns \['txt', 'label'\]"),
    ],
)
def test_bad_values_name_task_split_row_and_value(tokenizer, task, rows, message):
    with pytest.raises(ValueError, match=message):
        prepare_datasets({task.name: Dataset.from_dict(rows)}, [task], tokenizer)


def test_empty_dataset_and_unknown_key_are_errors(tokenizer):
    empty = Dataset.from_dict({"text": [], "label": []}, features=Features({"text": Value("string"), "label": Value("int64")}))
    with pytest.raises(ValueError, match="'sentiment' .*empty"):
        prepare_datasets({"sentiment": empty}, [SENT], tokenizer)
    with pytest.raises(KeyError, match=r"\['topic'\].*not tasks of the model"):
        prepare_datasets({"topic": empty}, [SENT], tokenizer)


def test_prepared_datasets_pass_through(tokenizer):
    prepared = prepare_datasets({"sentiment": Dataset.from_dict({"text": ["a"], "label": [1]})}, [SENT], tokenizer)
    again = prepare_datasets(prepared, [SENT], tokenizer)
    assert again["sentiment"] is prepared["sentiment"]


def test_int_tags_sequence_feature(tokenizer):
    features = Features({"tokens": Sequence(Value("string")), "tags": Sequence(ClassLabel(names=NER_LABELS))})
    data = Dataset.from_dict({"tokens": [["John", "ran"]], "tags": [[1, 0]]}, features=features)
    out = prepare_datasets({"ner": data}, [NER], tokenizer)["ner"]
    assert [l for l in out[0]["labels"] if l != IGNORE_INDEX] == [1, 0]


# ---------------------------------------------------------------------------- ClassLabel columns
def _classlabel_data(names: list[str], values: list, wrap=None, texts: list | None = None) -> Dataset:
    """Texts with a `label` column that is a ClassLabel with `names` (wrapped, e.g. in a Sequence, by `wrap`)."""
    feature = ClassLabel(names=names)
    features = Features({"text": Value("string"), "label": wrap(feature) if wrap else feature})
    return Dataset.from_dict({"text": texts or [f"text {i}" for i in range(len(values))], "label": values}, features=features)


def test_class_label_ids_are_read_through_the_column_names(tokenizer):
    # The column lists the labels in another order than the task: id 1 of the column is "positive",
    # which is id 0 of the task. Taking the column's ids as the task's ids would train swapped labels.
    task = SequenceClassificationTask("sentiment", ["positive", "negative"])
    data = _classlabel_data(["negative", "positive"], [1, 0, 1], texts=["good", "bad", "great"])
    assert prepare_datasets({"sentiment": data}, [task], tokenizer)["sentiment"]["labels"] == [0, 1, 0]
    # multi-label: a list of ClassLabel ids
    multi = SequenceClassificationTask("topics", ["x", "y", "z"], problem_type="multi_label_classification")
    data = _classlabel_data(["z", "x", "y"], [[0, 2], [1], []], wrap=List)
    assert prepare_datasets({"topics": data}, [multi], tokenizer)["topics"]["labels"] == [
        [0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    ]


@pytest.mark.parametrize("wrap", [Sequence, List])
def test_class_label_tags_are_read_through_the_column_names(tokenizer, wrap):
    reordered = list(reversed(NER_LABELS))  # e.g. a dataset whose tag names are in another order
    features = Features({"tokens": Sequence(Value("string")), "tags": wrap(ClassLabel(names=reordered))})
    tags = ["B-PER", "I-PER", "O", "B-LOC"]
    data = Dataset.from_dict(
        {"tokens": [["John", "Smith", "in", "Paris"]], "tags": [[reordered.index(t) for t in tags]]}, features=features
    )
    out = prepare_datasets({"ner": data}, [NER], tokenizer)["ner"]
    assert [NER.id2label[l] for l in out[0]["labels"] if l != IGNORE_INDEX] == tags


def test_class_label_in_the_task_order_is_unchanged(tokenizer):
    data = _classlabel_data(["negative", "positive"], [1, 0])
    assert prepare_datasets({"sentiment": data}, [SENT], tokenizer)["sentiment"]["labels"] == [1, 0]


@pytest.mark.parametrize(
    "task,names,values,message",
    [
        (SENT, ["negative", "neutral", "positive"], [2, 1],
         r"Task 'sentiment', split 'train', row 1: label 1 \(ClassLabel name 'neutral' of column 'label'\) is not in "
         r"the task's label set; known labels are \['negative', 'positive'\]"),
        (SENT, ["negative", "positive"], [1, -1],
         r"row 1: label -1 is not an id of column 'label''s ClassLabel names \['negative', 'positive'\] \(ids 0..1\)"),
        (NER, [*NER_LABELS, "B-MISC"], [[0, 7]],
         r"Task 'ner', split 'train', row 0: tag 7 \(ClassLabel name 'B-MISC' of column 'tags'\) is not in the task's "
         r"label set"),
    ],
)
def test_class_label_name_missing_from_the_task_is_an_error(tokenizer, task, names, values, message):
    if isinstance(task, TokenClassificationTask):
        features = Features({"tokens": Sequence(Value("string")), "tags": Sequence(ClassLabel(names=names))})
        data = Dataset.from_dict({"tokens": [["a", "b"]], "tags": values}, features=features)
    else:
        data = _classlabel_data(names, values)
    with pytest.raises(ValueError, match=message):
        prepare_datasets({task.name: data}, [task], tokenizer)


# ---------------------------------------------------------------------------- text pairs
def test_text_pairs_are_encoded_as_the_builtin_pipeline_encodes_them(tokenizer):
    # The built-in text-classification pipeline tokenizes {"text": t, "text_pair": p} in one call, which
    # treats an empty (or missing) pair as no pair; a whitespace-only pair stays a pair.
    task = SequenceClassificationTask("nli", ["yes", "no"], text_pair_column="hypothesis")
    texts = ["a cat", "a dog sleeps", "a bird", "a fish swims", "a cow", "an owl"]
    pairs = ["", None, " ", "an animal sleeps", "\t", "a bird"]
    data = Dataset.from_dict({"text": texts, "hypothesis": pairs, "label": [0, 1, 0, 1, 0, 1]})
    out = prepare_datasets({"nli": data}, [task], tokenizer)["nli"]
    assert len(out) == len(texts)
    for row, (text, pair) in enumerate(zip(texts, pairs)):
        expected = tokenizer(text=text, text_pair=pair)
        assert out[row]["input_ids"] == expected["input_ids"], (text, pair)
        assert out[row]["token_type_ids"] == expected["token_type_ids"], (text, pair)
    assert out["labels"] == [0, 1, 0, 1, 0, 1]


def test_truncation_of_mixed_pairs_and_single_texts_is_counted(tokenizer, caplog):
    task = SequenceClassificationTask("nli", ["yes", "no"], text_pair_column="hypothesis")
    long = "word " * 40
    data = Dataset.from_dict({"text": [long, "short", long], "hypothesis": ["", "x", long], "label": [0, 1, 0]})
    with caplog.at_level(logging.WARNING):
        out = prepare_datasets({"nli": data}, [task], tokenizer, max_length=16)["nli"]
    assert out["length"] == [16, 5, 16]
    assert out[0]["input_ids"] == tokenizer(text=long, truncation=True, max_length=16)["input_ids"]
    assert "2 of 3 texts are longer than 16 tokens and were truncated" in caplog.text


def test_a_pair_that_is_not_a_string_or_none_is_an_error(tokenizer):
    task = SequenceClassificationTask("nli", ["yes", "no"], text_pair_column="hypothesis")
    data = Dataset.from_dict({"text": ["a", "b"], "hypothesis": [None, 5], "label": [0, 1]})
    with pytest.raises(
        ValueError,
        match=r"Task 'nli', split 'train', row 1: column 'hypothesis' holds 5 \(int\); expected a string \(or None",
    ):
        prepare_datasets({"nli": data}, [task], tokenizer)


# ---------------------------------------------------------------------------- max length
def test_max_length_takes_the_roberta_position_offset(minilm_dir):
    from transformers import AutoTokenizer, BertConfig, DebertaV2Config, RobertaConfig

    from hf_mtl import MultiTaskConfig
    from hf_mtl.preprocessing import effective_max_length

    unlimited = AutoTokenizer.from_pretrained(minilm_dir, model_max_length=int(1e30))
    roberta = RobertaConfig(max_position_embeddings=34)  # position ids start at pad_token_id + 1 = 2
    multi = MultiTaskConfig(encoder=roberta, tasks=[SENT.to_config_dict()])
    assert effective_max_length(unlimited, None, roberta) == 32
    assert effective_max_length(unlimited, None, multi) == 32
    assert effective_max_length(unlimited, None, BertConfig(max_position_embeddings=34)) == 34
    assert effective_max_length(unlimited) == 512  # nothing known: the usual encoder size
    limited = AutoTokenizer.from_pretrained(minilm_dir, model_max_length=20)
    assert effective_max_length(limited, None, multi) == 20
    assert effective_max_length(unlimited, 24, multi) == 24
    with pytest.raises(ValueError, match=r"max_length=33 is longer than the model can take: its encoder reads at most 32"):
        effective_max_length(unlimited, 33, multi)
    # relative positions only (DeBERTa-v3): the position count is no limit
    relative = DebertaV2Config(max_position_embeddings=34, position_biased_input=False)
    assert effective_max_length(unlimited, 64, relative) == 64
    assert effective_max_length(limited, None, relative) == 20


def test_prepare_datasets_given_a_config_uses_the_model_limit(minilm_dir):
    from transformers import AutoTokenizer, RobertaConfig

    from hf_mtl import MultiTaskConfig

    unlimited = AutoTokenizer.from_pretrained(minilm_dir, model_max_length=int(1e30))
    config = MultiTaskConfig(encoder=RobertaConfig(max_position_embeddings=34), tasks=[SENT.to_config_dict()])
    data = {"sentiment": Dataset.from_dict({"text": ["word " * 50], "label": [1]})}
    assert prepare_datasets(data, config, unlimited)["sentiment"]["length"] == [32]
    with pytest.raises(ValueError, match="max_length=64 is longer than the model can take"):
        prepare_datasets(data, config, unlimited, max_length=64)
