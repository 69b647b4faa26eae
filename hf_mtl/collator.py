"""Collation of single-task batches: pad inputs for the batch's task, pad token labels with -100."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .modeling_multitask import IGNORE_INDEX
from .preprocessing import MODEL_INPUT_COLUMNS
from .tasks import REGRESSION, SINGLE_LABEL, Task, TokenClassificationTask


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
        if has_labels:
            labels = [f["labels"] for f in features]
            if isinstance(task, TokenClassificationTask):
                width = batch["input_ids"].shape[1]
                padded = torch.full((len(labels), width), self.label_pad_token_id, dtype=torch.long)
                left = getattr(self.tokenizer, "padding_side", "right") == "left"
                for i, row in enumerate(labels):
                    row_t = torch.as_tensor(row, dtype=torch.long)
                    if left:
                        padded[i, width - len(row_t) :] = row_t
                    else:
                        padded[i, : len(row_t)] = row_t
                batch["labels"] = padded
            elif task.problem_type == SINGLE_LABEL:
                batch["labels"] = torch.as_tensor(labels, dtype=torch.long)
            elif task.problem_type == REGRESSION and task.num_labels == 1:
                batch["labels"] = torch.as_tensor(labels, dtype=torch.float32).reshape(-1)
            else:
                batch["labels"] = torch.as_tensor(labels, dtype=torch.float32)
        batch["task_name"] = task_name
        return batch


__all__ = ["MultiTaskDataCollator"]
