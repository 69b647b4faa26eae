# This file is copied into every saved checkpoint (it is a relative import of modeling_multitask.py and
# configuration_multitask.py) so that `AutoModel.from_pretrained(dir, trust_remote_code=True)` works without
# hf_mtl: import only torch/transformers and its torch-free sibling task_types.py.
"""Task heads: one `TaskHead` subclass per task kind, found through a registry keyed by the kind's `task_type`.

A head owns everything the model does for its kind: its layers (built from the model config and the task's
config entry), what it reads from the shared encoding (the pooled text or every token), its loss, and the
kind-specific rules of its config entry (problem types, how many labels). `MultiTaskModel` builds
`HEADS[entry["task_type"]](config, entry)` for each task and asks each head for logits and loss, so a new kind
is one `TaskHead` subclass and one `register_head(task_type, HeadClass)` call (`hf_mtl.register_task_kind`
makes that call for a task kind's `head_class`).

The two built-in kinds are registered here, so a checkpoint's copy of this file can rebuild them without
hf_mtl. Heads of other kinds live in the package that defines the kind: a checkpoint with such a head loads
where that package is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from .task_types import (  # noqa: F401 - the kinds' constants (torch-free), re-exported for callers of this module
    IGNORE_INDEX,
    MULTI_LABEL,
    POOLING_MODES,
    REGRESSION,
    SEQUENCE_CLASSIFICATION,
    SINGLE_LABEL,
    TOKEN_CLASSIFICATION,
)


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """One vector per text: the first token (`"cls"`) or the mask-aware mean over tokens (`"mean"`)."""
    if mode == "cls":
        return hidden_states[:, 0]
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class SharedEncoding:
    """What every head of one forward pass reads: the encoder's last hidden states and attention mask, and
    pooled vectors computed once per pooling mode and shared by every head that asks for them."""

    def __init__(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str = "mean"):
        self.hidden_states = hidden_states
        self.attention_mask = attention_mask
        self.pooling = pooling
        self._pooled: dict[str, torch.Tensor] = {}

    def pooled(self, mode: str | None = None) -> torch.Tensor:
        """The pooled text vectors `(batch, hidden)`; `mode` defaults to the model's `pooling`."""
        mode = mode or self.pooling
        if mode not in self._pooled:
            self._pooled[mode] = pool(self.hidden_states, self.attention_mask, mode)
        return self._pooled[mode]


