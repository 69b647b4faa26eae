"""LoRA adapters on the shared encoder (`MultiTaskModel.from_encoder(..., peft_config=LoraConfig(...))`): only the
adapters and the heads train; the default save merges the adapters into a plain checkpoint that loads everywhere
with the same outputs; trainer checkpoints keep the adapters and resume; `merge_lora()` / `hf-mtl merge`."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import NER_LABELS, raw_datasets, tiny_bert_config
from peft import LoraConfig
from safetensors import safe_open
from transformers import (
    AutoModel,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ModernBertConfig,
    RobertaConfig,
    pipeline,
)

from hf_mtl import (
    MultiTaskModel,
    MultiTaskTrainer,
    MultiTaskTrainingArguments,
    SequenceClassificationTask,
    TokenClassificationTask,
)
from hf_mtl.cli import main
from hf_mtl.lora import has_unmerged_lora, parameter_counts
from hf_mtl.recipe import RecipeError, parse_recipe

TASKS = [
    SequenceClassificationTask("sentiment", ["negative", "positive"]),
    SequenceClassificationTask("topic", ["World", "Sports", "Business", "Sci/Tech"], label_column="topic"),
    TokenClassificationTask("ner", NER_LABELS),
]
ENCODERS = {
    "bert": lambda: tiny_bert_config(),
    "roberta": lambda: RobertaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37),
    "distilbert": lambda: DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=37),
    "deberta-v2": lambda: DebertaV2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    ),
    "modernbert": lambda: ModernBertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=38
    ),
}


def _encoder_dir(tmp_path, config=None) -> str:
    torch.manual_seed(0)
    folder = tmp_path / "encoder"
    AutoModel.from_config(config or tiny_bert_config()).save_pretrained(folder)
    return str(folder)


def _lora_model(tmp_path, tokenizer, **lora) -> MultiTaskModel:
    folder = _encoder_dir(tmp_path)
    tokenizer.save_pretrained(folder)
    peft_config = LoraConfig(**{"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": None, **lora})
    return MultiTaskModel.from_encoder(folder, tasks=TASKS, peft_config=peft_config)


def _batch(tokenizer):
    return dict(tokenizer(["Anna lives in Oslo.", "an awful film"], padding=True, return_tensors="pt"))


def _args(tmp_path, **overrides) -> MultiTaskTrainingArguments:
    kwargs = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, learning_rate=1e-2, max_steps=6,
        save_strategy="no", report_to=[], use_cpu=True, seed=7, disable_tqdm=True, logging_steps=3,
    )
    return MultiTaskTrainingArguments(**{**kwargs, **overrides})


def _trained(tmp_path, tokenizer, **args) -> MultiTaskTrainer:
    model = _lora_model(tmp_path, tokenizer)
    trainer = MultiTaskTrainer(model=model, args=_args(tmp_path, **args), train_dataset=raw_datasets(12),
                               processing_class=tokenizer)
    trainer.train()
    return trainer


def _logits(model, batch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return dict(model.eval()(**batch).logits)


def _assert_same_logits(expected, actual):
    assert list(expected) == list(actual)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(ENCODERS))
def test_default_targets_adapt_every_projection_of_each_encoder_family(kind, tmp_path):
    folder = _encoder_dir(tmp_path, ENCODERS[kind]())
    linear_before = {n for n, m in AutoModel.from_pretrained(folder).named_modules() if isinstance(m, torch.nn.Linear)}
    linear_before = {n for n in linear_before if not n.startswith("pooler")}  # dropped by MultiTaskModel
    model = MultiTaskModel.from_encoder(folder, tasks=TASKS[:1], peft_config=LoraConfig(r=2))
    adapted = {n.removesuffix(".lora_A") for n, _ in model.encoder.named_modules() if n.endswith(".lora_A")}
    assert adapted == linear_before
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_" in n or n.startswith("heads.") for n in trainable), trainable
    assert {n for n, _ in model.named_parameters() if n.startswith("heads.")} <= trainable
    assert model.config.lora["target_modules"] and model.config.lora["merged"] is False


def test_lora_starts_as_the_encoder_and_trains_only_adapters_and_heads(tmp_path, tokenizer):
    model = _lora_model(tmp_path, tokenizer, target_modules=["query", "value"])
    assert model.config.lora == {"lora_alpha": 8, "lora_dropout": 0.0, "merged": False, "r": 4,
                                 "target_modules": ["query", "value"]}
    plain = MultiTaskModel.from_encoder(tmp_path / "encoder", tasks=TASKS)
    plain.heads.load_state_dict(model.heads.state_dict())
    batch = _batch(tokenizer)
    _assert_same_logits(_logits(plain, batch), _logits(model, batch))  # B = 0: unchanged until trained
    counts = parameter_counts(model)
    # 2 layers x (query, value) x (A: 4x32 + B: 32x4) + the heads' parameters
    heads = sum(p.numel() for p in model.heads.parameters())
    assert counts["trainable"] == 2 * 2 * 2 * 4 * 32 + heads
    assert counts["total"] == parameter_counts(plain)["total"] + 2 * 2 * 2 * 4 * 32
    with pytest.raises(ValueError, match="modules_to_save"):
        MultiTaskModel.from_encoder(tmp_path / "encoder", tasks=TASKS, peft_config=LoraConfig(modules_to_save=["x"]))
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        model.add_lora(LoraConfig(r=2))


def test_trained_lora_saves_merged_and_loads_everywhere_with_the_same_outputs(tmp_path, tokenizer):
    trainer = _trained(tmp_path, tokenizer)
    model = trainer.model
    assert has_unmerged_lora(model)
    assert trainer.run_record.parameters == parameter_counts(model)
    batch = _batch(tokenizer)
    expected = _logits(model, batch)
    out = tmp_path / "final"
    trainer.save_model(str(out))
    assert has_unmerged_lora(model)  # the save merged a copy
    with safe_open(out / "model.safetensors", "pt") as handle:
        assert not [k for k in handle.keys() if "lora_" in k or "base_layer" in k]
    config = json.loads((out / "config.json").read_text())
    assert config["lora"]["merged"] is True and config["lora"]["r"] == 4
    for loaded in (MultiTaskModel.from_pretrained(out), AutoModel.from_pretrained(out)):
        assert not has_unmerged_lora(loaded)
        _assert_same_logits(expected, _logits(loaded, batch))
    predictor = pipeline("multitask", model=str(out))
    reference = pipeline("multitask", model=model, tokenizer=tokenizer)
    assert predictor("Anna lives in Oslo.") == reference("Anna lives in Oslo.")
    card = trainer.create_model_card().read_text()
    counts = trainer.run_record.parameters
    assert "LoRA on the encoder (r=4, alpha=8, dropout=0.0, target modules: `query`, `key`, `value`, `dense`" in card
    assert f"{counts['trainable']:,} of {counts['total']:,} parameters trainable" in card
    assert "merged into the encoder weights" in card


def test_unmerged_save_round_trips_and_merges_later(tmp_path, tokenizer):
    model = _lora_model(tmp_path, tokenizer)
    with torch.no_grad():  # trained-looking adapters
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)
    batch = _batch(tokenizer)
    expected = _logits(model, batch)
    model.save_pretrained(tmp_path / "adapters", merge_lora=False)
    tokenizer.save_pretrained(tmp_path / "adapters")
    with safe_open(tmp_path / "adapters" / "model.safetensors", "pt") as handle:
        assert any("lora_A" in k for k in handle.keys())
    reloaded = MultiTaskModel.from_pretrained(tmp_path / "adapters")
    assert has_unmerged_lora(reloaded)
    for name, buffer in model.named_buffers():  # the encoder's own buffers are initialised while loading
        assert torch.equal(buffer, reloaded.get_buffer(name)), name
    _assert_same_logits(expected, _logits(reloaded, batch))

    assert main(["merge", str(tmp_path / "adapters"), str(tmp_path / "merged")]) == 0
    merged = MultiTaskModel.from_pretrained(tmp_path / "merged")
    assert not has_unmerged_lora(merged) and merged.config.lora["merged"] is True
    assert (tmp_path / "merged" / "tokenizer.json").exists()
    _assert_same_logits(expected, _logits(merged, batch))

    in_place = reloaded.merge_lora()
    assert in_place is reloaded and not has_unmerged_lora(reloaded)
    assert all(p.requires_grad for p in reloaded.parameters())
    assert set(reloaded.state_dict()) == set(merged.state_dict())
    _assert_same_logits(expected, _logits(reloaded, batch))


def test_checkpoints_keep_adapters_and_resume_to_the_same_result(tmp_path, tokenizer):
    full = _trained(tmp_path / "a", tokenizer, save_strategy="steps", save_steps=3)
    checkpoint = tmp_path / "a" / "out" / "checkpoint-3"
    with safe_open(checkpoint / "model.safetensors", "pt") as handle:
        assert any("lora_A" in k for k in handle.keys())
    assert json.loads((checkpoint / "config.json").read_text())["lora"]["merged"] is False
    # a fresh process would build the same LoRA model and resume from checkpoint-3
    model = _lora_model(tmp_path / "b", tokenizer)
    resumed = MultiTaskTrainer(model=model, args=_args(tmp_path / "b", save_strategy="steps", save_steps=3),
                               train_dataset=raw_datasets(12), processing_class=tokenizer)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 6
    expected, actual = full.model.state_dict(), resumed.model.state_dict()
    assert set(expected) == set(actual)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-4, atol=1e-6, msg=key)


# ---------------------------------------------------------------------------- recipes
RECIPE = {
    "encoder": "some/encoder",
    "output_dir": "out",
    "model": {"lora": {"r": 4, "alpha": 16, "dropout": 0.05, "target_modules": ["query", "value"]}},
    "tasks": [{"name": "sentiment", "type": "sequence_classification", "labels": ["negative", "positive"],
               "data": {"files": {"train": "s.csv"}}}],
}


def _recipe(**lora):
    import copy

    raw = copy.deepcopy(RECIPE)
    if lora:
        raw["model"]["lora"] = lora
    return parse_recipe(raw, base_dir="/data")


def test_recipe_lora_block_becomes_lora_config_arguments():
    assert _recipe().model == {
        "lora": {"r": 4, "lora_alpha": 16.0, "lora_dropout": 0.05, "target_modules": ["query", "value"]}
    }
    assert _recipe(target_modules="all-linear", use_rslora=True).model["lora"] == {
        "target_modules": "all-linear", "use_rslora": True
    }
    empty = parse_recipe({**RECIPE, "model": {"lora": {}}}, base_dir="/data")
    assert empty.model == {"lora": {}}  # peft's defaults, the encoder family's target modules


@pytest.mark.parametrize(
    ("lora", "message"),
    [
        ({"rnak": 4}, r"^model\.lora\.rnak: unknown key; known keys: r, alpha, dropout"),
        ({"alhpa": 4}, r"^model\.lora\.alhpa: unknown key; did you mean 'alpha'\?"),
        ({"r": 0}, r"^model\.lora\.r: expected a positive rank"),
        ({"r": "eight"}, r"^model\.lora\.r: expected an integer"),
        ({"dropout": 1.5}, r"^model\.lora\.dropout: expected a probability"),
        ({"bias": "some"}, r"^model\.lora\.bias: 'some' is not one of none, all, lora_only"),
        ({"target_modules": []}, r"^model\.lora\.target_modules: expected a non-empty list of strings"),
        ({"modules_to_save": ["x"]}, r"^model\.lora\.modules_to_save: unknown key"),
    ],
)
def test_recipe_lora_errors_name_the_key(lora, message):
    with pytest.raises(RecipeError, match=message):
        _recipe(**lora)


def test_train_command_with_a_lora_recipe_saves_a_merged_model_with_its_card(tmp_path, tokenizer):
    from test_cli import write_recipe

    folder = _encoder_dir(tmp_path)
    tokenizer.save_pretrained(folder)
    recipe = write_recipe(tmp_path, folder, model={"lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}})
    assert main(["train", str(recipe), "--set", "training.save_strategy=steps", "--set", "training.save_steps=2"]) == 0
    out = tmp_path / "model"
    saved = json.loads((out / "config.json").read_text())["lora"]
    assert saved == {"lora_alpha": 8.0, "lora_dropout": 0.0, "merged": True, "r": 4, "target_modules": ["query", "value"]}
    assert json.loads((out / "checkpoint-2" / "config.json").read_text())["lora"]["merged"] is False
    card = (out / "README.md").read_text()
    assert "LoRA on the encoder (r=4, alpha=8.0" in card and "merged into the encoder weights" in card
    assert not has_unmerged_lora(MultiTaskModel.from_pretrained(out))


# ---------------------------------------------------------------------------- without hf_mtl, ONNX
def _adapted(tmp_path, tokenizer) -> MultiTaskModel:
    """A LoRA model whose adapters are not zero (as after training)."""
    model = _lora_model(tmp_path, tokenizer)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)
    return model.eval()


def test_lora_checkpoints_predict_without_hf_mtl(tmp_path, tokenizer):
    from test_remote_code import TEXTS, _as_json, _assert_same, _run_without_hf_mtl

    model = _adapted(tmp_path, tokenizer)
    jobs, expected = [], []
    for name, merge in (("merged", True), ("adapters", False)):  # the adapters load through the copied lora.py
        model.save_pretrained(tmp_path / name, merge_lora=merge)
        tokenizer.save_pretrained(tmp_path / name)
        calls = [(TEXTS, {}), (TEXTS, {"tasks": "ner", "aggregation_strategy": "simple"})]
        jobs.append({"task": "multitask", "model": str(tmp_path / name), "init": {}, "calls": calls})
        ours = pipeline("multitask", model=model, tokenizer=tokenizer)
        expected.append([ours(inputs, **kwargs) for inputs, kwargs in calls])
    assert (tmp_path / "adapters" / "lora.py").is_file()
    for job, output, want in zip(jobs, _run_without_hf_mtl(tmp_path, jobs), expected):
        assert output["model"].startswith("transformers_modules."), output
        _assert_same(output["results"], _as_json(want), job["model"])


def test_export_merges_the_adapters_first(tmp_path, tokenizer):
    pytest.importorskip("onnxruntime")
    from hf_mtl.export import _load_model

    model = _adapted(tmp_path, tokenizer)
    model.save_pretrained(tmp_path / "adapters", merge_lora=False)
    tokenizer.save_pretrained(tmp_path / "adapters")
    assert main(["export", str(tmp_path / "adapters"), str(tmp_path / "onnx")]) == 0
    assert not has_unmerged_lora(_load_model(model)) and has_unmerged_lora(model)  # a model given keeps them
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    batch = {k: v.numpy() for k, v in _batch(tokenizer).items()}
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, batch)))
    for name, logits in _logits(model, _batch(tokenizer)).items():
        torch.testing.assert_close(torch.from_numpy(outputs[f"{name}_logits"]), logits, rtol=1e-4, atol=1e-4)
