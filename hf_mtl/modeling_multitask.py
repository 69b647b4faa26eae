# This file is copied into every saved checkpoint (with configuration_multitask.py and heads_multitask.py, its
# relative imports, and the pipeline's module: see `MultiTaskPreTrainedModel.save_pretrained`) so that
# `AutoModel.from_pretrained(dir, trust_remote_code=True)` works without hf_mtl: import only torch/transformers.
"""A shared pretrained encoder with named task heads; each head is the `TaskHead` registered for its task's kind
(`hf_mtl.heads_multitask`), which owns its layers and loss."""

from __future__ import annotations

import copy
import difflib
import inspect
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import MODEL_MAPPING, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save
from transformers.modeling_outputs import ModelOutput
from transformers.utils import logging

from .configuration_multitask import MultiTaskConfig, normalize_task_dict
from .lora import add_lora, has_unmerged_lora, lora_settings, merge_lora_into
from .heads_multitask import (  # noqa: F401 - the heads and IGNORE_INDEX are re-exported for callers of this module
    IGNORE_INDEX,
    SEQUENCE_CLASSIFICATION,
    TOKEN_CLASSIFICATION,
    SequenceClassificationHead,
    SharedEncoding,
    TaskHead,
    TokenClassificationHead,
    head_class,
)

try:
    from transformers import initialization as _init  # respects the "already loaded" flags of v5
except ImportError:  # pragma: no cover
    _init = nn.init

logger = logging.get_logger(__name__)


@dataclass
class TaskModelOutput(ModelOutput):
    """Output of [`MultiTaskModel`] called with `task_name`: one head's logits and, with labels, its loss.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): per-batch mean loss of the head.
        logits (`torch.FloatTensor`): `(batch, num_labels)` for sequence heads, `(batch, seq_len, num_labels)`
            for token heads.
        hidden_states, attentions: as returned by the encoder when requested.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MultiTaskModelOutput(ModelOutput):
    """Output of [`MultiTaskModel`] called without `task_name`: every requested head from one encoder pass.

    Args:
        logits (`dict[str, torch.FloatTensor]`): task name -> that head's logits, in the model's task order.
        last_hidden_state (`torch.FloatTensor` of shape `(batch, seq_len, hidden)`): the shared encoding.
        hidden_states, attentions: as returned by the encoder when requested.
    """

    logits: dict[str, torch.FloatTensor] | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def _task_entries(tasks: Iterable[Any]) -> list[dict[str, Any]]:
    """Turn task specs (objects with `to_config_dict()`) or plain dicts into config entries."""
    entries = []
    for task in tasks:
        if hasattr(task, "to_config_dict"):
            entries.append(task.to_config_dict())
        elif isinstance(task, Mapping):
            entries.append(dict(task))
        else:
            raise TypeError(
                f"tasks must hold hf_mtl task specs (SequenceClassificationTask, TokenClassificationTask, ...) or "
                f"dicts; got {type(task).__name__}: {task!r}"
            )
    return entries


def _accepts_kwarg(callable_obj: Any, name: str) -> bool:
    try:
        params = inspect.signature(callable_obj).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def _forward_parameters(forward: Any) -> list[str]:
    """The keyword arguments a `forward` names in its signature (not `self`, not its `**kwargs`)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(forward).parameters.values() if p.kind in kinds and p.name != "self"]


def _reject_unexpected_kwargs(model: nn.Module, unexpected: Mapping[str, Any]) -> None:
    """TypeError for keyword arguments `type(model).forward` does not name, as Python raises for an unknown
    keyword, plus the accepted ones and the closest match: `forward` takes `**kwargs` only to say this (a typo
    such as `task="ner"` would otherwise be swallowed and the call silently return every head)."""
    if not unexpected:
        return
    accepted = _forward_parameters(type(model).forward)
    described = []
    for name in unexpected:
        close = difflib.get_close_matches(name, accepted, n=2, cutoff=0.6)
        described.append(f"{name!r}" + (f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""))
    what = "an unexpected keyword argument" if len(described) == 1 else "unexpected keyword arguments"
    raise TypeError(
        f"{type(model).__name__}.forward() got {what} {', '.join(described)}; it accepts {', '.join(accepted)}."
    )


