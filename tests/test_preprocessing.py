"""prepare_datasets: label encoding, sub-word alignment (real MiniLM tokenizer), windows, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value
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
