"""The torch-free path: `hf_mtl.runtime.OnnxPredictor` gives what `pipeline("multitask", model=<export folder>)`
gives, in a process where torch and transformers cannot be imported; its tokenization is the fast tokenizer's;
`import hf_mtl` and `hf-mtl --help` import neither torch nor transformers, and the lazy registration keeps the
entry points working in fresh processes."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from transformers import AutoTokenizer, BertConfig  # noqa: E402

from hf_mtl import MultiTaskConfig, MultiTaskModel, SequenceClassificationTask, TokenClassificationTask  # noqa: E402
from hf_mtl.export import export_onnx  # noqa: E402
from hf_mtl.runtime import RuntimeTokenizer  # noqa: E402

from conftest import NER_LABELS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDS = [
    SequenceClassificationTask("single", ["a", "b", "c"]),
    SequenceClassificationTask("multi", ["x", "y", "z"], problem_type="multi_label_classification"),
    SequenceClassificationTask("score", problem_type="regression"),
    TokenClassificationTask("ner", NER_LABELS),
]
LONG = " ".join(f"Anna Smith met Bob Jones in Paris and Berlin on day {i}." for i in range(12))
TEXTS = [
    "Anna lives in Paris and works for Acme Corp.",
    {"text": "Is it good?", "text_pair": "The acting is wonderful."},
    {"text": "No pair here", "text_pair": ""},  # an empty pair is no pair
    "ok",
    LONG,
]
WORDS = [["John", "Smith", "works", "in", "Paris"], {"text": ["Is", "it"], "text_pair": ["yes", "it", "is"]}]
#: (inputs, call parameters): every kind of head, aggregation strategy, windows and parameter the pipeline takes
CASES = [
    (TEXTS, {}),
    (TEXTS, {"batch_size": 2, "top_k": None}),
    (TEXTS, {"tasks": "multi,score", "top_k": 2, "function_to_apply": "softmax"}),
    (TEXTS, {"function_to_apply": {"single": "sigmoid", "score": "none"}, "top_k": {"single": 1}}),
    *[(TEXTS, {"tasks": ["ner"], "aggregation_strategy": s}) for s in ("none", "simple", "first", "average", "max")],
    ([LONG, TEXTS[0]], {"tasks": "ner", "stride": 8, "aggregation_strategy": "none", "ignore_labels": []}),
    ([LONG, TEXTS[0]], {"tasks": "ner", "stride": 20, "aggregation_strategy": "simple", "ignore_labels": ["O", "PER"]}),
    ([LONG, {"text": LONG, "text_pair": "a short pair"}], {"truncation": "only_first", "tasks": ["single", "ner"]}),
    ([{"text": LONG, "text_pair": "short"}], {"truncation": True}),
    (WORDS, {"is_split_into_words": True, "aggregation_strategy": "average"}),
    (WORDS, {"is_split_into_words": True, "delimiter": "_", "aggregation_strategy": "none"}),
    ("one text alone", {}),
    ([[["Is it good?", "Yes it is."]]], {}),  # the legacy [[text, text_pair]]
    ([{"text": LONG, "text_pair": LONG}], {"truncation": False}),  # refused: the same error
    ([None], {}),  # refused: the same error
    (TEXTS, {"aggregation_strategy": "biggest"}),  # refused: the same error
]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, tokenizer):
    """A tiny BERT with all four head kinds (64 positions, so long texts are windowed), exported in float32."""
    torch.manual_seed(0)
    encoder = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                         max_position_embeddings=64)
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=[t.to_config_dict() for t in KINDS])).eval()
    with torch.no_grad():  # random heads give near-zero logits; larger ones make labels and groups vary
        for head in model.heads.values():
            for p in head.parameters():
                p.mul_(8)
    out = tmp_path_factory.mktemp("runtime_export")
    export_onnx(model, out, tokenizer=tokenizer)
    return out


def _outcome(call):
    """A call's result, or its error's type and message (this function's source also runs in the torch-free
    process)."""
    try:
        result = call()
        return {"result": list(result) if hasattr(result, "__next__") else result}
    except Exception as err:  # noqa: BLE001 - compared as type and message
        return {"error": [type(err).__name__, str(err)]}


def run_torch_free(script: str, **env: str) -> subprocess.CompletedProcess:
    """`script` in a fresh interpreter where importing torch or transformers fails."""
    blocked = "import sys\nsys.modules['torch'] = None\nsys.modules['transformers'] = None\n"
    return subprocess.run([sys.executable, "-c", blocked + textwrap.dedent(script)], capture_output=True, text=True,
                          cwd=ROOT, env={**_env(), **env}, timeout=600)


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_onnx_predictor_without_torch_matches_the_pipeline(export_dir, tmp_path):
    from transformers import pipeline

    pipe = pipeline("multitask", model=str(export_dir))
    expected = [_outcome(lambda: pipe(inputs, **kwargs)) for inputs, kwargs in CASES]
    assert sum("error" in e for e in expected) == 3, [e for e in expected if "error" in e]
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps([[inputs, kwargs] for inputs, kwargs in CASES]))
    done = run_torch_free(f"""
        import json
        from hf_mtl.runtime import OnnxPredictor
        exec({inspect.getsource(_outcome)!r})

        predict = OnnxPredictor({str(export_dir)!r})
        cases = json.load(open({str(cases)!r}))
        outcomes = [_outcome(lambda: predict(inputs, **kwargs)) for inputs, kwargs in cases]
        outcomes.append(_outcome(lambda: list(predict(iter(["Anna lives in Paris.", "ok"]), batch_size=1))))
        assert sys.modules["torch"] is None and sys.modules["transformers"] is None  # still blocked, never imported
        print(json.dumps(outcomes))
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    expected.append(_outcome(lambda: list(pipe(iter(["Anna lives in Paris.", "ok"]), batch_size=1))))
    expected = json.loads(json.dumps(expected))  # tuples -> lists, as the subprocess's JSON
    for (inputs, kwargs), want, have in zip([*CASES, ("stream", {})], expected, got):
        assert have == want, (inputs, kwargs)
    assert len(got[8]["result"][4]["ner"]) > 10  # entities past the first window: the long text was windowed


