"""Smoke test of the benchmark scripts (benchmarks/): each runs end to end on a handful of real examples with a
tiny random encoder, so the scripts cannot rot. Nothing here looks at times or scores."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._data import DEFAULT_DATA_DIR  # noqa: E402

DATA_DIR = os.environ.get("HF_MTL_DATA_DIR", DEFAULT_DATA_DIR)
pytestmark = pytest.mark.skipif(
    not Path(DATA_DIR, "sst2", "train.tsv").is_file(), reason=f"benchmark data not found at {DATA_DIR}"
)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory, minilm_dir) -> str:
    """A tiny random BERT with the real MiniLM tokenizer, saved like a pretrained checkpoint."""
    path = tmp_path_factory.mktemp("tiny_encoder")
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(path)
    return str(path)


def test_train_throughput_runs(tiny_encoder, tmp_path):
    from benchmarks import train_throughput

    out = tmp_path / "train.json"
    payload = train_throughput.main([
        "--data-dir", DATA_DIR, "--model", tiny_encoder, "--steps", "2", "--warmup", "1",
        "--examples-per-task", "48", "--batch-size", "8", "--repeats", "1", "--out", str(out),
    ])
    assert set(payload["results"]) == {"mtl/random", "plain/random", "mtl/grouped", "plain/grouped"}
    for result in payload["results"].values():
        assert result["examples"] > 0 and 0 <= result["padding_fraction"] < 1
    assert json.loads(out.read_text())["benchmark"] == "train_throughput"


def test_quality_runs_caches_and_reports(tiny_encoder, tmp_path):
    """Plain-Trainer baselines and a multi-task setup at two seeds: per-(setup, seed) JSON in the cache, teachers
    saved, paired deltas with intervals; a second call reuses the cache and `--report-only` trains nothing."""
    from benchmarks import quality

    cache, models, out = tmp_path / "cache", tmp_path / "models", tmp_path / "quality.json"
    argv = [
        "--data-dir", DATA_DIR, "--model", tiny_encoder, "--train-sizes", "sentiment=24,topic=16,ner=16",
        "--eval-size", "16", "--batch-size", "8", "--epochs", "1", "--baseline-epochs", "2", "--seeds", "0,1",
        "--setups", "single,temperature", "--results-dir", str(cache), "--models-dir", str(models), "--out", str(out),
    ]
    payload = quality.main(argv)
    summary = payload["summary"]
    assert set(summary) == {"single", "temperature"}
    assert sorted(p.name for p in (cache / "cpu").glob("*.json")) == [
        "single-seed0.json", "single-seed1.json", "temperature-seed0.json", "temperature-seed1.json"]
    single, mtl = summary["single"], summary["temperature"]
    assert set(single["tasks"]) == set(mtl["tasks"]) == {"sentiment/val", "topic/val", "ner/val", "ner/test"}
    for key, task in mtl["tasks"].items():
        assert len(task["values"]) == 2 and task["paired_seeds"] == 2
        lo, hi = task["delta_ci95"]
        assert lo <= task["delta"] <= hi
    assert mtl["params"] < single["params"] and mtl["encoder_passes_per_text"] == 1
    assert {len(curve) for curves in single["curves"].values() for curve in curves.values()} == {2}  # one per epoch
    assert (models / "cpu" / "single-seed1" / "ner" / "config.json").is_file()  # the distillation teachers
    assert "goal_issue12" in mtl and json.loads(out.read_text())["benchmark"] == "quality"

    mtime = (cache / "cpu" / "temperature-seed0.json").stat().st_mtime
    again = quality.main([*argv, "--report-only"])
    assert again["table"] == payload["table"]
    assert (cache / "cpu" / "temperature-seed0.json").stat().st_mtime == mtime


def test_quality_plain_baseline_aligns_words_like_hf_mtl(minilm_dir):
    """The plain-Trainer baseline's NER labels (first sub-word of each word, -100 elsewhere, as transformers'
    example does) are exactly hf_mtl's, so both sides are scored on the same words by the same metric code."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from benchmarks import quality
    from benchmarks._data import read_conll

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    task = quality.TASK_BY_NAME["ner"]
    rows = Dataset.from_list(read_conll(DATA_DIR, "validation")[:40])
    plain = quality.tokenize_for_plain_trainer(task, rows, tokenizer, max_length=160)
    ours = task.prepare(rows, tokenizer, split="validation", max_length=160, for_training=True, stride=0,
                        with_labels=True)
    assert plain["input_ids"] == ours["input_ids"]
    assert plain["labels"] == ours["labels"]
    assert quality._words_scored(plain) == sum(len(t) for t in rows["tokens"])


def test_quality_setups_are_checked_not_guessed():
    """A setup whose feature is not in this checkout is reported with the reason, never run half-configured."""
    from benchmarks import quality

    assert quality.unavailable_reason("proportional") is None
    quality.SETUPS["_bogus"] = {"args": {"task_sampling_strategy": "no_such_strategy"}}
    quality.SETUPS["_missing"] = {"needs": ["hf_mtl.no_such_module:Thing"]}
    try:
        assert "no_such_strategy" in quality.unavailable_reason("_bogus")
        assert "hf_mtl.no_such_module" in quality.unavailable_reason("_missing")
    finally:
        del quality.SETUPS["_bogus"], quality.SETUPS["_missing"]


