"""`TrainingArguments` plus the multi-task knobs: task sampling, per-task caps and weights, length grouping."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .sampling import STRATEGIES


@dataclass
class MultiTaskTrainingArguments(TrainingArguments):
    """[`TrainingArguments`] for [`MultiTaskTrainer`]; every standard argument works as usual.

    Length grouping within each task is on when `group_by_length=True` or, as with the plain Trainer,
    `train_sampling_strategy="group_by_length"`.
    """

    task_sampling_strategy: str = field(
        default="proportional",
        metadata={
            "help": "How batches are spread over tasks: 'proportional' (to task size), 'temperature' "
            "(p_i ~ n_i^(1/T)), 'uniform', or 'round_robin'.",
            "choices": list(STRATEGIES),
        },
    )
    sampling_temperature: float = field(
        default=2.0, metadata={"help": "T for task_sampling_strategy='temperature' (1 = proportional)."}
    )
    max_examples_per_task: int | None = field(
        default=None, metadata={"help": "Cap on the training examples a task contributes per epoch."}
    )
    task_weights: dict[str, float] | str | None = field(
        default=None,
        metadata={"help": "Static loss weight per task, as a dict or a JSON object string (default 1.0)."},
    )
    group_by_length: bool = field(
        default=False,
        metadata={"help": "Batch examples of similar length within each task (less padding, faster)."},
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Tokenization length for raw datasets (default: the tokenizer's/encoder's limit)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.task_sampling_strategy not in STRATEGIES:
            raise ValueError(
                f"task_sampling_strategy={self.task_sampling_strategy!r} is not one of {list(STRATEGIES)}."
            )
        if not self.sampling_temperature > 0:
            raise ValueError(f"sampling_temperature must be > 0, got {self.sampling_temperature}.")
        if self.max_examples_per_task is not None and self.max_examples_per_task < 1:
            raise ValueError(f"max_examples_per_task must be >= 1, got {self.max_examples_per_task}.")
        if isinstance(self.task_weights, str):
            try:
                self.task_weights = json.loads(self.task_weights)
            except json.JSONDecodeError as err:
                raise ValueError(f"task_weights must be a JSON object like '{{\"ner\": 2.0}}': {err}") from None
        if self.task_weights is not None:
            if not isinstance(self.task_weights, dict):
                raise ValueError(f"task_weights must map task names to numbers, got {self.task_weights!r}.")
            for name, weight in self.task_weights.items():
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                    raise ValueError(f"task_weights[{name!r}] = {weight!r}; expected a number >= 0.")
            self.task_weights = {str(k): float(v) for k, v in self.task_weights.items()}


__all__ = ["MultiTaskTrainingArguments"]
