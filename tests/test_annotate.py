"""`hf-mtl annotate` / `hf_mtl.annotate_dataset`: every head over a whole input, written as Parquet or JSONL.

The annotations are checked against `pipeline("multitask")` on the same texts; inputs in each format give the
same output; an interrupted run (SIGKILL while a part is being written) resumes to the uninterrupted output;
two processes under torchrun give the same output as one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import NER_LABELS, make_model, run_isolated
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer, pipeline

from hf_mtl import SequenceClassificationTask, TokenClassificationTask
from hf_mtl.annotate import annotate_dataset, parts_dir
from hf_mtl.cli import main

SCRIPTS = Path(__file__).parent / "scripts"
ROWS = 40
ROWS_PER_PART = 6  # 7 parts, the last one short

WORDS = "john smith visited paris and loved the food but the weather in london was awful".split()


def texts(n: int = ROWS) -> list[str]:
    # lengths from 1 to 40 words, so batches are length-sorted and one text needs two windows with max_length 32
    return [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(1 + (i * 7) % 40)) for i in range(n)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, minilm_dir):
    tasks = [
        SequenceClassificationTask("sentiment", ["negative", "positive"]),
        SequenceClassificationTask("topics", ["World", "Sports", "Business"], problem_type="multi_label_classification"),
        SequenceClassificationTask("stars", ["stars"], problem_type="regression"),
        TokenClassificationTask("ner", NER_LABELS),
    ]
    model = make_model(tasks, seed=3)
    out = tmp_path_factory.mktemp("annotate_model")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir, model_max_length=32).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def rows():
    return {"id": list(range(ROWS)), "text": texts(), "source": [f"doc-{i % 3}" for i in range(ROWS)]}


@pytest.fixture(scope="module")
def jsonl_input(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("annotate_in") / "rows.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(ROWS):
            handle.write(json.dumps({k: v[i] for k, v in rows.items()}) + "\n")
    return path


@pytest.fixture(scope="module")
def reference(model_dir, jsonl_input, tmp_path_factory):
    """One uninterrupted single-process run (Parquet out) and the pipeline's own results."""
    out = tmp_path_factory.mktemp("annotate_ref") / "out.parquet"
    result = annotate_dataset(model_dir, jsonl_input, out, rows_per_part=ROWS_PER_PART, batch_size=4, progress=False)
    predictions = pipeline("multitask", model=model_dir)(texts())
    return out, result, predictions


def test_output_holds_the_input_columns_and_every_heads_predictions(reference, rows, model_dir):
    out, result, predictions = reference
    assert result.rows == ROWS and result.parts_written == 7 and result.merged
    assert not parts_dir(out).exists()  # removed once the output is written
    table = pq.read_table(out)
    assert table.column_names == [
        "id", "text", "source", "sentiment_label", "sentiment_score", "topics_label", "topics_score", "stars_value",
        "ner_entities",
    ]
    assert table.schema.field("ner_entities").type == pa.list_(
        pa.struct([("entity_group", pa.string()), ("word", pa.string()), ("start", pa.int64()), ("end", pa.int64()),
                   ("score", pa.float64())])
    )
    got = table.to_pylist()
    for i, (row, expected) in enumerate(zip(got, predictions)):
        assert {k: row[k] for k in rows} == {k: v[i] for k, v in rows.items()}  # input order and values kept
        assert row["sentiment_label"] == expected["sentiment"]["label"]
        assert row["sentiment_score"] == pytest.approx(expected["sentiment"]["score"], abs=1e-5)
        assert row["stars_value"] == pytest.approx(expected["stars"]["score"], abs=1e-5)
        assert close(row["ner_entities"], expected["ner"]), i
    # multi-label: every label whose sigmoid is at least 0.5, best first
    ranked = pipeline("multitask", model=model_dir)(texts(), tasks="topics", top_k=None)
    for row, labels in zip(got, ranked):
        kept = [x for x in labels["topics"] if x["score"] >= 0.5]
        assert row["topics_label"] == [x["label"] for x in kept]
        assert row["topics_score"] == pytest.approx([x["score"] for x in kept], abs=1e-5)
    assert any(row["topics_label"] for row in got) and any(row["ner_entities"] for row in got)


