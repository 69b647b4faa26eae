# This file is copied into every saved checkpoint (with heads_multitask.py, its relative import) so that
# `AutoModel.from_pretrained(dir, trust_remote_code=True)` works where hf_mtl is not installed: it must import
# only torch/transformers.
"""Configuration of a multi-task model: one encoder config plus an ordered list of task heads."""

from __future__ import annotations

import copy
import re
from dataclasses import field
from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from .heads_multitask import (  # noqa: F401 - the kinds' constants, re-exported for callers of this module
    MULTI_LABEL,
    POOLING_MODES,
    REGRESSION,
    SEQUENCE_CLASSIFICATION,
    SINGLE_LABEL,
    TOKEN_CLASSIFICATION,
    head_class,
)
from .task_types import get_task_entry, select_task_names

try:  # transformers >= 5.x with fine-grained sub-config specs
    from transformers.configuration_utils import SubConfigSpec
except ImportError:  # pragma: no cover - older 5.x releases
    SubConfigSpec = None


_TASK_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def check_unique_task_names(names: list[str]) -> None:
    """Raise if a task name appears more than once (each names a head, a dataset key and metric keys)."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Task names must be unique; {duplicates} appear more than once in {names}.")


def check_unique_labels(task_name: str, labels: list[str]) -> None:
    """Raise if a task's label names repeat (each names one output of its head)."""
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"Task {task_name!r}: labels {duplicates} appear more than once in {labels}.")


def check_label_count(task_name: str, problem_type: str, labels: list[str], minimum: int) -> None:
    """Raise unless a task has at least `minimum` labels (outputs); `minimum` is its kind's rule for the problem
    type (`TaskHead.min_labels`)."""
    if len(labels) < minimum:
        raise ValueError(
            f"Task {task_name!r}: {problem_type} needs at least {minimum} labels, got {len(labels)}: {labels}."
        )


def normalize_task_dict(entry: dict[str, Any]) -> dict[str, Any]:
    """Validate one task entry of `MultiTaskConfig.tasks` and restore integer `id2label` keys.

    The generic rules (a valid, unique-able name; `id2label`/`label2id` describing labels 0..n-1) are checked
    here; the rules of the task's kind (its problem types and label count) come from the head registered for
    its `task_type` (`hf_mtl.heads_multitask`), so an unregistered kind is an error naming the registered ones.
    JSON turns the integer keys of `id2label` into strings; this undoes that and fills whichever of
    `id2label`/`label2id` is missing from the other.
    """
    if not isinstance(entry, dict):
        raise TypeError(f"Each entry of MultiTaskConfig.tasks must be a dict, got {type(entry).__name__}: {entry!r}")
    entry = copy.deepcopy(entry)
    name = entry.get("name")
    if not isinstance(name, str) or not _TASK_NAME_RE.match(name):
        raise ValueError(
            f"Task name {name!r} is not valid: expected a non-empty string of letters, digits, '_' or '-' "
            "that does not start with a digit (it names a sub-module of the model)."
        )
    task_type = entry.get("task_type")
    head = head_class(task_type, name)
    problem_type = entry.get("problem_type") or head.problem_types[0]
    if problem_type not in head.problem_types:
        raise ValueError(
            f"Task {name!r}: problem_type {problem_type!r} is not valid for {task_type}; "
            f"expected one of {list(head.problem_types)}."
        )
    entry["problem_type"] = problem_type
    id2label = entry.get("id2label")
    label2id = entry.get("label2id")
    if id2label is None and label2id is not None:
        id2label = {int(i): label for label, i in label2id.items()}
    if id2label is None:
        raise ValueError(f"Task {name!r}: id2label is missing.")
    id2label = {int(i): str(label) for i, label in id2label.items()}
    if sorted(id2label) != list(range(len(id2label))) or not id2label:
        raise ValueError(f"Task {name!r}: id2label keys must be 0..n-1 with n >= 1, got {sorted(id2label)}.")
    entry["id2label"] = dict(sorted(id2label.items()))
    check_unique_labels(name, list(entry["id2label"].values()))
    entry["label2id"] = {label: i for i, label in entry["id2label"].items()}
    check_label_count(name, problem_type, list(entry["id2label"].values()), head.min_labels(problem_type))
    head.check_entry(entry)
    return entry


