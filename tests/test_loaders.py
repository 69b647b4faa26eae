"""File readers (CoNLL, CSV/TSV, JSONL, Parquet) and task data sources, on small files written here."""

from __future__ import annotations

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_mtl.data import (
    DataFileError,
    DataSource,
    DataSourceError,
    infer_format,
    load_task_data,
    read_conll,
    read_delimited,
    read_file,
    read_jsonl,
    read_parquet,
    to_task_dataset,
)
from hf_mtl import prepare_datasets
from hf_mtl.modeling_multitask import IGNORE_INDEX
from hf_mtl.tasks import SequenceClassificationTask, TokenClassificationTask

NER = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- CoNLL
def test_conll_with_docstart_and_four_columns(tmp_path):
    path = write(tmp_path / "train.txt", (
        "-DOCSTART- -X- -X- O\n\n"
        "Anna NNP B-NP B-PER\nlives VBZ B-VP O\nin IN B-PP O\nOslo NNP B-NP B-LOC\n. . O O\n\n"
        "-DOCSTART- -X- -X- O\n\n"
        "New NNP B-NP B-LOC\nYork NNP I-NP I-LOC\n"
    ))
    ds = read_conll(path, token_column=0, tag_column=3)
    assert ds["tokens"] == [["Anna", "lives", "in", "Oslo", "."], ["New", "York"]]
    assert ds["tags"] == [["B-PER", "O", "O", "B-LOC", "O"], ["B-LOC", "I-LOC"]]
    # the last column by default, and the chunk column on request
    assert read_conll(path)["tags"] == ds["tags"]
    assert read_conll(path, tag_column=2)["tags"][1] == ["B-NP", "I-NP"]


def test_conll_without_docstart_whitespace_only_lines_and_tabs(tmp_path):
    path = write(tmp_path / "data.conll", (
        "Anna\tB-PER\nsings\tO\n\t\n"           # a tab-only line ends the sentence
        "Bo\tB-PER\n   \n\n\n"                  # spaces-only and repeated blank lines
        "Oslo\tB-LOC\r\nrocks\tO\r\n"            # CRLF line endings, no final blank line
    ))
    ds = read_conll(path)
    assert ds["tokens"] == [["Anna", "sings"], ["Bo"], ["Oslo", "rocks"]]
    assert ds["tags"] == [["B-PER", "O"], ["B-PER"], ["B-LOC", "O"]]
    # an explicit separator keeps spaces inside tokens
    path2 = write(tmp_path / "sep.conll", "New York\tB-LOC\n")
    assert read_conll(path2, separator="\t")["tokens"] == [["New York"]]


def test_conll_docstart_ends_an_open_sentence_and_can_be_kept(tmp_path):
    path = write(tmp_path / "d.conll", "a O\n-DOCSTART- O\nb O\n")
    assert read_conll(path)["tokens"] == [["a"], ["b"]]
    assert read_conll(path, docstart=None)["tokens"] == [["a", "-DOCSTART-", "b"]]


def test_conll_errors_name_file_and_line(tmp_path):
    path = write(tmp_path / "bad.conll", "Anna B-PER\nlonely\n")
    with pytest.raises(DataFileError, match=r"bad\.conll:2: expected at least 2 columns .*'lonely'"):
        read_conll(path)
    with pytest.raises(FileNotFoundError, match="missing.conll"):
        read_conll(tmp_path / "missing.conll")


# ---------------------------------------------------------------------------- CSV / TSV
def test_csv_without_header(tmp_path):
    path = write(tmp_path / "news.csv", (
        '"3","Fears for pension","Unions say they are ""disappointed"", sources add."\n'
        '"4","Probe, launched","A second\\team of rocketeers"\n'
    ))
    ds = read_file(path, header=False, column_names=["label", "title", "description"])
    assert ds.column_names == ["label", "title", "description"]
    assert ds["label"] == ["3", "4"]
    assert ds["description"][0] == 'Unions say they are "disappointed", sources add.'
    assert ds["title"][1] == "Probe, launched"
    with pytest.raises(DataFileError, match="column_names"):
        read_delimited(path, header=False)


