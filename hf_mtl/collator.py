"""Collation of single-task batches: pad inputs for the batch's task; its kind shapes the labels (token labels
padded with -100) and, for distillation, the cached teacher logits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .distillation import TEACHER_LOGITS_COLUMN
from .heads_multitask import IGNORE_INDEX
from .preprocessing import MODEL_INPUT_COLUMNS
from .tasks import Task


@dataclass
class MultiTaskDataCollator:
    """Pads a batch of prepared examples of one task and adds its `task_name`.

    Args:
        tokenizer: the encoder's tokenizer (its `pad` does the input padding).
        tasks: the task specs (to know how each task's labels are shaped).
        pad_to_multiple_of: pad lengths to a multiple of this (tensor-core friendly on GPUs).
        label_pad_token_id: padding for token labels.
    """

    tokenizer: Any
    tasks: Sequence[Task]
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        self._tasks = {t.name: t for t in self.tasks}

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("MultiTaskDataCollator got an empty batch.")
        task_name = features[0].get("task_name")
        if task_name is None:
            raise ValueError("Each example needs a 'task_name' (use MultiTaskDataset / MultiTaskBatchSampler).")
        mixed = sorted({f.get("task_name") for f in features} - {task_name})
        if mixed:
            raise ValueError(
                f"A batch mixes tasks {[task_name, *mixed]}; every batch must hold one task "
                "(use MultiTaskBatchSampler)."
            )
        try:
            task = self._tasks[task_name]
        except KeyError:
            raise KeyError(f"Batch of unknown task {task_name!r}; known tasks are {list(self._tasks)}.") from None
        inputs = [{k: f[k] for k in MODEL_INPUT_COLUMNS if k in f} for f in features]
        batch = dict(
            self.tokenizer.pad(inputs, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        )
        has_labels = all(f.get("labels") is not None for f in features)
        if has_labels:  # shaped by the task's kind (class ids, multi-hot rows, floats, per-token ids padded)
            batch["labels"] = task.collate_labels(
                [f["labels"] for f in features],
                width=batch["input_ids"].shape[1],
                padding_side=getattr(self.tokenizer, "padding_side", "right"),
                pad_value=self.label_pad_token_id,
            )
        if all(f.get(TEACHER_LOGITS_COLUMN) is not None for f in features):  # cached teacher logits (distillation)
            batch[TEACHER_LOGITS_COLUMN] = task.collate_teacher_logits(
                [f[TEACHER_LOGITS_COLUMN] for f in features],
                width=batch["input_ids"].shape[1],
                padding_side=getattr(self.tokenizer, "padding_side", "right"),
            )
        batch["task_name"] = task_name
        return batch


__all__ = ["MultiTaskDataCollator"]