def test_predict_throughput_runs(tiny_encoder, tmp_path):
    pytest.importorskip("hf_mtl.pipeline")
    from benchmarks import predict_throughput

    out = tmp_path / "predict.json"
    payload = predict_throughput.main([
        "--data-dir", DATA_DIR, "--model", tiny_encoder, "--n-texts", "30", "--batch-size", "8",
        "--repeats", "1", "--out", str(out),
    ])
    assert set(payload["results"]) >= {"a", "b", "c", "single_mixed", "builtin_single_uniform"}
    # same weights, same batch size: the multi-task pipeline and the built-in ones give the same predictions
    assert all(v.startswith("30/30") for v in payload["outputs_agreement"].values()), payload["outputs_agreement"]
    assert json.loads(out.read_text())["benchmark"] == "predict_throughput"


def test_predict_throughput_runs_on_a_trained_checkpoint(tiny_encoder, tmp_path):
    """`--model DIR` with a saved hf_mtl checkpoint benchmarks that checkpoint's own heads (it used to be
    mistaken for a plain encoder and fail)."""
    from benchmarks import predict_throughput
    from hf_mtl import MultiTaskModel, SequenceClassificationTask, TokenClassificationTask

    tasks = [SequenceClassificationTask("mood", ["bad", "good"]), TokenClassificationTask("entities", ["O", "B-X", "I-X"])]
    checkpoint = tmp_path / "checkpoint"
    MultiTaskModel.from_encoder(tiny_encoder, tasks=tasks).save_pretrained(checkpoint)
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(checkpoint)
    payload = predict_throughput.main([
        "--data-dir", DATA_DIR, "--model", str(checkpoint), "--n-texts", "12", "--batch-size", "4",
        "--repeats", "1", "--settings", "a,b,single_mixed,builtin_single_mixed", "--out", str(tmp_path / "p.json"),
    ])
    assert payload["config"]["heads"] == "trained checkpoint"
    assert set(payload["outputs_agreement"]) == {"mood", "entities"}
    assert all(v.startswith("12/12") for v in payload["outputs_agreement"].values()), payload["outputs_agreement"]


def test_predict_throughput_runs_the_onnx_runtime_settings(tiny_encoder, tmp_path):
    pytest.importorskip("onnxruntime")
    from benchmarks import onnx_cold_start, onnx_quality, predict_throughput
    from hf_mtl import MultiTaskModel
    from benchmarks._data import TASKS

    checkpoint = tmp_path / "checkpoint"
    MultiTaskModel.from_encoder(tiny_encoder, tasks=TASKS).save_pretrained(checkpoint)
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(checkpoint)
    export = tmp_path / "onnx"
    payload = predict_throughput.main([
        "--data-dir", DATA_DIR, "--model", str(checkpoint), "--n-texts", "12", "--batch-size", "4", "--repeats", "1",
        "--onnx-dir", str(export), "--settings", "c,ort_fp32,ort_fp32_opt,ort_int8,ort_int8_opt,ort:model.onnx",
        "--out", str(tmp_path / "p.json"),
    ])  # --onnx-dir does not exist yet: exported at start, with the fused and int8 files
    assert {"ort_fp32", "ort_int8_opt", "ort:model.onnx"} <= set(payload["results"])
    assert any(t["name"].startswith("ORT int8 optimized") for t in payload["targets"])
    quality = onnx_quality.main([
        "--model", str(checkpoint), "--export", str(export), "--data-dir", DATA_DIR, "--max-examples", "6",
        "--variants", "int8 per-channel", "--files", "model.opt.int8.onnx", "--out", str(tmp_path / "q.json"),
    ])
    by_backend = {row["backend"]: row for row in quality["results"]}
    assert by_backend["ORT fp32"]["sentiment"] == by_backend["PyTorch fp32"]["sentiment"]
    assert {"int8 per-channel", "ORT model.opt.int8.onnx"} <= set(by_backend)
    cold = onnx_cold_start.main([
        "--model", str(checkpoint), "--export", str(export), "--files", "model.int8.onnx", "--repeats", "1",
        "--out", str(tmp_path / "c.json"),
    ])
    assert [row["case"] for row in cold["results"]] == [
        "PyTorch checkpoint", "ONNX model.int8.onnx", "torch-free OnnxPredictor model.int8.onnx"]
    assert set(cold["startup_s"]) == {"hf-mtl --help", "import hf_mtl", "import hf_mtl.runtime"}


def test_annotate_throughput_runs(tiny_encoder, tmp_path):
    from benchmarks import annotate_throughput

    out = tmp_path / "annotate.json"
    payload = annotate_throughput.main([
        "--data-dir", DATA_DIR, "--model", tiny_encoder, "--n-texts", "12", "--rows-per-part", "4", "--repeats", "1",
        "--memory-rows", "0", "--out", str(out),
    ])
    best = payload["results"]["best"]
    assert best["1"]["rows"] == 12 and best["2"]["rows"] == 12 and len(best["2"]["per_process_s"]) == 2
    assert payload["results"]["outputs_equal"]
    assert json.loads(out.read_text())["benchmark"] == "annotate_throughput"


def test_lora_cost_runs(tiny_encoder, tmp_path):
    from benchmarks import lora_cost

    out = tmp_path / "lora.json"
    payload = lora_cost.main([
        "--data-dir", DATA_DIR, "--model", tiny_encoder, "--steps", "2", "--warmup", "1",
        "--examples-per-task", "24", "--batch-size", "8", "--repeats", "1", "--settings", "full,lora-r8",
        "--out", str(out),
    ])
    results = payload["results"]
    assert set(results) == {"full", "lora-r8"}  # one run per setting is a subprocess: two keep this short
    assert 0 < results["lora-r8"]["trainable_parameters"] < results["full"]["trainable_parameters"]
    assert all(r["step_seconds_median"] > 0 and r["peak_rss_mib"] > 0 for r in results.values())
    assert json.loads(out.read_text())["benchmark"] == "lora_cost"