def annotations(path: Path) -> list[dict]:
    table = pq.read_table(path) if path.suffix == ".parquet" else None
    if table is None:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return table.to_pylist()


def close(a, b, tol: float = 1e-5) -> bool:
    """Equal, floats within `tol`, in nested lists and dicts."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= tol
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    return a == b


def assert_same_rows(got: list[dict], expected: list[dict], tol: float = 1e-5) -> None:
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert close(a, b, tol), f"row {i}: {a} != {b}"


def test_every_input_format_gives_the_same_output(reference, rows, model_dir, tmp_path):
    expected = annotations(reference[0])
    table = pa.table(rows)
    csv = tmp_path / "rows.csv"
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, csv)
    tsv = tmp_path / "rows.tsv"
    pacsv.write_csv(table, tsv, pacsv.WriteOptions(delimiter="\t"))
    folder = tmp_path / "parquet_folder"
    folder.mkdir()
    pq.write_table(table.slice(0, 15), folder / "a.parquet")
    pq.write_table(table.slice(15), folder / "b.parquet")
    saved = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_dict({"text": ["x"]}), "test": Dataset.from_dict(rows)}).save_to_disk(saved)
    for source, split in ((csv, "train"), (tsv, "train"), (folder, "train"), (saved, "test")):
        out = tmp_path / f"{source.name}.parquet"
        annotate_dataset(model_dir, source, out, split=split, rows_per_part=16, batch_size=8, progress=False)
        assert_same_rows(annotations(out), expected)
    # JSON lines out: the same records
    out = tmp_path / "out.jsonl"
    annotate_dataset(model_dir, folder, out, rows_per_part=16, progress=False)
    assert_same_rows(annotations(out), expected)
    with pytest.raises(KeyError, match="no split 'validation'.*'test', 'train'"):
        annotate_dataset(model_dir, saved, tmp_path / "v.parquet", split="validation", progress=False)


def test_text_pairs_and_selected_tasks(model_dir, tmp_path):
    data = tmp_path / "pairs.jsonl"
    pairs = [{"premise": t, "hypothesis": t[::-1]} for t in texts(10)]
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    out = tmp_path / "out.parquet"
    annotate_dataset(model_dir, data, out, text_column="premise", text_pair_column="hypothesis", tasks="sentiment,stars",
             progress=False)
    got = pq.read_table(out)
    assert got.column_names == ["premise", "hypothesis", "sentiment_label", "sentiment_score", "stars_value"]
    expected = pipeline("multitask", model=model_dir)([{"text": p["premise"], "text_pair": p["hypothesis"]} for p in pairs],
                                                    tasks=["sentiment"])
    assert got.column("sentiment_label").to_pylist() == [e["sentiment"]["label"] for e in expected]


def test_bad_inputs_are_named(model_dir, tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "fine"}\n{"text": null}\n{"text": "also fine"}\n', encoding="utf-8")
    with pytest.raises(KeyError, match="no column 'body'.*\\['text'\\]"):
        annotate_dataset(model_dir, data, tmp_path / "a.parquet", text_column="body", progress=False)
    with pytest.raises(ValueError, match="row 1, column 'text': expected a string, got no value"):
        annotate_dataset(model_dir, data, tmp_path / "b.parquet", tasks="ner", progress=False)
    clash = tmp_path / "clash.jsonl"
    clash.write_text('{"text": "fine", "sentiment_label": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="already has a column 'sentiment_label'"):
        annotate_dataset(model_dir, clash, tmp_path / "c.parquet", progress=False)
    # parts of a run with other settings are not mixed in
    annotate_dataset(model_dir, clash, tmp_path / "d.parquet", tasks="ner", keep_parts=True, progress=False)
    with pytest.raises(ValueError, match="other settings.*tasks: \\['ner'\\] then, \\['stars'\\] now"):
        annotate_dataset(model_dir, clash, tmp_path / "d.parquet", tasks="stars", progress=False)
    assert main(["annotate", model_dir, str(tmp_path / "missing.jsonl"), str(tmp_path / "e.parquet")]) == 2
    assert "missing.jsonl: no such file or folder" in capsys.readouterr().err


def test_resume_after_a_kill_gives_the_uninterrupted_output(reference, model_dir, jsonl_input, tmp_path, capsys):
    """A run killed (SIGKILL) while writing its third part, rerun with the same command: it keeps the two
    finished parts, ignores the half-written file and ends with the uninterrupted run's output."""
    out = tmp_path / "out.parquet"
    command = [str(jsonl_input), str(out), "--rows-per-part", str(ROWS_PER_PART), "--batch-size", "4", "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    killed = run_isolated([sys.executable, str(SCRIPTS / "annotate_kill.py"), "3", model_dir, *command], env, 120)
    assert killed.returncode == -9, killed.stderr[-3000:]
    parts = parts_dir(out)
    assert sorted(p.name for p in parts.glob("part-*")) == ["part-000000.parquet", "part-000001.parquet"]
    assert len(list(parts.glob(".part-000002.parquet.tmp-*"))) == 1  # the part being written when killed
    assert not out.exists()
    assert main(["annotate", model_dir, *command]) == 0
    assert "kept 2 finished part(s)" in capsys.readouterr().err
    assert_same_rows(annotations(out), annotations(reference[0]))
    assert not parts.exists()


def test_two_processes_under_torchrun_give_the_same_output(reference, model_dir, jsonl_input, tmp_path):
    """torchrun --nproc_per_node 2: each process annotates a contiguous range of parts (the row count of the JSONL
    input is counted), process 0 concatenates after a gloo barrier. A part left by an earlier run is kept."""
    out = tmp_path / "out.parquet"
    parts = parts_dir(out)
    annotate_dataset(model_dir, jsonl_input, tmp_path / "first.parquet", rows_per_part=ROWS_PER_PART, progress=False,
             keep_parts=True)
    parts.mkdir()
    for name in ("manifest.json", "part-000005.parquet"):  # a part of process 1's share, from an earlier run
        (parts / name).write_bytes((parts_dir(tmp_path / "first.parquet") / name).read_bytes())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    from test_distributed import free_port

    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), "-m", "hf_mtl", "annotate", model_dir, str(jsonl_input), str(out),
        "--rows-per-part", str(ROWS_PER_PART), "--batch-size", "4", "--no-progress",
    ]
    result = run_isolated(command, env, 180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 0 of 2: annotated 18 rows" in result.stderr  # parts 0-2
    assert "process 1 of 2: annotated 16 rows" in result.stderr and "kept 1 finished part(s)" in result.stderr  # 3-6
    assert_same_rows(annotations(out), annotations(reference[0]))


def test_an_onnx_export_folder_is_run_on_onnx_runtime(model_dir, jsonl_input, reference, tmp_path):
    pytest.importorskip("onnxruntime")
    from hf_mtl import export_onnx

    export = tmp_path / "onnx"
    export_onnx(model_dir, export)
    out = tmp_path / "out.parquet"
    result = annotate_dataset(str(export), jsonl_input, out, rows_per_part=16, progress=False)
    assert type(result).__name__ == "AnnotateResult"
    got, expected = annotations(out), annotations(reference[0])
    assert [r["sentiment_label"] for r in got] == [r["sentiment_label"] for r in expected]
    assert close([r["ner_entities"] for r in got], [r["ner_entities"] for r in expected], 1e-4)