def test_tsv_with_header_reads_quotes_verbatim(tmp_path):
    path = write(tmp_path / "sst.tsv", 'sentence\tlabel\n"quoted" start , ok \t1\nplain text \t0\n\n')
    ds = read_file(path)  # .tsv: tab-separated, no quoting (GLUE style)
    assert ds.column_names == ["sentence", "label"]
    assert ds["sentence"] == ['"quoted" start , ok ', "plain text "]
    assert ds["label"] == ["1", "0"]
    # column_names replace the header's names
    assert read_file(path, column_names=["text", "y"]).column_names == ["text", "y"]


def test_delimited_errors(tmp_path):
    path = write(tmp_path / "bad.tsv", "a\tb\n1\t2\t3\n")
    with pytest.raises(DataFileError, match=r"bad\.tsv:2: expected 2 fields \(a, b\), got 3"):
        read_file(path)
    with pytest.raises(DataFileError, match="empty"):
        read_file(write(tmp_path / "empty.csv", ""))
    with pytest.raises(DataFileError, match="more than once"):
        read_file(write(tmp_path / "dup.csv", "a,a\n1,2\n"))


# ---------------------------------------------------------------------------- JSONL / Parquet
def test_jsonl(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "hi", "label": ["a", "b"]}\n\n{"text": "yo", "label": []}\n')
    ds = read_jsonl(path)
    assert ds["text"] == ["hi", "yo"]
    assert ds["label"] == [["a", "b"], []]
    with pytest.raises(DataFileError, match=r"bad\.jsonl:2: invalid JSON"):
        read_file(write(tmp_path / "bad.jsonl", '{"a": 1}\n{"a": \n'))
    with pytest.raises(DataFileError, match=r"list\.jsonl:1: expected a JSON object"):
        read_file(write(tmp_path / "list.jsonl", "[1, 2]\n"))


def test_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"tokens": [["a", "b"], ["c"]], "tags": [["O", "B-PER"], ["O"]]}), path)
    ds = read_parquet(path)
    assert ds["tokens"] == [["a", "b"], ["c"]]
    assert read_file(path)["tags"] == [["O", "B-PER"], ["O"]]
    with pytest.raises(DataFileError, match="not a readable Parquet file"):
        read_parquet(write(tmp_path / "fake.parquet", "nope"))


def test_infer_format():
    assert [infer_format(p) for p in ("a.conll", "a.txt", "a.CSV", "a.tsv", "a.jsonl", "a.parquet")] == [
        "conll", "conll", "csv", "tsv", "jsonl", "parquet"]
    with pytest.raises(DataFileError, match="set `format`"):
        infer_format("data.xlsx")


# ---------------------------------------------------------------------------- task data sources
def test_source_maps_ag_news_style_csv(tmp_path):
    path = write(tmp_path / "train.csv", '"1","Talks","in Geneva"\n"4","Chips","get faster"\n')
    task = SequenceClassificationTask("topic", ["World", "Sports", "Business", "Sci/Tech"])
    source = DataSource(
        files={"train": str(path)}, format="csv",
        reader_options={"header": False, "column_names": ["class_index", "title", "description"]},
        rename={"class_index": "label"}, join={"text": ["title", "description"]},
        label_map={"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"},
    )
    data = load_task_data(source, task, ("train", "validation"))
    assert list(data) == ["train"]  # no validation file: skipped
    assert data["train"].column_names == ["text", "label"]
    assert data["train"]["text"] == ["Talks in Geneva", "Chips get faster"]
    assert data["train"]["label"] == ["World", "Sci/Tech"]


def test_source_label_errors_point_at_the_row(tmp_path):
    path = write(tmp_path / "s.tsv", "text\tlabel\nfine\t0\nodd\t7\n")
    task = SequenceClassificationTask("sentiment", ["negative", "positive"])
    with pytest.raises(DataSourceError, match=r"s\.tsv .*row 0: not one of the task's labels .*add a `label_map`"):
        load_task_data(DataSource(files={"train": str(path)}, format="tsv"), task)
    mapped = DataSource(files={"train": str(path)}, format="tsv", label_map={"0": "negative", "1": "positive"})
    with pytest.raises(DataSourceError, match=r"row 1: not a key of label_map \['0', '1'\] \(value '7'\)"):
        load_task_data(mapped, task)
    with pytest.raises(DataSourceError, match=r"needs column\(s\) \['label'\]"):
        load_task_data(DataSource(files={"train": str(path)}, format="tsv", rename={"label": "y"}), task)
    with pytest.raises(DataSourceError, match="no 'train' split"):
        load_task_data(DataSource(files={"validation": str(path)}, format="tsv"), task)