def _check_safetensors_file(path: str) -> None:
    """Raise if a safetensors file is shorter (or longer) than its header says: cut short by an interrupted
    download, copy or save. Reads only the header."""
    import re

    size = os.path.getsize(path)
    expected = None
    with open(path, "rb") as handle:
        header_size = int.from_bytes(handle.read(8), "little")
        if size >= 8 and header_size <= size - 8:
            header = handle.read(header_size).decode("utf-8", errors="replace")
            ends = [int(end) for end in re.findall(r'"data_offsets"\s*:\s*\[\s*\d+\s*,\s*(\d+)\s*\]', header)]
            if header.lstrip().startswith("{") and header.rstrip().endswith("}"):
                expected = 8 + header_size + max(ends, default=0)
    if expected != size:
        described = f"its header describes {expected} bytes" if expected is not None else "its header is unreadable"
        raise OSError(
            f"{path} is truncated or corrupt: {described}, the file has {size}. It was probably cut short by an "
            "interrupted download, copy or save; download or save it again."
        )


def _check_safetensors_checkpoint(pretrained_model_name_or_path: Any, kwargs: dict[str, Any]) -> None:
    """hf_mtl checkpoints load weights from safetensors only (pickle files can run code when loaded); a local
    checkpoint's safetensors files are checked for truncation first, for a clear error."""
    if kwargs.get("use_safetensors") is False:
        raise ValueError("hf_mtl checkpoints load weights from safetensors only; use_safetensors=False is not supported.")
    kwargs["use_safetensors"] = True
    if pretrained_model_name_or_path is None:
        return
    directory = os.fspath(pretrained_model_name_or_path)
    if kwargs.get("subfolder"):
        directory = os.path.join(directory, kwargs["subfolder"])
    if not os.path.isdir(directory):
        return
    present = [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n.endswith(".safetensors")]
    if not present:
        pickles = [
            n for n in ("pytorch_model.bin", "pytorch_model.bin.index.json") if os.path.isfile(os.path.join(directory, n))
        ]
        if pickles:
            raise OSError(
                f"{directory} holds its weights only as a pickle ({pickles[0]}); hf_mtl loads weights from "
                "safetensors only, since loading a pickle can run code. Convert it with a tool you trust, e.g. "
                "`model.save_pretrained(dir)` in an environment where you trust the file."
            )
    for path in present:
        _check_safetensors_file(path)


def is_multitask_model(model: Any) -> bool:
    """Whether `model` is a multi-task model (a `MultiTaskModel` or one of its task views), told by its config
    (model type and task list), not its class: the copy of this module that transformers loads from a checkpoint
    with `trust_remote_code=True` defines classes of the same names that are other class objects."""
    config = getattr(model, "config", None)
    return (
        isinstance(model, PreTrainedModel)
        and getattr(config, "model_type", None) == MultiTaskConfig.model_type
        and isinstance(getattr(config, "tasks", None), list)
    )