class TaskHead(nn.Module):
    """Base class of the heads: one subclass per task kind.

    Subclasses set `task_type` (the config entries' `"task_type"`), `problem_types` (the first is the
    default), `token_level` (True when the head predicts per token: its logits are `(batch, seq_len, ...)` and
    its training data are word-aligned) and implement `__init__(config, entry)` (layers, from the model config
    and the task's config entry), `forward(encoding)`
    (logits from a `SharedEncoding`) and `loss(logits, labels)` (the per-batch mean loss). Register them with
    `register_head`.
    """

    task_type: ClassVar[str] = ""
    problem_types: ClassVar[tuple[str, ...]] = ()
    token_level: ClassVar[bool] = False

    def __init__(self, config: Any, entry: Mapping[str, Any]):
        super().__init__()
        self.task_name = entry["name"]
        self.problem_type = entry["problem_type"]
        self.num_labels = len(entry["id2label"])

    @classmethod
    def min_labels(cls, problem_type: str) -> int:
        """The fewest labels (outputs) a head of this problem type can have."""
        return 1

    @classmethod
    def check_entry(cls, entry: Mapping[str, Any]) -> None:
        """Kind-specific checks of a normalised config entry beyond problem type and label count; raise
        `ValueError` naming the task."""

    @classmethod
    def view_problem_type(cls, entry: Mapping[str, Any]) -> str | None:
        """`config.problem_type` of a single-task view of this head (transformers knows only the three
        sequence-level ones; None for the others)."""
        return None

    def forward(self, encoding: SharedEncoding) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions whose label is not -100 (0 with a gradient path when there are none)."""
    num_labels = logits.shape[-1]
    flat_labels = labels.reshape(-1).long()
    if not bool((flat_labels != IGNORE_INDEX).any()):
        # A batch whose words were all cut away has nothing to learn from; avoid a NaN mean.
        return logits.sum() * 0.0
    return nn.functional.cross_entropy(
        logits.reshape(-1, num_labels).float(), flat_labels.to(logits.device), ignore_index=IGNORE_INDEX
    )


class SequenceClassificationHead(TaskHead):
    """Pooled encoding -> dropout -> dense + tanh -> dropout -> linear (the RoBERTa-style head); cross-entropy
    (single-label), BCE with logits (multi-label) or MSE (regression)."""

    task_type = SEQUENCE_CLASSIFICATION
    problem_types = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)

    def __init__(self, config: Any, entry: Mapping[str, Any]):
        super().__init__(config, entry)
        hidden_size = config.encoder.hidden_size
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(config.head_dropout)
        self.out_proj = nn.Linear(hidden_size, self.num_labels)

    @classmethod
    def min_labels(cls, problem_type: str) -> int:
        return 2 if problem_type == SINGLE_LABEL else 1

    @classmethod
    def view_problem_type(cls, entry: Mapping[str, Any]) -> str | None:
        return entry["problem_type"]

    def forward(self, encoding: SharedEncoding) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(encoding.pooled())))
        return self.out_proj(self.dropout(x))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.problem_type == SINGLE_LABEL:
            return masked_cross_entropy(logits, labels)
        if self.problem_type == MULTI_LABEL:
            return nn.functional.binary_cross_entropy_with_logits(
                logits.float(), labels.to(device=logits.device, dtype=torch.float32)
            )
        target = labels.to(device=logits.device, dtype=torch.float32)
        if logits.shape[-1] == 1:
            return nn.functional.mse_loss(logits.squeeze(-1).float(), target.reshape(-1))
        return nn.functional.mse_loss(logits.float(), target)


class TokenClassificationHead(TaskHead):
    """Per-token dropout -> linear; cross-entropy over labelled tokens."""

    task_type = TOKEN_CLASSIFICATION
    problem_types = (TOKEN_CLASSIFICATION,)
    token_level = True

    def __init__(self, config: Any, entry: Mapping[str, Any]):
        super().__init__(config, entry)
        self.dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.encoder.hidden_size, self.num_labels)

    def forward(self, encoding: SharedEncoding) -> torch.Tensor:
        return self.classifier(self.dropout(encoding.hidden_states))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return masked_cross_entropy(logits, labels)


# ---------------------------------------------------------------------------- registry
HEADS: dict[str, type[TaskHead]] = {}


def _same_class(a: type, b: type) -> bool:
    # a module imported twice (a test runner's rootdir import, a reload) defines an equal class anew
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def register_head(task_type: str, head_class: type[TaskHead]) -> type[TaskHead]:
    """Make `head_class` the head of config entries with this `task_type` (idempotent for the same class)."""
    if not isinstance(task_type, str) or not task_type:
        raise ValueError(f"A head's task_type must be a non-empty string, got {task_type!r}.")
    if not (isinstance(head_class, type) and issubclass(head_class, TaskHead)):
        raise TypeError(f"The head of task_type {task_type!r} must be a TaskHead subclass, got {head_class!r}.")
    if not head_class.problem_types:
        raise ValueError(f"{head_class.__name__} declares no problem_types; give it at least one (its default).")
    registered = HEADS.get(task_type)
    if registered is not None and not _same_class(registered, head_class):
        raise ValueError(
            f"task_type {task_type!r} already has the head {registered.__module__}.{registered.__qualname__}; "
            f"pick another task_type for {head_class.__module__}.{head_class.__qualname__}."
        )
    HEADS[task_type] = head_class
    return head_class


def head_class(task_type: Any, task_name: str | None = None) -> type[TaskHead]:
    """The head class registered for `task_type`; a `ValueError` naming the registered kinds otherwise."""
    try:
        return HEADS[task_type]
    except (KeyError, TypeError):
        where = f"Task {task_name!r}: " if task_name is not None else ""
        raise ValueError(
            f"{where}task_type {task_type!r} is not a registered task kind; the registered kinds are {list(HEADS)}. "
            "A task kind defined outside hf_mtl must be registered before a model or config using it is built or "
            "loaded: import the package that defines it (its hf_mtl.register_task_kind call registers it)."
        ) from None


register_head(SEQUENCE_CLASSIFICATION, SequenceClassificationHead)
register_head(TOKEN_CLASSIFICATION, TokenClassificationHead)


__all__ = [
    "HEADS",
    "IGNORE_INDEX",
    "SequenceClassificationHead",
    "SharedEncoding",
    "TaskHead",
    "TokenClassificationHead",
    "head_class",
    "pool",
    "register_head",
]
