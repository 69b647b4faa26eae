"""ONNX export (`hf_mtl.export_onnx`, `hf-mtl export`), the pipeline on an export folder (ONNX Runtime) and the
torch-free `hf_mtl.runtime.OnnxPredictor`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnx  # noqa: E402
import onnxruntime  # noqa: E402
from transformers import BertConfig, DebertaV2Config, DistilBertConfig, ModernBertConfig, RobertaConfig  # noqa: E402

from hf_mtl import MultiTaskConfig, MultiTaskModel, SequenceClassificationTask, TokenClassificationTask  # noqa: E402
from hf_mtl.export import ExportValidationError, export_onnx  # noqa: E402

from conftest import NER_LABELS  # noqa: E402

VOCAB = 30522  # the MiniLM tokenizer's, used with every tiny encoder here
SMALL = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=VOCAB)
FAMILIES = {
    "bert": lambda: BertConfig(hidden_size=32, **SMALL),
    "roberta": lambda: RobertaConfig(hidden_size=32, **SMALL),
    "deberta-v2": lambda: DebertaV2Config(hidden_size=32, **SMALL),
    "distilbert": lambda: DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=37, vocab_size=VOCAB),
    "modernbert": lambda: ModernBertConfig(
        hidden_size=32, pad_token_id=0, bos_token_id=101, eos_token_id=102, cls_token_id=101, sep_token_id=102, **SMALL
    ),
}
ALL_KINDS = [
    SequenceClassificationTask("single", ["a", "b", "c"]),
    SequenceClassificationTask("multi", ["x", "y", "z"], problem_type="multi_label_classification"),
    SequenceClassificationTask("score", problem_type="regression"),
    TokenClassificationTask("ner", NER_LABELS),
]


def family_model(kind: str, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    config = MultiTaskConfig(encoder=FAMILIES[kind](), tasks=[t.to_config_dict() for t in ALL_KINDS])
    model = MultiTaskModel(config).eval()
    with torch.no_grad():  # random heads give near-zero logits; larger ones make label comparisons meaningful
        for head in model.heads.values():
            for p in head.parameters():
                p.mul_(8)
    return model


@pytest.fixture(scope="module")
def bert_export(tmp_path_factory, tokenizer):
    """A BERT model with all four head kinds, exported with int8 (shared by the runtime tests)."""
    model = family_model("bert")
    source = tmp_path_factory.mktemp("bert_model")
    model.save_pretrained(source)
    tokenizer.save_pretrained(source)
    out = tmp_path_factory.mktemp("bert_onnx")
    result = export_onnx(source, out, quantize="int8")
    return model, source, out, result


# ---------------------------------------------------------------------------- export
@pytest.mark.parametrize("kind", list(FAMILIES))
def test_every_family_exports_one_graph_with_one_output_per_head(kind, tmp_path, tokenizer):
    model = family_model(kind)
    result = export_onnx(model, tmp_path, tokenizer=tokenizer)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    inputs = [i.name for i in session.get_inputs()]
    takes_token_types = kind in ("bert", "roberta", "deberta-v2")
    assert inputs == ["input_ids", "attention_mask"] + (["token_type_ids"] if takes_token_types else [])
    assert [o.name for o in session.get_outputs()] == ["single_logits", "multi_logits", "score_logits", "ner_logits"]
    for i in session.get_inputs():  # both axes dynamic (symbolic), not fixed by the example input
        assert all(isinstance(d, str) for d in i.shape), i.shape
    # other shapes than the export example, with padding
    encoded = tokenizer(["a much longer sentence about Paris and Berlin than before", "hi"], padding=True, return_tensors="np")
    feed = {name: encoded[name].astype(np.int64) if name in encoded else np.zeros_like(encoded["input_ids"]) for name in inputs}
    outputs = dict(zip(result.outputs.values(), session.run(None, feed)))
    with torch.inference_mode():
        expected = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits
    for task, name in result.outputs.items():
        np.testing.assert_allclose(outputs[name], expected[task].numpy(), atol=1e-4)
    assert set(result.validation["model.onnx"]) == {"single", "multi", "score", "ner"}
    assert all(f["max_abs_diff"] <= 1e-4 and f["agreement"] == 1.0 for f in result.validation["model.onnx"].values())


def test_export_folder_describes_itself(bert_export):
    model, source, out, result = bert_export
    assert {"model.onnx", "model.int8.onnx", "tokenizer.json", "config.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert not (out / "model.safetensors").exists()
    config = json.loads((out / "config.json").read_text())
    assert [t["name"] for t in config["tasks"]] == ["single", "multi", "score", "ner"]
    assert config["tasks"][0]["id2label"] == {"0": "a", "1": "b", "2": "c"}
    described = config["onnx_export"]
    assert described["file"] == "model.int8.onnx" and result.default_file == "model.int8.onnx"
    assert described["outputs"]["ner"] == "ner_logits"
    assert described["max_length"] == 512
    for name in ("model.onnx", "model.int8.onnx"):
        metadata = {p.key: p.value for p in onnx.load(str(out / name), load_external_data=False).metadata_props}
        tasks = json.loads(metadata["hf_mtl_tasks"])
        assert [t["name"] for t in tasks] == ["single", "multi", "score", "ner"]
        assert tasks[3]["label2id"]["B-LOC"] == 5
    card = (out / "README.md").read_text()
    assert "## ONNX" in card and "`ner_logits`" in card and "model.int8.onnx" in card and "no PyTorch weights" in card
    # the config still loads as a MultiTaskConfig (the pipeline reads it)
    assert MultiTaskConfig.from_pretrained(out).task_names == ["single", "multi", "score", "ner"]


def test_int8_export_reports_agreement_and_is_smaller(bert_export):
    _, _, out, result = bert_export
    assert result.files["model.int8.onnx"] < result.files["model.onnx"] / 2
    figures = result.validation["model.int8.onnx"]
    assert set(figures) == {"single", "multi", "score", "ner"}
    for task, values in figures.items():
        assert 0.0 <= values["agreement"] <= 1.0 and values["max_abs_diff"] > 0, task  # quantized: not identical
    assert figures["ner"]["agreement"] > 0.8


def test_export_of_selected_tasks(tmp_path, tokenizer):
    model = family_model("distilbert")
    result = export_onnx(model, tmp_path, tasks="ner,single", tokenizer=tokenizer)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    assert [o.name for o in session.get_outputs()] == ["single_logits", "ner_logits"]  # the config's order
    assert list(result.outputs) == ["single", "ner"]
    assert [t["name"] for t in json.loads((tmp_path / "config.json").read_text())["tasks"]] == ["single", "ner"]
    with pytest.raises(KeyError, match="nope"):
        export_onnx(model, tmp_path / "x", tasks=["nope"], tokenizer=tokenizer)
    with pytest.raises(ValueError, match="quantize"):
        export_onnx(model, tmp_path / "y", quantize="int4", tokenizer=tokenizer)


def test_fp32_export_fails_when_onnx_runtime_disagrees(tmp_path, tokenizer, monkeypatch):
    import hf_mtl.export as export_module

    real = export_module._validate

    def skewed(model, tasks, path, batches, input_names):
        figures = real(model, tasks, path, batches, input_names)
        figures["ner"]["max_abs_diff"] = 3e-4  # as if ORT computed the head differently
        return figures

    monkeypatch.setattr(export_module, "_validate", skewed)
    with pytest.raises(ExportValidationError, match=r"ner.*3e-04|beyond 0.0001.*ner"):
        export_onnx(family_model("bert"), tmp_path, tokenizer=tokenizer)


def test_export_command(tmp_path, tokenizer, capsys):
    from hf_mtl.cli import main

    model = family_model("bert")
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "o"), "--tasks", "single", "--opset", "18"]) == 0
    out = capsys.readouterr().out
    assert "model.onnx" in out and "single: max |logit diff|" in out
    assert onnx.load(str(tmp_path / "o" / "model.onnx")).opset_import[0].version == 18
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "o2"), "--tasks", "missing"]) == 2
    assert "missing" in capsys.readouterr().err


# ---------------------------------------------------------------------------- pipeline on ONNX Runtime
def assert_same_results(got, expected, atol=1e-4, where="result"):
    """Same structure, labels, words and offsets; scores within `atol`."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected), (where, got, expected)
        for key in expected:
            assert_same_results(got[key], expected[key], atol, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), (where, got, expected)
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same_results(g, e, atol, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(got, float) and abs(got - expected) <= atol, (where, got, expected)
    else:
        assert got == expected, (where, got, expected)


TEXTS = [
    "Apple opened a new store in Paris and I love it",
    "John Smith works at Acme Corporation in Berlin.",
    "ok",
    {"text": "Is the film good?", "text_pair": "The acting is wonderful, the story too long."},
]
LONG_TEXT = " ".join(["Mary visited Schwarzenegger Hospital in Zurich with John Smith from Acme."] * 60)
CALLS = [
    dict(),
    dict(aggregation_strategy="none"),
    dict(aggregation_strategy="simple"),
    dict(aggregation_strategy="average"),
    dict(aggregation_strategy="max"),
    dict(tasks="ner,single"),
    dict(tasks=["multi"], top_k=None),
    dict(top_k=2, function_to_apply="sigmoid"),
    dict(batch_size=2, ignore_labels=[]),
]


@pytest.fixture(scope="module")
def pipelines(bert_export):
    from transformers import pipeline

    from hf_mtl.onnx_backend import OnnxMultiTaskModel

    model, source, out, _ = bert_export
    torch_pipe = pipeline("multitask", model=str(source))
    onnx_pipe = pipeline("multitask", model=str(out), model_kwargs={"file": "model.onnx"})
    assert type(onnx_pipe.model) is OnnxMultiTaskModel and onnx_pipe.model.file == "model.onnx"
    return torch_pipe, onnx_pipe


@pytest.mark.parametrize("kwargs", CALLS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "defaults")
def test_pipeline_on_an_export_folder_matches_pytorch(pipelines, kwargs):
    torch_pipe, onnx_pipe = pipelines
    assert_same_results(onnx_pipe(TEXTS, **kwargs), torch_pipe(TEXTS, **kwargs))


def test_pipeline_on_an_export_folder_covers_long_texts_pairs_and_words(pipelines):
    torch_pipe, onnx_pipe = pipelines
    for kwargs in (dict(), dict(stride=16, aggregation_strategy="none"), dict(stride=64, aggregation_strategy="simple")):
        expected = torch_pipe([LONG_TEXT, TEXTS[0]], **kwargs)
        assert len(expected[0]["ner"]) > 60  # entities past the first window: the text was windowed
        assert_same_results(onnx_pipe([LONG_TEXT, TEXTS[0]], **kwargs), expected)
    words = [["John", "Smith", "works", "in", "Paris"], ["ok"]]
    assert_same_results(onnx_pipe(words, is_split_into_words=True), torch_pipe(words, is_split_into_words=True))
    pair = [["Is it good?", "The acting is wonderful."]]  # the legacy [[text, text_pair]]
    assert_same_results(onnx_pipe([pair]), torch_pipe([pair]))
    assert_same_results(onnx_pipe(iter(TEXTS)).__next__(), torch_pipe(TEXTS[0]))  # streamed


def test_pipeline_on_an_export_folder_defaults_to_its_int8_file(bert_export):
    from transformers import pipeline

    _, _, out, _ = bert_export
    predict = pipeline("multitask", model=str(out))
    assert predict.model.file == "model.int8.onnx"
    result = predict(TEXTS[0])
    assert set(result) == {"single", "multi", "score", "ner"}
    with pytest.raises(ValueError, match="no ONNX file 'missing.onnx'"):
        pipeline("multitask", model=str(out), model_kwargs={"file": "missing.onnx"})


def test_predict_command_takes_an_export_folder(bert_export, tmp_path, capsys):
    from hf_mtl.cli import main

    _, source, out, _ = bert_export
    outputs = {}
    for name, folder in (("torch", source), ("onnx", out)):
        path = tmp_path / f"{name}.jsonl"
        assert main(["predict", str(folder), TEXTS[0], TEXTS[1], "--tasks", "single", "--output", str(path)]) == 0
        outputs[name] = [json.loads(line) for line in path.read_text().splitlines()]
    # the export's default file is int8: same labels as PyTorch on these inputs, scores close
    assert [r["single"]["label"] for r in outputs["onnx"]] == [r["single"]["label"] for r in outputs["torch"]]


def test_optimized_export_fuses_attention_and_matches_pytorch(tmp_path, tokenizer):
    from hf_mtl.pipeline import MultiTaskPipeline

    model = family_model("bert")
    result = export_onnx(model, tmp_path, tokenizer=tokenizer, optimize=True)
    assert result.default_file == "model.opt.onnx"
    described = json.loads((tmp_path / "config.json").read_text())["onnx_export"]
    assert described["files"]["model.opt.onnx"]["fused"]["Attention"] == 2  # one per layer
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.opt.onnx")).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= ops
    assert all(f["max_abs_diff"] <= 1e-4 for f in result.validation["model.opt.onnx"].values())
    expected = MultiTaskPipeline(model=model, tokenizer=tokenizer)(TEXTS + [LONG_TEXT], stride=32)
    assert_same_results(MultiTaskPipeline(model=str(tmp_path))(TEXTS + [LONG_TEXT], stride=32), expected)
    with pytest.raises(ValueError, match="deberta-v2"):
        export_onnx(family_model("deberta-v2"), tmp_path / "d", tokenizer=tokenizer, optimize=True)


def test_int8_keeps_chosen_layers_in_float32(bert_export, tmp_path):
    from hf_mtl.export import quantize_int8

    _, _, out, _ = bert_export

    def ops(path):
        return [node.op_type for node in onnx.load(str(path)).graph.node]

    quantize_int8(out / "model.onnx", tmp_path / "all.onnx")
    quantize_int8(out / "model.onnx", tmp_path / "kept.onnx", keep_fp32=[r"model[./]heads[./]", r"layer\.1[./]output[./]dense"])
    quantized_all, quantized_kept = ops(tmp_path / "all.onnx"), ops(tmp_path / "kept.onnx")
    # the NER head's classifier (a MatMul; the pooled heads' Gemm is not quantized dynamically anyway) and one
    # FFN output projection stay float32
    dynamic = lambda ops_: ops_.count("DynamicQuantizeMatMul") + ops_.count("MatMulInteger")  # noqa: E731
    assert dynamic(quantized_all) - dynamic(quantized_kept) == 2
    assert quantized_kept.count("MatMul") == quantized_all.count("MatMul") + 2