def _encodings_match(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert (a.ids, a.type_ids, a.offsets, a.special_tokens_mask, a.word_ids, a.sequence_ids) == (
            b.ids, b.type_ids, b.offsets, b.special_tokens_mask, b.word_ids, b.sequence_ids)
        assert len(a.overflowing) == len(b.overflowing)


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    """A tiny byte-level BPE tokenizer (RoBERTa-style: no token_type_ids, `<s>`/`</s>` pairs), saved by transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([LONG, TEXTS[0], "Is it good? The acting is wonderful."] * 3, trainer)
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", model_max_length=128, model_input_names=["input_ids", "attention_mask"])
    out = tmp_path_factory.mktemp("bpe_tokenizer")
    fast.save_pretrained(out)
    return out


@pytest.mark.parametrize("which", ["export", "minilm", "bpe"])
def test_runtime_tokenization_is_the_fast_tokenizers(which, export_dir, minilm_dir, bpe_dir):
    folder = {"export": export_dir, "minilm": Path(minilm_dir), "bpe": bpe_dir}[which]
    fast = AutoTokenizer.from_pretrained(str(folder))
    ours = RuntimeTokenizer.from_folder(folder)
    assert (ours.model_max_length, ours.pad_token_id, ours.unk_token_id) == (
        fast.model_max_length, fast.pad_token_id, fast.unk_token_id)
    assert ours.model_input_names == list(fast.model_input_names)
    for pair in (False, True):
        assert ours.num_special_tokens_to_add(pair) == fast.num_special_tokens_to_add(pair=pair)
    texts = [LONG, "Anna lives in Paris.", "ünïcödé ☃ text, with   spaces", ""]
    pairs = [LONG, "x", "y " * 40, "z"]
    for max_length, stride in ((24, 4), (40, 0), (512, 128)):
        got, mapping = ours.encode(texts, max_length=max_length, stride=stride, overflowing=True)
        want = fast(texts, max_length=max_length, truncation=True, stride=stride, return_overflowing_tokens=True)
        _encodings_match(got, want.encodings)
        assert mapping == list(want["overflow_to_sample_mapping"])
        for truncation, firsts, seconds in (
            (True, texts, pairs),
            ("longest_first", texts, pairs),
            ("only_first", [LONG, "Anna lives in Paris."], ["x", "y"]),  # the side cut must be able to shrink enough
            ("only_second", ["a", "b"], [LONG, "y " * 40]),
        ):
            got, _ = ours.encode(firsts, seconds, max_length=max_length, truncation=truncation)
            _encodings_match(got, fast(firsts, seconds, max_length=max_length, truncation=truncation).encodings)
    words = [["John", "Smith", "lives", "in", "Zürich"], ["ok"]]
    got, _ = ours.encode(words, max_length=6, stride=1, overflowing=True, words=True)
    want = fast(words, max_length=6, truncation=True, stride=1, return_overflowing_tokens=True, is_split_into_words=True)
    _encodings_match(got, want.encodings)
    ids = fast("Anna lives in Zürich [UNK]")["input_ids"]
    tokens = fast.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(ids) == tokens and ours.convert_ids_to_tokens(ids[1]) == tokens[1]
    assert ours.convert_tokens_to_string(tokens[1:4]) == fast.convert_tokens_to_string(tokens[1:4])


def test_the_shared_postprocessing_restates_transformers():
    from transformers.pipelines.text_classification import ClassificationFunction, sigmoid, softmax
    from transformers.pipelines.token_classification import AggregationStrategy, TokenClassificationPipeline

    import hf_mtl.postprocessing as post
    from hf_mtl import registration
    from hf_mtl.inference import TruncationStrategy
    from hf_mtl.pipeline import PIPELINE_TASK
    from transformers.tokenization_utils_base import TruncationStrategy as TheirTruncation

    for ours, theirs in ((post.ClassificationFunction, ClassificationFunction), (post.AggregationStrategy, AggregationStrategy),
                         (TruncationStrategy, TheirTruncation)):
        assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in theirs]
        assert all(ours(m) == m for m in theirs)  # transformers' members are accepted
    logits = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32) * 10
    np.testing.assert_array_equal(post.softmax(logits), softmax(logits))
    np.testing.assert_array_equal(post.sigmoid(logits), sigmoid(logits))
    rng = np.random.default_rng(1)
    entities = []
    for _ in range(40):
        start = int(rng.integers(0, 50))
        entities.append({"start": start, "end": start + int(rng.integers(1, 6)), "score": float(rng.integers(0, 3))})
    assert post.aggregate_overlapping_entities(list(entities)) == TokenClassificationPipeline.aggregate_overlapping_entities(None, list(entities))
    assert registration.MODEL_TYPE == MultiTaskConfig.model_type and registration.PIPELINE_TASK == PIPELINE_TASK


def test_import_hf_mtl_and_runtime_import_neither_torch_nor_transformers(export_dir):
    import hf_mtl

    assert set(hf_mtl.__all__) <= set(dir(hf_mtl)) and "register_pipeline" in dir(hf_mtl)
    done = subprocess.run(
        [sys.executable, "-c", "import hf_mtl, sys; assert 'torch' not in sys.modules, 'torch'; "
         "assert 'transformers' not in sys.modules, 'transformers'; import hf_mtl.runtime, hf_mtl.cli; "
         "hf_mtl.cli.build_parser(); assert 'torch' not in sys.modules and 'transformers' not in sys.modules"],
        capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_torch_free("""
        import hf_mtl, hf_mtl.runtime, hf_mtl.inference, hf_mtl.postprocessing
        try:
            hf_mtl.MultiTaskModel
        except ImportError:
            pass
        else:
            raise AssertionError("torch is blocked: MultiTaskModel cannot load")
        print(hf_mtl.runtime.OnnxPredictor.__name__)
    """)
    assert done.returncode == 0 and done.stdout.strip() == "OnnxPredictor", done.stderr[-2000:]
    for command in (["--help"], ["predict", "--help"], ["export", "--help"], ["train", "--help"]):
        done = run_torch_free(f"from hf_mtl.cli import main\ntry:\n    main({command!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n")
        assert done.returncode == 0 and "usage: hf-mtl" in done.stdout, (command, done.stderr[-2000:])


def test_fresh_processes_find_hf_mtl_through_transformers_after_a_bare_import(export_dir, tmp_path, tokenizer):
    """The entry points that relied on `import hf_mtl` registering eagerly, each in a fresh process."""
    torch.manual_seed(0)
    model = MultiTaskModel(MultiTaskConfig(encoder=BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                              intermediate_size=37), tasks=[KINDS[0].to_config_dict()]))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    script = f"""
        import sys
        import hf_mtl
        from transformers import AutoConfig, AutoModel, pipeline
        config = AutoConfig.from_pretrained({str(tmp_path)!r})
        assert type(config).__module__ == "hf_mtl.configuration_multitask", type(config)
        model = AutoModel.from_pretrained({str(tmp_path)!r})
        assert type(model).__module__ == "hf_mtl.modeling_multitask", type(model)
        assert type(model).push_to_hub.__module__ == "hf_mtl.registration"
        onnx = pipeline("multitask", model={str(export_dir)!r})
        assert type(onnx.model).__name__ == "OnnxMultiTaskModel"
        assert pipeline("multitask", model={str(tmp_path)!r})("hi")["single"]["label"] in "abc"
        print("ok")
    """
    for order in (script, script.replace("import hf_mtl\n", "import transformers.pipelines\n        import hf_mtl\n", 1)):
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(order)], capture_output=True, text=True, cwd=ROOT,
                              env=_env(), timeout=600)
        assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
        assert "already registered" not in done.stderr
