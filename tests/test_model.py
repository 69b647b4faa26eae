"""MultiTaskModel / MultiTaskConfig: forward contract, encoders, save/reload, AutoModel, remote code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ModernBertConfig,
    RobertaConfig,
)

from hf_mtl import (
    MultiTaskConfig,
    MultiTaskModel,
    MultiTaskModelOutput,
    SequenceClassificationTask,
    TaskModelOutput,
    TokenClassificationTask,
)
from hf_mtl.modeling_multitask import IGNORE_INDEX

from conftest import NER_LABELS, make_model, tiny_bert_config

SMALL = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=1000)
ENCODER_CONFIGS = {
    "bert": lambda: BertConfig(hidden_size=32, **SMALL),
    "roberta": lambda: RobertaConfig(hidden_size=32, **SMALL),
    "deberta-v2": lambda: DebertaV2Config(hidden_size=32, **SMALL),
    "distilbert": lambda: DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=37, vocab_size=1000),
    "modernbert": lambda: ModernBertConfig(
        hidden_size=32, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, **SMALL
    ),
}

ALL_KINDS = [
    SequenceClassificationTask("single", ["a", "b", "c"]),
    SequenceClassificationTask("multi", ["x", "y", "z"], problem_type="multi_label_classification"),
    SequenceClassificationTask("score", problem_type="regression"),
    TokenClassificationTask("ner", NER_LABELS),
]


def _batch(vocab: int = 1000, batch: int = 3, length: int = 10):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def _labels(task_name: str, batch: int = 3, length: int = 10) -> torch.Tensor:
    if task_name == "single":
        return torch.tensor([0, 2, 1])
    if task_name == "multi":
        return torch.tensor([[1.0, 0, 1], [0, 0, 0], [0, 1, 0]])
    if task_name == "score":
        return torch.tensor([0.1, 0.5, 0.9])
    labels = torch.randint(0, len(NER_LABELS), (batch, length))
    labels[:, 0] = IGNORE_INDEX
    return labels


def test_forward_with_task_name_returns_that_heads_loss_and_logits():
    model = make_model(ALL_KINDS)
    inputs = _batch()
    shapes = {"single": (3, 3), "multi": (3, 3), "score": (3, 1), "ner": (3, 10, len(NER_LABELS))}
    for name, shape in shapes.items():
        out = model(**inputs, task_name=name, labels=_labels(name))
        assert isinstance(out, TaskModelOutput)
        assert tuple(out.logits.shape) == shape
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        out.loss.backward()
    assert model(**inputs, task_name="ner").loss is None


def test_forward_without_task_name_runs_encoder_once_for_all_heads():
    model = make_model(ALL_KINDS).eval()
    calls = []
    model.encoder.register_forward_hook(lambda *args: calls.append(1))
    out = model(**_batch())
    assert isinstance(out, MultiTaskModelOutput)
    assert list(out.logits) == ["single", "multi", "score", "ner"]
    assert len(calls) == 1
    subset = model(**_batch(), tasks=["ner"])
    assert list(subset.logits) == ["ner"]
    # the all-heads pass gives the same logits as per-task calls
    for name, logits in out.logits.items():
        torch.testing.assert_close(model(**_batch(), task_name=name).logits, logits)


def test_sequence_heads_share_one_pooled_tensor_per_forward(monkeypatch):
    import hf_mtl.heads_multitask as heads

    model = make_model(ALL_KINDS).eval()
    calls = []
    real_pool = heads.pool
    monkeypatch.setattr(heads, "pool", lambda *args: calls.append(args[2]) or real_pool(*args))
    model(**_batch())  # three sequence heads and a token head
    assert calls == ["mean"]
    model(**_batch(), tasks=["ner"])  # no sequence head: nothing pooled
    assert calls == ["mean"]


def test_forward_errors():
    model = make_model(ALL_KINDS)
    with pytest.raises(KeyError, match="Unknown task 'nope'.*single"):
        model(**_batch(), task_name="nope")
    with pytest.raises(ValueError, match="without task_name"):
        model(**_batch(), labels=torch.tensor([0, 1, 0]))


@pytest.mark.parametrize("typo", ["task", "tasknames", "use_cache", "return_loss", "num_items_in_batch"])
def test_unknown_forward_keywords_are_type_errors_naming_them(typo):
    model = make_model(ALL_KINDS)
    with pytest.raises(TypeError, match=rf"MultiTaskModel.forward\(\) got an unexpected keyword argument '{typo}'") as err:
        model(**_batch(), **{typo: "single"})
    assert "it accepts input_ids, attention_mask, token_type_ids" in str(err.value) and "task_name" in str(err.value)
    if typo == "task":  # the typo that used to return every head
        assert "did you mean 'tasks' or 'task_name'?" in str(err.value)
    with pytest.raises(TypeError, match="unexpected keyword arguments 'foo', 'bar'"):
        model(**_batch(), foo=1, bar=2)


def test_task_name_and_tasks_must_agree():
    model = make_model(ALL_KINDS).eval()
    with pytest.raises(ValueError, match=r"task_name='single' and tasks=\['ner'\] disagree"):
        model(**_batch(), task_name="single", tasks=["ner"])
    with pytest.raises(ValueError, match="disagree"):
        model(**_batch(), task_name="single", tasks=["single", "ner"])
    # the trivial agreement is the one-head call
    labels = _labels("ner")
    both = model(**_batch(), task_name="ner", tasks=("ner",), labels=labels)
    alone = model(**_batch(), task_name="ner", labels=labels)
    assert isinstance(both, TaskModelOutput)
    torch.testing.assert_close(both.loss, alone.loss)
    with pytest.raises(TypeError, match="got the string 'ner'; use task_name='ner'"):
        model(**_batch(), tasks="ner")
    with pytest.raises(ValueError, match=r"tasks= is empty.*'single', 'multi'"):
        model(**_batch(), tasks=[])


def test_task_view_forward_errors():
    model = make_model(ALL_KINDS).eval()
    view = model.task_view("ner")
    with pytest.raises(TypeError, match="MultiTaskForTokenClassification.forward\\(\\) got an unexpected keyword argument 'task'") as err:
        view(**_batch(), task="ner")
    assert "position_ids" in str(err.value) and "tasks" not in str(err.value).split("it accepts")[1]
    for wrong in ({"task_name": "single"}, {"tasks": ["single"]}, {"tasks": "ner"}):
        with pytest.raises(ValueError, match="answers for task 'ner' only"):
            view(**_batch(), **wrong)
    expected = model(**_batch(), task_name="ner").logits
    torch.testing.assert_close(view(**_batch(), task_name="ner", tasks=["ner"]).logits, expected)
    torch.testing.assert_close(view(**_batch(), position_ids=None, return_dict=False)[0], expected)


def test_forward_signatures_steer_transformers_callers():
    """transformers decides what to pass a model from its forward signature and attributes: no `use_cache`
    (text-classification pipeline), no `return_loss` (Trainer.prediction_step), no `num_items_in_batch`
    (`accepts_loss_kwargs`), labels found under `labels`."""
    import inspect

    from transformers.utils.generic import can_return_loss, find_labels

    from hf_mtl import MultiTaskForSequenceClassification, MultiTaskForTokenClassification

    for cls in (MultiTaskModel, MultiTaskForSequenceClassification, MultiTaskForTokenClassification):
        assert "use_cache" not in inspect.signature(cls.forward).parameters
        assert find_labels(cls) == ["labels"] and not can_return_loss(cls)
        assert cls.accepts_loss_kwargs is False
    # gradient checkpointing wraps the encoder's layers, not the model's forward
    model = make_model(ALL_KINDS).train()
    model.gradient_checkpointing_enable()
    model(**_batch(), task_name="ner", labels=_labels("ner")).loss.backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad is not None


def test_token_loss_is_a_mean_over_labelled_tokens_and_never_nan():
    model = make_model(ALL_KINDS).eval()
    inputs = _batch()
    labels = torch.full((3, 10), IGNORE_INDEX)
    out = model(**inputs, task_name="ner", labels=labels)
    assert out.loss.item() == 0.0
    labels[0, 1] = 2
    logits = model(**inputs, task_name="ner").logits
    expected = torch.nn.functional.cross_entropy(logits[0, 1:2], torch.tensor([2]))
    torch.testing.assert_close(model(**inputs, task_name="ner", labels=labels).loss, expected)


def test_mean_pooling_ignores_padding():
    model = make_model(ALL_KINDS[:1]).eval()
    inputs = _batch()
    full = model(**inputs, task_name="single").logits[2]
    # row 2 has 4 real tokens: running it alone without padding gives the same logits
    alone = model(
        input_ids=inputs["input_ids"][2:3, :4], attention_mask=inputs["attention_mask"][2:3, :4], task_name="single"
    ).logits[0]
    torch.testing.assert_close(full, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", list(ENCODER_CONFIGS))
def test_every_encoder_family_trains_saves_and_reloads_exactly(kind, tmp_path):
    torch.manual_seed(0)
    config = MultiTaskConfig(encoder=ENCODER_CONFIGS[kind](), tasks=[t.to_config_dict() for t in ALL_KINDS])
    model = MultiTaskModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = _batch()
    model.train()
    for name in ("single", "ner"):
        loss = model(**inputs, task_name=name, labels=_labels(name)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    before = model(**inputs)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(reloaded) is MultiTaskModel
    after = reloaded(**inputs)
    assert list(after.logits) == list(before.logits)
    for name in before.logits:
        assert torch.equal(before.logits[name], after.logits[name]), name


def test_config_round_trip_keeps_task_order_and_label_names(tmp_path):
    tasks = [
        TokenClassificationTask("zeta_ner", NER_LABELS),
        SequenceClassificationTask("alpha", ["b", "a"]),
    ]
    model = make_model(tasks)
    model.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert [t["name"] for t in raw["tasks"]] == ["zeta_ner", "alpha"]
    assert raw["auto_map"] == {
        "AutoConfig": "configuration_multitask.MultiTaskConfig",
        "AutoModel": "modeling_multitask.MultiTaskModel",
        "AutoModelForSequenceClassification": "modeling_multitask.MultiTaskForSequenceClassification",
        "AutoModelForTokenClassification": "modeling_multitask.MultiTaskForTokenClassification",
    }
    assert list(raw["custom_pipelines"]) == ["multitask"]
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, MultiTaskConfig)
    # the installed hf_mtl serves "multitask": its config hides the checkpoint's copy from transformers.pipeline
    # (which would otherwise ask for trust_remote_code), and the model's own config is left as it was by the save
    assert not hasattr(config, "custom_pipelines") and not hasattr(model.config, "custom_pipelines")
    assert config.task_names == ["zeta_ner", "alpha"]
    assert config.get_task("alpha")["id2label"] == {0: "b", 1: "a"}  # integer keys restored
    assert config.get_task("zeta_ner")["label2id"]["B-LOC"] == 5
    with pytest.raises(KeyError, match="zeta_ner"):
        config.get_task("missing")


def test_config_validation_errors():
    base = {"name": "t", "task_type": "sequence_classification", "id2label": {0: "a", 1: "b"}}
    with pytest.raises(ValueError, match="unique"):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=[base, base])
    with pytest.raises(ValueError, match="task_type") as unknown:
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=[{**base, "task_type": "generation"}])
    # an unregistered kind names the registered ones and what to do
    assert "'generation' is not a registered task kind" in str(unknown.value)
    assert "'sequence_classification', 'token_classification'" in str(unknown.value)
    assert "import the package that defines it" in str(unknown.value)
    # the kind's own rules come from its head: problem types and the label-count rule, the same as the spec's
    with pytest.raises(ValueError, match="problem_type 'token_classification' is not valid for sequence_classification"):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=[{**base, "problem_type": "token_classification"}])
    one_label = "Task 't': single_label_classification needs at least 2 labels, got 1: ['a']."
    with pytest.raises(ValueError, match=re.escape(one_label)):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=[{**base, "id2label": {0: "a"}}])
    with pytest.raises(ValueError, match=re.escape(one_label)):
        SequenceClassificationTask("t", ["a"])
    duplicated = "Task 't': labels ['a'] appear more than once in ['a', 'a']."
    with pytest.raises(ValueError, match=re.escape(duplicated)):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=[{**base, "id2label": {0: "a", 1: "a"}}])
    with pytest.raises(ValueError, match=re.escape(duplicated)):
        SequenceClassificationTask("t", ["a", "a"])
    with pytest.raises(ValueError, match="not valid"):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=[{**base, "name": "has.dot"}])
    with pytest.raises(ValueError, match="pooling"):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=[base], pooling="max")


def test_cls_pooling_option(tmp_path):
    model = make_model(ALL_KINDS[:1], pooling="cls").eval()
    model.save_pretrained(tmp_path)
    assert MultiTaskModel.from_pretrained(tmp_path).config.pooling == "cls"


def test_from_encoder_loads_pretrained_weights(minilm_dir):
    from transformers import AutoModel as HFAutoModel

    tasks = [SequenceClassificationTask("s", ["a", "b"]), TokenClassificationTask("n", NER_LABELS)]
    model = MultiTaskModel.from_encoder(minilm_dir, tasks=tasks)
    reference = HFAutoModel.from_pretrained(minilm_dir)
    ref_state = reference.state_dict()
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, ref_state[name]), name
    assert not any(k.startswith("pooler") for k in model.encoder.state_dict())
    assert model.config.base_model_name_or_path == minilm_dir
    assert model.config.task_names == ["s", "n"]
    # heads are freshly initialised (small normal weights, zero bias), not left as uninitialised memory
    head = model.heads["n"].classifier
    assert torch.all(head.bias == 0) and 0.005 < head.weight.std().item() < 0.05


def test_from_encoder_refuses_a_multitask_checkpoint(tmp_path):
    make_model(ALL_KINDS[:1]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="already a multi-task checkpoint"):
        MultiTaskModel.from_encoder(tmp_path, tasks=ALL_KINDS[:1])


def test_adding_a_task_later_keeps_trained_heads(tmp_path):
    old_tasks = [SequenceClassificationTask("single", ["a", "b", "c"]), TokenClassificationTask("ner", NER_LABELS)]
    model = make_model(old_tasks).eval()
    model.save_pretrained(tmp_path)
    new_task = SequenceClassificationTask("extra", ["p", "q"])
    grown = MultiTaskModel.from_pretrained(tmp_path, tasks=old_tasks + [new_task]).eval()
    assert grown.config.task_names == ["single", "ner", "extra"]
    inputs = _batch()
    before, after = model(**inputs), grown(**inputs)
    for name in ("single", "ner"):
        assert torch.equal(before.logits[name], after.logits[name])
    assert torch.all(grown.heads["extra"].out_proj.bias == 0)
    assert after.logits["extra"].shape == (3, 2)
    # a changed label set for an existing task is refused, not silently mis-loaded
    with pytest.raises(ValueError, match="exists in the checkpoint"):
        MultiTaskModel.from_pretrained(tmp_path, tasks=[SequenceClassificationTask("single", ["a", "b"])])


def test_checkpoint_loads_without_hf_mtl_via_trust_remote_code(tmp_path):
    model = make_model(ALL_KINDS).eval()
    model.save_pretrained(tmp_path / "ckpt")
    inputs = _batch()
    expected = {k: v.tolist() for k, v in model(**inputs).logits.items()}
    (tmp_path / "inputs.json").write_text(json.dumps({k: v.tolist() for k, v in inputs.items()}))
    script = textwrap.dedent(
        """
        import importlib.abc, json, sys

        class BlockHfMtl(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "hf_mtl" or name.startswith("hf_mtl."):
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
                return None

        sys.meta_path.insert(0, BlockHfMtl())
        try:
            import hf_mtl  # noqa: F401
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("hf_mtl is still importable")

        import torch
        from transformers import AutoModel

        ckpt, inputs_path, out_path = sys.argv[1:4]
        model = AutoModel.from_pretrained(ckpt, trust_remote_code=True).eval()
        assert "hf_mtl" not in sys.modules
        inputs = {k: torch.tensor(v) for k, v in json.load(open(inputs_path)).items()}
        with torch.no_grad():
            out = model(**inputs)
        json.dump(
            {"class": type(model).__module__, "logits": {k: v.tolist() for k, v in out.logits.items()}},
            open(out_path, "w"),
        )
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ckpt"), str(tmp_path / "inputs.json"), str(tmp_path / "out.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["class"].startswith("transformers_modules"), out["class"]
    assert list(out["logits"]) == list(expected)
    for name in expected:
        torch.testing.assert_close(torch.tensor(out["logits"][name]), torch.tensor(expected[name]))


def test_checkpoint_code_is_self_contained(tmp_path):
    from pathlib import Path

    from transformers.dynamic_module_utils import get_relative_import_files

    import hf_mtl.configuration_multitask as cfg_module
    import hf_mtl.modeling_multitask as model_module
    import hf_mtl.pipeline as pipeline_module

    # what save_pretrained copies into a checkpoint: the config's, the model's and the "multitask" pipeline's
    # modules and their relative imports, recursively
    copied = {Path(cfg_module.__file__), Path(model_module.__file__), Path(pipeline_module.__file__)}
    for module in (cfg_module, model_module, pipeline_module):
        copied |= {Path(f) for f in get_relative_import_files(module.__file__)}
    assert sorted(p.name for p in copied) == [
        "configuration_multitask.py", "encoders.py", "heads_multitask.py", "inference.py", "lora.py",
        "modeling_multitask.py", "pipeline.py", "postprocessing.py", "task_types.py",
    ]
    # few and small: the README states their total size (about 155 KB)
    assert sum(p.stat().st_size for p in copied) < 160_000
    make_model(ALL_KINDS).save_pretrained(tmp_path)
    saved = {p.name for p in tmp_path.iterdir()}
    assert {p.name for p in copied} <= saved
    assert saved - {p.name for p in copied} == {"config.json", "model.safetensors"}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "multitask": {"impl": "pipeline.MultiTaskPipeline", "pt": ["AutoModel"], "type": "text"}
    }
    assert config["auto_map"] == {
        "AutoConfig": "configuration_multitask.MultiTaskConfig",
        "AutoModel": "modeling_multitask.MultiTaskModel",
        "AutoModelForSequenceClassification": "modeling_multitask.MultiTaskForSequenceClassification",
        "AutoModelForTokenClassification": "modeling_multitask.MultiTaskForTokenClassification",
    }
    # only torch, transformers, numpy, the standard library and each other (lazy imports inside functions too)
    relative = tuple(f".{p.stem}" for p in copied)
    allowed = ("torch", "transformers", "numpy", *sys.stdlib_module_names, *relative)
    for path in copied:
        for line in (line.strip() for line in path.read_text().splitlines()):
            if line.startswith(("import ", "from ")):
                target = line.split()[1]
                # peft: imported by lora.py only for a checkpoint holding unmerged LoRA adapters
                extra = ("peft",) if path.name == "lora.py" else ()
                assert target.split(".")[0] in allowed + extra or target in allowed, f"{path.name}: {line}"