def test_source_class_label_ids_are_read_through_their_names_and_extra_columns_are_dropped(tokenizer):
    features = datasets.Features({
        "idx": datasets.Value("int32"),
        "sentence": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["negative", "positive"]),
    })
    raw = datasets.Dataset.from_dict({"idx": [0, 1], "sentence": ["bad", "good"], "label": [0, 1]}, features=features)
    # the task lists its labels in another order than the ClassLabel column
    task = SequenceClassificationTask("sentiment", ["positive", "negative"], text_column="sentence")
    ds = to_task_dataset(raw, task, DataSource(hub="stanfordnlp/sst2"), "sst2[train]")
    assert ds.column_names == ["sentence", "label"]
    assert ds.features["label"].int2str(ds["label"]) == ["negative", "positive"]
    assert prepare_datasets({"sentiment": ds}, [task], tokenizer)["sentiment"]["labels"] == [1, 0]


def test_source_token_tags_from_class_label_sequence_and_label_map(tokenizer):
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NER)),
    })
    raw = datasets.Dataset.from_dict({"tokens": [["Anna", "in", "Oslo"]], "ner_tags": [[1, 0, 3]]}, features=features)
    task = TokenClassificationTask("ner", list(reversed(NER)), tags_column="ner_tags")

    def prepared_tags(ds):
        labels = prepare_datasets({"ner": ds}, [task], tokenizer)["ner"][0]["labels"]
        return [task.id2label[label] for label in labels if label != IGNORE_INDEX]

    assert prepared_tags(to_task_dataset(raw, task, DataSource(hub="x"), "x")) == ["B-PER", "O", "B-LOC"]
    mapped = DataSource(hub="x", label_map={"0": "O", "1": "B-PER", "3": "B-LOC"})
    assert to_task_dataset(raw, task, mapped, "x")["ner_tags"] == [["B-PER", "O", "B-LOC"]]
    assert prepared_tags(to_task_dataset(raw, task, mapped, "x")) == ["B-PER", "O", "B-LOC"]
    with pytest.raises(DataSourceError, match=r"x, row 0: not a key of label_map"):
        to_task_dataset(raw, task, DataSource(hub="x", label_map={"0": "O"}), "x")


def test_source_multi_label_regression_and_max_examples(tmp_path):
    path = write(tmp_path / "m.csv", "text,label,score\na,x|y,0.5\nb,,1\nc,y,2.5\n")
    multi = SequenceClassificationTask("tags", ["x", "y"], problem_type="multi_label_classification")
    data = load_task_data(DataSource(files={"train": str(path)}, format="csv"), multi)
    assert data["train"]["label"] == [["x", "y"], [], ["y"]]
    reg = SequenceClassificationTask("score", None, label_column="score", problem_type="regression")
    limited = DataSource(files={"train": str(path)}, format="csv", max_examples={"train": 2})
    assert load_task_data(limited, reg)["train"]["score"] == [0.5, 1.0]
    bad = write(tmp_path / "bad.csv", "text,score\na,high\n")
    with pytest.raises(DataSourceError, match="expected a number"):
        load_task_data(DataSource(files={"train": str(bad)}, format="csv"), reg)


def test_source_select_and_resolve_paths(tmp_path):
    local = DataSource(files={"train": "sst2/train.tsv"}, format="tsv")
    source = DataSource(hub="stanfordnlp/sst2", local=local).resolve_paths(tmp_path)
    assert source.select(use_local=False).hub == "stanfordnlp/sst2"
    assert source.select(use_local=True).files == {"train": str(tmp_path / "sst2" / "train.tsv")}
    assert source.describe() == "stanfordnlp/sst2"
    assert source.local.describe() == "train: train.tsv"