class MultiTaskConfig(PreTrainedConfig):
    r"""Configuration of a [`MultiTaskModel`]: a shared encoder and named task heads.

    Args:
        encoder (`PreTrainedConfig` or `dict`):
            Configuration of the shared encoder (any `AutoModel` encoder: BERT, RoBERTa, DeBERTa-v2, ...).
        tasks (`list[dict]`):
            The heads, in order. Each dict holds `name`, `task_type` (a registered task kind:
            `"sequence_classification"`, `"token_classification"` or one registered with
            `hf_mtl.register_task_kind`), `problem_type`, `id2label` and `label2id`, plus any column settings
            of the task spec it was made from. The list order is the model's task order.
        pooling (`str`, defaults to `"mean"`):
            How sequence heads pool the encoder output: `"mean"` (mask-aware mean over tokens) or `"cls"`
            (first token). Mean pooling works for every encoder, whatever its CLS conventions.
        classifier_dropout (`float`, *optional*):
            Dropout in the heads; defaults to the encoder's `hidden_dropout_prob` (or 0.1).
        base_model_name_or_path (`str`, *optional*):
            Where the encoder weights came from (recorded for model cards and tokenizer loading).
        pad_token_id (`int`, *optional*):
            Padding id; defaults to the encoder's.
        lora (`dict`, *optional*):
            LoRA adapters on the encoder (`hf_mtl.lora.lora_settings`): `peft.LoraConfig` settings (`r`,
            `lora_alpha`, `lora_dropout`, `target_modules`, ...) and `merged`. While `merged` is false the model
            holds the adapters separately (loading it needs `peft`); once merged, the weights are a plain encoder's
            and the settings stay as a record of how it was trained.
    """

    model_type = "hf_mtl"
    if SubConfigSpec is not None:
        sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}
    else:  # pragma: no cover
        sub_configs = {"encoder": AutoConfig}

    #: pipeline tasks (`"multitask"`) that the running Python serves with an installed pipeline: hf_mtl's
    #: `register_pipeline` names them on hf_mtl's own copy of this class (a checkpoint's copy stays empty). A loaded
    #: config leaves them out of its `custom_pipelines` (config.json keeps them, and every save writes them
    #: again), so that `transformers.pipeline("multitask", model=dir)` takes the registered pipeline and does
    #: not ask for `trust_remote_code` to run the checkpoint's copy of the same code.
    locally_served_pipelines = frozenset()

    encoder: PreTrainedConfig | dict | None = None
    tasks: list[dict] = field(default_factory=list)
    pooling: str = "mean"
    classifier_dropout: float | None = None
    base_model_name_or_path: str | None = None
    pad_token_id: int | None = None
    lora: dict | None = None

    def __post_init__(self, **kwargs):
        if isinstance(self.encoder, dict) and SubConfigSpec is None:  # pragma: no cover
            encoder = dict(self.encoder)
            self.encoder = AutoConfig.for_model(encoder.pop("model_type", "bert"), **encoder)
        tasks = [normalize_task_dict(t) for t in (self.tasks or [])]
        check_unique_task_names([t["name"] for t in tasks])
        self.tasks = tasks
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling={self.pooling!r} is not supported; expected one of {list(POOLING_MODES)}.")
        custom_pipelines = kwargs.get("custom_pipelines")
        if isinstance(custom_pipelines, dict) and self.locally_served_pipelines:
            kwargs["custom_pipelines"] = {
                task: entry for task, entry in custom_pipelines.items() if task not in self.locally_served_pipelines
            }
            if not kwargs["custom_pipelines"]:
                del kwargs["custom_pipelines"]
        super().__post_init__(**kwargs)
        if self.pad_token_id is None and self.encoder is not None:
            # mirrored from the encoder so tokenizer/config alignment (Trainer, pipelines) finds it
            self.pad_token_id = getattr(self.encoder, "pad_token_id", None)

    @property
    def task_names(self) -> list[str]:
        """The task names, in the model's order."""
        return [t["name"] for t in self.tasks]

    def select_tasks(self, tasks: Any = None) -> list[str]:
        """Task names picked by `tasks` (a name, a comma-separated string or a list of names; None: all), each
        once, in the order given; `KeyError` listing the model's tasks for an unknown name."""
        return select_task_names(self.tasks, tasks)

    def get_task(self, name: str) -> dict[str, Any]:
        """The config entry of task `name`; `KeyError` listing the known tasks otherwise."""
        return get_task_entry(self.tasks, name)

    @property
    def hidden_size(self) -> int:
        """The encoder's hidden size (DeepSpeed's `auto` bucket sizes read it from the top config)."""
        return self.encoder.hidden_size

    @property
    def head_dropout(self) -> float:
        """Dropout used inside the heads."""
        if self.classifier_dropout is not None:
            return float(self.classifier_dropout)
        for attr in ("classifier_dropout", "hidden_dropout_prob", "hidden_dropout", "dropout"):
            value = getattr(self.encoder, attr, None)
            if isinstance(value, (int, float)):
                return float(value)
        return 0.1


__all__ = [
    "MultiTaskConfig",
    "check_label_count",
    "check_unique_labels",
    "check_unique_task_names",
    "normalize_task_dict",
]