class MultiTaskPreTrainedModel(PreTrainedModel):
    """Base class wiring [`MultiTaskConfig`] into transformers' loading, saving and initialisation."""

    config_class = MultiTaskConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _keys_to_ignore_on_load_unexpected = [r"pooler\."]

    # The trainer routes one task per batch and returns a per-batch mean; transformers' token-count
    # normalisation would mix token and sentence counts across tasks (and scale by world size under DDP).
    accepts_loss_kwargs = False

    #: pipeline task -> the pipeline class serving these models. Every save copies its module (with the module's
    #: relative imports) next to the modeling code and registers it in config.json's `custom_pipelines`. Filled
    #: by the pipeline's module when it is imported (hf_mtl's, or a checkpoint's copy), so that this file, which
    #: the pipeline imports, does not import it.
    saved_pipelines: dict[str, type] = {}

    #: what `save_pretrained` does with unmerged LoRA adapters when its `merge_lora` is not given: merge them (a
    #: plain checkpoint). `MultiTaskTrainer` sets it to False on the model while it writes intermediate
    #: checkpoints, which must hold the adapters to resume training.
    save_lora_merged: bool = True

    def save_pretrained(
        self, save_directory: str | os.PathLike, *args: Any, merge_lora: bool | None = None, **kwargs: Any
    ) -> Any:
        """`PreTrainedModel.save_pretrained`, plus the code that serves the checkpoint where hf_mtl is not installed.

        A model with unmerged LoRA adapters (see `MultiTaskModel.add_lora`) saves a copy with the adapters merged
        into the encoder weights (a plain checkpoint: one encoder pass, no `peft` needed to load it) unless
        `merge_lora=False` (or the model's `save_lora_merged` is False, and `merge_lora` not given), which saves
        the adapters separately (`config.lora` says so; loading needs `peft`; `hf-mtl merge` merges them later).
        With an explicit `state_dict=` (sharded training), the adapters are saved as they are.

        When the modeling code is saved with the weights (the model class is registered for an auto class: hf_mtl
        registers `MultiTaskModel` for `AutoModel`; transformers registers a remote-code copy it loads),
        config.json also gets
        - `auto_map` entries for the single-task views (`AutoModelForSequenceClassification`,
          `AutoModelForTokenClassification`), so that transformers' `text-classification` and
          `token-classification` pipelines run a head with `trust_remote_code=True`;
        - `custom_pipelines` for each of `saved_pipelines` (the `"multitask"` pipeline), whose module files are
          copied into the folder, so that `pipeline("multitask", model=dir, trust_remote_code=True)` works with
          only transformers installed.
        The model's own config object is left as it was (the entries are written, not kept).
        """
        if merge_lora is None:
            merge_lora = self.save_lora_merged and kwargs.get("state_dict") is None
        if merge_lora and has_unmerged_lora(self):
            merged = copy.deepcopy(self).merge_lora()
            return merged.save_pretrained(save_directory, *args, merge_lora=False, **kwargs)
        config = self.config
        pipelines = self.saved_pipelines if self.is_remote_code() else {}
        kept_pipelines = config.__dict__.get("custom_pipelines")
        if self.is_remote_code():
            views = {
                view.view_auto_class: f"{__name__.rsplit('.', 1)[-1]}.{view.__name__}"
                for view in VIEW_CLASSES.values()
                if view.view_auto_class is not None
            }
            config.auto_map = {**(getattr(config, "auto_map", None) or {}), **views}
        if pipelines:
            # the entry transformers' own `Pipeline.save_pretrained` writes for a registered custom pipeline
            config.custom_pipelines = {
                task: {"impl": f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}", "pt": ["AutoModel"], "type": "text"}
                for task, cls in pipelines.items()
            }
        elif "custom_pipelines" in config.__dict__:  # a copy loaded without its pipeline's code: none to point to
            del config.custom_pipelines
        try:
            result = super().save_pretrained(save_directory, *args, **kwargs)
            if kwargs.get("is_main_process", True) and os.path.isdir(save_directory):
                for cls in pipelines.values():
                    custom_object_save(cls, save_directory)  # its module and, recursively, its relative imports
        finally:
            if kept_pipelines is None:
                config.__dict__.pop("custom_pipelines", None)
            else:
                config.custom_pipelines = kept_pipelines
        return result

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the heads; the encoder is dispatched to its own `_init_weights` by transformers."""
        std = getattr(self.config.encoder, "initializer_range", None) or 0.02
        if isinstance(module, nn.Linear):
            _init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                _init.zeros_(module.bias)


class MultiTaskModel(MultiTaskPreTrainedModel):
    """One pretrained encoder shared by named sequence- and token-classification heads.

    Build one from a pretrained encoder with [`MultiTaskModel.from_encoder`], or load a trained one with
    `from_pretrained` (also through `transformers.AutoModel` once `hf_mtl` is imported).

    Call it with `task_name=` to get that head's logits (and loss, with `labels`); call it without to get
    every head's logits from one encoder pass (`tasks=` restricts which heads are computed).
    """

    def __init__(self, config: MultiTaskConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        if encoder is None:
            encoder = self._encoder_from_config(config.encoder)
        else:
            # Weights already loaded: keep transformers' post_init from re-initialising them.
            for module in encoder.modules():
                module._is_hf_initialized = True
            for param in encoder.parameters():
                param._is_hf_initialized = True
            config.encoder = encoder.config
        self.encoder = encoder
        self._encoder_kwargs = set(inspect.signature(self.encoder.forward).parameters)
        self.heads = nn.ModuleDict()
        for entry in config.tasks:  # in the config's order: the order heads draw their initial weights
            self.heads[entry["name"]] = head_class(entry["task_type"], entry["name"])(config, entry)
        self.post_init()
        if config.lora and not config.lora.get("merged"):  # a checkpoint saved with its adapters unmerged
            add_lora(self.encoder, config.lora)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _encoder_class(encoder_config: PreTrainedConfig) -> type | None:
        try:
            return MODEL_MAPPING[type(encoder_config)]
        except KeyError:
            return None

    @classmethod
    def _encoder_init_kwargs(cls, encoder_config: PreTrainedConfig) -> dict[str, Any]:
        # BERT-style encoders carry a pooler (trained for next-sentence prediction) that no head uses;
        # dropping it avoids dead parameters (which DDP would otherwise have to scan for every step).
        encoder_cls = cls._encoder_class(encoder_config)
        if encoder_cls is not None and _accepts_kwarg(encoder_cls.__init__, "add_pooling_layer"):
            return {"add_pooling_layer": False}
        return {}

    @classmethod
    def _encoder_from_config(cls, encoder_config: PreTrainedConfig) -> PreTrainedModel:
        return AutoModel.from_config(encoder_config, **cls._encoder_init_kwargs(encoder_config))

    @classmethod
    def from_encoder(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        tasks: Iterable[Any],
        *,
        pooling: str = "mean",
        classifier_dropout: float | None = None,
        peft_config: Any = None,
        **encoder_kwargs: Any,
    ) -> MultiTaskModel:
        """Load a pretrained encoder (any `AutoModel` checkpoint) and add freshly initialised heads.

        Args:
            pretrained_model_name_or_path: Hub id or local directory of the encoder.
            tasks: task specs (`SequenceClassificationTask`, `TokenClassificationTask`) or config dicts.
            pooling: `"mean"` or `"cls"` pooling for sequence heads.
            classifier_dropout: dropout inside the heads (default: the encoder's hidden dropout).
            peft_config: a `peft.LoraConfig` to train LoRA adapters on the encoder instead of all its weights
                (see [`MultiTaskModel.add_lora`]); the heads are always fully trained.
            **encoder_kwargs: passed to `AutoModel.from_pretrained` (`revision`, `dtype`,
                `attn_implementation`, `trust_remote_code`, ...).
        """
        entries = _task_entries(tasks)
        if not entries:
            raise ValueError("MultiTaskModel.from_encoder needs at least one task.")
        from transformers import AutoConfig

        config_kwargs = {
            k: encoder_kwargs[k] for k in ("revision", "trust_remote_code", "token", "cache_dir") if k in encoder_kwargs
        }
        encoder_config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **config_kwargs)
        if getattr(encoder_config, "model_type", None) == MultiTaskConfig.model_type:  # hf_mtl's or a checkpoint's copy
            raise ValueError(
                f"{pretrained_model_name_or_path} is already a multi-task checkpoint; load it with "
                "MultiTaskModel.from_pretrained(path, tasks=...) to keep its trained heads."
            )
        encoder = AutoModel.from_pretrained(pretrained_model_name_or_path, **encoder_kwargs)
        if cls._encoder_init_kwargs(encoder_config).get("add_pooling_layer") is False:
            # Loaded with its pooler (so the checkpoint's pooler weights are expected, not reported as
            # unexpected), then dropped: the same structure `_encoder_from_config` builds on reload.
            encoder.pooler = None
        # PreTrainedConfig.__init__ resets its sub-configs' attention implementation to None (eager
        # attention): keep the one the encoder was loaded with (sdpa by default, or attn_implementation=).
        attn_implementation = encoder.config._attn_implementation
        config = MultiTaskConfig(
            encoder=encoder.config,
            tasks=entries,
            pooling=pooling,
            classifier_dropout=classifier_dropout,
            base_model_name_or_path=str(pretrained_model_name_or_path),
        )
        model = cls(config, encoder=encoder)
        model.encoder.config._attn_implementation = attn_implementation
        model.to(encoder.dtype)
        if peft_config is not None:
            model.add_lora(peft_config)
        return model

    # ------------------------------------------------------------------ LoRA
    def add_lora(self, peft_config: Any) -> MultiTaskModel:
        """Add LoRA adapters to the shared encoder in place (`peft.inject_adapter_in_model`): from then on only
        the adapters and the heads require grad. `peft_config` is a `peft.LoraConfig` (or a dict of its fields);
        without `target_modules`, the encoder family's attention and feed-forward projections are adapted
        (`hf_mtl.lora.DEFAULT_TARGET_MODULES`). The settings are kept in `config.lora`. Returns the model.

        `save_pretrained` writes the adapters merged into the encoder weights by default (a plain checkpoint);
        `merge_lora()` merges them in place.
        """
        if has_unmerged_lora(self):
            raise ValueError(
                "This model already has LoRA adapters; merge them first (model.merge_lora()) to add new ones."
            )
        settings = lora_settings(peft_config, self.config.encoder)
        add_lora(self.encoder, settings)
        self.config.lora = settings
        return self

    def merge_lora(self) -> MultiTaskModel:
        """Merge the LoRA adapters into the encoder weights in place and return the model: a plain
        `MultiTaskModel` (original parameter names, every parameter trainable again, no `peft` needed to load
        what it saves) whose `config.lora` keeps the settings, marked `merged`. A model without adapters is
        returned unchanged."""
        if not has_unmerged_lora(self):
            return self
        merge_lora_into(self.encoder)
        for param in self.parameters():
            param.requires_grad_(True)
        self.config.lora = {**self.config.lora, "merged": True}
        return self

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, tasks: Iterable[Any] | None = None, **kwargs):
        """Load a trained multi-task checkpoint.

        With `tasks=`, the model gets exactly those heads in that order: heads of tasks already in the
        checkpoint keep their trained weights (their label sets must match), new tasks get fresh heads,
        and checkpoint tasks not listed are dropped. Everything else is `PreTrainedModel.from_pretrained`.

        Weights load from safetensors only (never from a pickle), and a truncated weights file is an error.
        """
        _check_safetensors_checkpoint(pretrained_model_name_or_path, kwargs)
        if tasks is not None:
            if kwargs.get("config") is not None and getattr(kwargs["config"], "model_type", None) != MultiTaskConfig.model_type:
                raise TypeError("config= must be a MultiTaskConfig when tasks= is given.")
            config = kwargs.pop("config", None)
            if config is None:
                config_kwargs = {
                    k: kwargs[k]
                    for k in ("revision", "token", "cache_dir", "local_files_only", "subfolder")
                    if k in kwargs
                }
                config = MultiTaskConfig.from_pretrained(pretrained_model_name_or_path, **config_kwargs)
            config = cls._config_with_tasks(config, _task_entries(tasks))
            kwargs["config"] = config
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model._realign_cpu_tensors()
        return loaded

    @torch.no_grad()
    def _realign_cpu_tensors(self, alignment: int = 64) -> None:
        """Copy CPU weights that were memory-mapped at unaligned offsets into fresh (aligned) memory.

        safetensors data is only 8-byte aligned; on such tensors CPU BLAS takes other code paths, and a
        reloaded model's logits would differ from the saved model's in the last bits. Aligned copies make
        the round trip bit-exact (and avoid slower unaligned kernels).
        """
        for tensor in [*self.parameters(), *self.buffers()]:
            if tensor.device.type == "cpu" and tensor.numel() and tensor.data_ptr() % alignment:
                tensor.data = tensor.data.clone()

    @staticmethod
    def _config_with_tasks(config: MultiTaskConfig, entries: list[dict[str, Any]]) -> MultiTaskConfig:
        existing = {t["name"]: t for t in config.tasks}
        for entry in entries:
            entry = normalize_task_dict(entry)
            old = existing.get(entry["name"])
            if old is None:
                continue
            if (old["task_type"], old["problem_type"], old["id2label"]) != (
                entry["task_type"],
                entry["problem_type"],
                entry["id2label"],
            ):
                raise ValueError(
                    f"Task {entry['name']!r} exists in the checkpoint as {old['task_type']}/{old['problem_type']} "
                    f"with labels {list(old['id2label'].values())}, but was given as "
                    f"{entry['task_type']}/{entry['problem_type']} with labels {list(entry['id2label'].values())}. "
                    "Give a new task a new name, or keep the checkpoint's label set."
                )
        dropped = [name for name in existing if name not in {e["name"] for e in entries}]
        if dropped:
            logger.warning(f"Dropping checkpoint heads not listed in tasks=: {dropped}")
        config = MultiTaskConfig.from_dict(config.to_dict())
        config.tasks = [normalize_task_dict(e) for e in entries]
        return config

    # ------------------------------------------------------------------ accessors
    @property
    def task_names(self) -> list[str]:
        """Task names in the model's order."""
        return self.config.task_names

    def task_view(self, name: str) -> MultiTaskTaskView:
        """A single-task model for head `name` that shares this model's weights (no copy).

        Its config carries that task's `id2label`/`label2id`/`problem_type` and its forward returns that head's
        logits (and loss, with `labels`), so transformers' built-in `text-classification` /
        `token-classification` pipelines (and anything else expecting a `*ForSequenceClassification` /
        `*ForTokenClassification` model) run on one head. Returns the view class of the task's kind
        ([`MultiTaskForSequenceClassification`], [`MultiTaskForTokenClassification`], or the
        `MultiTaskTaskView` subclass naming another kind in its `view_task_type`; a plain [`MultiTaskTaskView`]
        for a kind without one); `KeyError` listing the model's tasks for an unknown name.
        """
        view_class = VIEW_CLASSES.get(self.config.get_task(name)["task_type"], MultiTaskTaskView)
        view = view_class(copy.deepcopy(self.config), model=self, task_name=name)
        view.train(self.training)
        return view

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    # ------------------------------------------------------------------ forward
    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> ModelOutput:
        """Run the shared encoder once; inputs the encoder does not take (e.g. `token_type_ids` for
        DistilBERT or ModernBERT) are dropped rather than failing."""
        candidates = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
            "inputs_embeds": inputs_embeds,
            "output_attentions": output_attentions,
            "output_hidden_states": output_hidden_states,
        }
        accepts_var_kwargs = "kwargs" in self._encoder_kwargs
        kwargs = {
            k: v
            for k, v in candidates.items()
            if v is not None and (k in self._encoder_kwargs or (accepts_var_kwargs and k.startswith("output_")))
        }
        return self.encoder(**kwargs, return_dict=True)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        task_name: str | None = None,
        labels: torch.Tensor | None = None,
        tasks: list[str] | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> TaskModelOutput | MultiTaskModelOutput | tuple:
        r"""
        task_name (`str`, *optional*):
            Run this head only. With `labels`, the output's `loss` is the head's per-batch mean loss.
        labels (`torch.Tensor`, *optional*):
            Targets for `task_name`: class ids `(batch,)` for single-label heads, multi-hot floats
            `(batch, num_labels)` for multi-label, floats for regression, `(batch, seq_len)` ids with -100 for
            ignored positions for token heads; for a kind registered outside hf_mtl, what its head's `loss` takes.
        tasks (`list[str]`, *optional*):
            Without `task_name`: which heads to compute (default all), from one encoder pass. Given with
            `task_name`, it must be `[task_name]`; anything else is a `ValueError` (the two disagree).

        Any other keyword argument is a `TypeError` naming it and the accepted ones (so a typo such as
        `task="ner"` fails instead of returning every head).
        """
        _reject_unexpected_kwargs(self, kwargs)
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        requested = self._requested_heads(task_name, tasks, labels)
        encoded = self.encode(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden = encoded.last_hidden_state
        # one SharedEncoding per pass: heads that pool share one pooled tensor per pooling mode
        shared = SharedEncoding(hidden, attention_mask, self.config.pooling)
        logits = {name: self.heads[name](shared) for name in requested}
        hidden_states = getattr(encoded, "hidden_states", None)
        attentions = getattr(encoded, "attentions", None)
        if task_name is not None:
            loss = self.heads[task_name].loss(logits[task_name], labels) if labels is not None else None
            output = TaskModelOutput(
                loss=loss, logits=logits[task_name], hidden_states=hidden_states, attentions=attentions
            )
        else:
            output = MultiTaskModelOutput(
                logits=logits, last_hidden_state=hidden, hidden_states=hidden_states, attentions=attentions
            )
        return output if return_dict else output.to_tuple()

    def _requested_heads(self, task_name: str | None, tasks: Any, labels: torch.Tensor | None) -> list[str]:
        """The heads a forward call computes, in order; the errors for `task_name`/`tasks`/`labels` that
        disagree or name unknown tasks."""
        if isinstance(tasks, str):
            raise TypeError(
                f"tasks= takes a list of task names, got the string {tasks!r}; use task_name={tasks!r} for one head "
                f"with its loss, or tasks=[{tasks!r}]."
            )
        if tasks is not None:
            tasks = list(tasks)
            if not tasks:
                raise ValueError(
                    f"tasks= is empty; name some of this model's tasks {self.config.task_names} (or leave it unset)."
                )
        if task_name is not None:
            if tasks is not None and tasks != [task_name]:
                raise ValueError(
                    f"task_name={task_name!r} and tasks={tasks!r} disagree: task_name runs one head (and gives its "
                    "loss with labels), tasks= picks the heads of a loss-free pass; pass only one of them."
                )
            requested = [task_name]
        else:
            if labels is not None:
                raise ValueError("labels were given without task_name: say which head they belong to.")
            requested = tasks if tasks is not None else self.config.task_names
        for name in requested:
            if name not in self.heads:
                raise KeyError(f"Unknown task {name!r}; this model's tasks are {self.config.task_names}.")
        return requested


__all__ = [
    "is_multitask_model",
    "MultiTaskModel",
    "MultiTaskModelOutput",
    "MultiTaskPreTrainedModel",
    "TaskModelOutput",
]


# ---------------------------------------------------------------------------- single-task views
#: task_type -> the `MultiTaskTaskView` subclass `task_view` returns for it (filled by the subclasses)
VIEW_CLASSES: dict[str, type] = {}


def _apply_task_labels(config: MultiTaskConfig, entry: Mapping[str, Any]) -> None:
    """Give a (copied) config the labels and problem type of one task (its config entry), as single-task models
    carry them."""
    config.id2label = dict(entry["id2label"])
    config.label2id = dict(entry["label2id"])
    # PreTrainedConfig only knows the three sequence-level problem types; the head's kind says which it has.
    config.problem_type = head_class(entry["task_type"], entry["name"]).view_problem_type(entry)
    config.view_task = entry["name"]


class MultiTaskTaskView(MultiTaskModel):
    """One head of a [`MultiTaskModel`] as a single-task model (see [`MultiTaskModel.task_view`]).

    Built with `model=`, it shares that model's encoder and heads (no copy: training one trains the other).
    Loaded on its own (`from_pretrained` of a multi-task checkpoint), it builds the whole model and answers for
    `task_name`, else `config.view_task`, else the checkpoint's first task of its kind. Its parameter names are
    those of [`MultiTaskModel`], so what it saves loads back as a multi-task model.

    A subclass that sets `view_task_type` becomes the view `task_view` returns for that kind (as
    `MultiTaskForSequenceClassification` is for `"sequence_classification"`); this class itself serves any kind.
    """

    #: the kind of head this view serves (None: any); set by the subclasses
    view_task_type: str | None = None
    #: the transformers auto class that loads this view from a saved checkpoint (through config.json's `auto_map`,
    #: with `trust_remote_code=True`); set by the subclasses
    view_auto_class: str | None = None

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("view_task_type") is not None:
            VIEW_CLASSES[cls.view_task_type] = cls

    def __init__(self, config: MultiTaskConfig, model: MultiTaskModel | None = None, task_name: str | None = None):
        if model is None:
            super().__init__(config)
        else:
            MultiTaskPreTrainedModel.__init__(self, config)
            self.encoder = model.encoder
            self.heads = model.heads
            self._encoder_kwargs = model._encoder_kwargs
            self.post_init()  # bookkeeping only: transformers v5 does not re-initialise weights here
        if task_name is None:
            task_name = getattr(config, "view_task", None)
        if task_name is None:
            matching = [t["name"] for t in config.tasks if self.view_task_type in (None, t["task_type"])]
            if not matching:
                raise ValueError(
                    f"This multi-task model has no {self.view_task_type} task to serve; its tasks are "
                    f"{config.task_names}."
                )
            task_name = matching[0]
        entry = config.get_task(task_name)
        if self.view_task_type not in (None, entry["task_type"]):
            raise ValueError(
                f"Task {task_name!r} is a {entry['task_type']} task; {type(self).__name__} serves "
                f"{self.view_task_type} tasks."
            )
        self.task_name = task_name
        _apply_task_labels(self.config, entry)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        task_name: str | None = None,
        **kwargs: Any,
    ) -> TaskModelOutput | tuple:
        """The viewed head's logits (and loss with `labels`), like a `*For*Classification` model.

        `task_name` (and `tasks`) may only name the viewed task (`ValueError` otherwise); any other keyword
        argument is a `TypeError` naming it and the accepted ones. The signature lists exactly what is accepted:
        transformers' pipelines and Trainer inspect it (e.g. `use_cache` is passed only to models naming it).
        """
        tasks = kwargs.pop("tasks", None)
        if (task_name is not None and task_name != self.task_name) or (
            tasks is not None and (isinstance(tasks, str) or list(tasks) != [self.task_name])
        ):
            asked = task_name if task_name is not None and task_name != self.task_name else tasks
            raise ValueError(
                f"This view answers for task {self.task_name!r} only, not {asked!r}; use the MultiTaskModel "
                "(or its task_view) for other tasks."
            )
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            task_name=self.task_name,
            labels=labels,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
            **kwargs,
        )


class MultiTaskForSequenceClassification(MultiTaskTaskView):
    """A sequence-classification (or regression) head of a multi-task model as a single-task model."""

    view_task_type = SEQUENCE_CLASSIFICATION
    view_auto_class = "AutoModelForSequenceClassification"


class MultiTaskForTokenClassification(MultiTaskTaskView):
    """A token-classification head of a multi-task model as a single-task model."""

    view_task_type = TOKEN_CLASSIFICATION
    view_auto_class = "AutoModelForTokenClassification"


__all__ += ["MultiTaskForSequenceClassification", "MultiTaskForTokenClassification", "MultiTaskTaskView"]
