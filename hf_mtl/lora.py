# This file is copied into every saved checkpoint (a relative import of modeling_multitask.py) so that a checkpoint
# holding unmerged LoRA adapters loads with `trust_remote_code=True` where hf_mtl is not installed: it imports only
# torch/transformers at module level, and `peft` only when adapters are actually added (merged checkpoints, the
# default, never need it).
"""LoRA adapters on the shared encoder of a multi-task model (with `peft`).

- `lora_settings(peft_config, encoder_config)`: the JSON settings kept in `MultiTaskConfig.lora` (the fields
  that differ from the defaults of `peft.LoraConfig`, and the target modules, filled per encoder family if not given:
  `DEFAULT_TARGET_MODULES`) and `"merged"`: whether the adapters were merged into the encoder weights.
- `add_lora(encoder, settings)`: inject the adapters into the encoder in place (`peft.inject_adapter_in_model`), so
  the multi-task model stays a plain `PreTrainedModel`; only the adapters of the encoder require grad (the heads,
  outside the encoder, stay fully trained).
- `merge_lora_into(encoder)`: fold the adapters into the base weights and put the plain layers back.
- `has_unmerged_lora(model)`, `parameter_counts(model)`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

#: encoder model_type -> the Linear layers LoRA adapts when `target_modules` is not given: every projection of
#: attention and of the feed-forward block (module-name suffixes, as `peft.LoraConfig.target_modules` takes them).
#: Encoders not listed get `"all-linear"` (peft's: every Linear layer).
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    **dict.fromkeys(
        ["bert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet", "data2vec-text", "roberta-prelayernorm"],
        ["query", "key", "value", "dense"],
    ),
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "dense"],
    "deberta": ["in_proj", "dense"],
    "modernbert": ["Wqkv", "Wo", "Wi"],
}

#: `peft.LoraConfig` fields that make no sense on the encoder of a multi-task model, with why
_UNSUPPORTED = {
    "modules_to_save": "the task heads are always fully trained; other modules cannot be trained besides LoRA",
    "task_type": "the adapters go on the bare encoder, not a peft task model",
}
#: bookkeeping fields of `LoraConfig.to_dict()` that are not settings
_NOT_SETTINGS = {"peft_type", "peft_version", "auto_mapping", "base_model_name_or_path", "revision", "inference_mode"}
ADAPTER_NAME = "default"


def _peft() -> Any:
    try:
        import peft
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "This model has (or asks for) LoRA adapters, which need the `peft` package: `pip install peft` (or "
            "`pip install hf_mtl[lora]`). A checkpoint whose adapters were merged (`model.merge_lora()`, or "
            "`hf-mtl merge CHECKPOINT OUT`) loads without it."
        ) from error
    return peft


def default_target_modules(encoder_config: Any) -> list[str] | str:
    """The layers LoRA adapts on this encoder when the user names none (`DEFAULT_TARGET_MODULES`)."""
    targets = DEFAULT_TARGET_MODULES.get(getattr(encoder_config, "model_type", None))
    return list(targets) if targets else "all-linear"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def lora_settings(peft_config: Any, encoder_config: Any) -> dict[str, Any]:
    """The settings of a `peft.LoraConfig` (or a dict of its fields) as kept in `MultiTaskConfig.lora`: the fields
    that differ from LoraConfig's defaults, always `r`, `lora_alpha`, `lora_dropout` and `target_modules` (the
    encoder family's default when not given), and `"merged": False`."""
    peft = _peft()
    if isinstance(peft_config, dict):
        peft_config = peft.LoraConfig(**peft_config)
    if not isinstance(peft_config, peft.LoraConfig):
        raise TypeError(f"peft_config must be a peft.LoraConfig, got {type(peft_config).__name__}: {peft_config!r}")
    given = peft_config.to_dict()
    for key, why in _UNSUPPORTED.items():
        if given.get(key):
            raise ValueError(f"peft_config.{key}={given[key]!r} is not supported: {why}.")
    defaults = peft.LoraConfig().to_dict()
    settings = {
        key: _jsonable(value)
        for key, value in given.items()
        if key not in _NOT_SETTINGS and key not in _UNSUPPORTED and value != defaults.get(key)
    }
    for key in ("r", "lora_alpha", "lora_dropout"):
        settings[key] = given[key]
    if not given.get("target_modules") and not given.get("target_parameters"):
        settings["target_modules"] = default_target_modules(encoder_config)
    settings["merged"] = False
    return dict(sorted(settings.items()))


def lora_config(settings: dict[str, Any]) -> Any:
    """The `peft.LoraConfig` of settings kept in `MultiTaskConfig.lora`."""
    return _peft().LoraConfig(**{k: v for k, v in settings.items() if k != "merged"})


def add_lora(encoder: nn.Module, settings: dict[str, Any]) -> nn.Module:
    """Inject LoRA adapters (`settings` as `lora_settings` makes them) into `encoder` in place; its other
    parameters stop requiring grad. The adapters start as peft initialises them (B = 0: the encoder's outputs are
    unchanged until trained)."""
    peft = _peft()
    peft.inject_adapter_in_model(lora_config(settings), encoder, adapter_name=ADAPTER_NAME)
    # the adapters are initialised by peft: transformers' init pass must leave them alone (and only them: while a
    # checkpoint loads, the encoder's own modules still need it for their non-persistent buffers)
    for name, module in encoder.named_modules():
        if ".lora_" in name:
            module._is_hf_initialized = True
            for param in module.parameters(recurse=False):
                param._is_hf_initialized = True
    return encoder


def _tuner_layers(module: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute name, layer) of every peft adapter layer inside `module`, without importing peft."""
    found = []
    for parent in module.modules():
        for name, child in parent.named_children():
            if hasattr(child, "get_base_layer") and hasattr(child, "merge") and hasattr(child, "lora_A"):
                found.append((parent, name, child))
    return found


def has_unmerged_lora(model: nn.Module) -> bool:
    """Whether `model` holds LoRA adapter layers not yet merged."""
    return bool(_tuner_layers(model))


def merge_lora_into(encoder: nn.Module) -> nn.Module:
    """Fold every LoRA adapter of `encoder` into its base layer's weights (W += B·A·alpha/r) and put the plain
    base layer back in its place: the result has the encoder's original structure and parameter names."""
    for parent, name, layer in _tuner_layers(encoder):
        layer.merge()
        setattr(parent, name, layer.get_base_layer())
    return encoder


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """`{"trainable": ..., "total": ...}` parameter counts of `model` (each shared tensor once)."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    return {
        "trainable": sum(p.numel() for p in seen.values() if p.requires_grad),
        "total": sum(p.numel() for p in seen.values()),
    }


__all__ = [
    "DEFAULT_TARGET_MODULES",
    "add_lora",
    "default_target_modules",
    "has_unmerged_lora",
    "lora_config",
    "lora_settings",
    "merge_lora_into",
    "parameter_counts",
]