def test_from_encoder_keeps_sdpa_attention_and_is_padding_independent(minilm_dir, tokenizer):
    tasks = [SequenceClassificationTask("s", ["a", "b"]), TokenClassificationTask("n", NER_LABELS)]
    model = MultiTaskModel.from_encoder(minilm_dir, tasks=tasks).eval()
    # the composite config must not reset the encoder's attention implementation to None (eager)
    assert model.encoder.config._attn_implementation == "sdpa"
    assert model.encoder.config is model.config.encoder
    assert getattr(model.encoder, "pooler", None) is None
    texts = ["short one", "a much longer sentence with many more words in it than the first one"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    alone = tokenizer(texts[:1], return_tensors="pt")
    with torch.no_grad():
        padded_out, alone_out = model(**batch), model(**alone)
    n = alone["input_ids"].shape[1]
    torch.testing.assert_close(padded_out.logits["s"][0], alone_out.logits["s"][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(padded_out.logits["n"][0, :n], alone_out.logits["n"][0], atol=1e-5, rtol=1e-4)


def test_package_exports_the_single_task_views():
    import hf_mtl
    from hf_mtl import modeling_multitask

    for name in ("MultiTaskForSequenceClassification", "MultiTaskForTokenClassification", "MultiTaskTaskView"):
        assert name in hf_mtl.__all__ and getattr(hf_mtl, name) is getattr(modeling_multitask, name)
    assert all(hasattr(hf_mtl, name) for name in hf_mtl.__all__)  # `from hf_mtl import *` works
    view = make_model(ALL_KINDS).task_view("ner")
    assert isinstance(view, hf_mtl.MultiTaskForTokenClassification) and isinstance(view, hf_mtl.MultiTaskTaskView)


def test_dependencies_require_a_transformers_without_the_remote_code_bypass_and_no_unused_evaluate():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = {Requirement(r).name: Requirement(r) for r in pyproject["project"]["dependencies"]}
    assert "evaluate" not in requirements  # nothing imports it (metrics are computed offline)
    transformers = requirements["transformers"].specifier
    # releases before 5.3 / 5.5 load remote code from a crafted config despite trust_remote_code=False
    assert not any(transformers.contains(v) for v in ("5.0.0", "5.2.9", "5.3.0", "5.4.1"))
    assert transformers.contains("5.5.0") and not transformers.contains("6.0.0")
