"""`TrainingArguments` plus the multi-task knobs: task sampling, per-task caps, loss balancing, length grouping."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from .balancers import LossBalancer, loss_balancer_name
from .sampling import DEFAULT_TEMPERATURE, MultiTaskBatchSampler, sampling_strategy_name
from .streaming import DEFAULT_STREAM_BUFFER_SIZE


@dataclass
class MultiTaskTrainingArguments(TrainingArguments):
    """[`TrainingArguments`] for [`MultiTaskTrainer`]; every standard argument works as usual.

    Length grouping within each task is on when `group_by_length=True` or, as with the plain Trainer,
    `train_sampling_strategy="group_by_length"`.

    `task_sampling_strategy` and `loss_balancer` take a registered name or a class (a subclass of
    `MultiTaskBatchSampler` / `LossBalancer`); either way they hold a name afterwards (a class that was not
    registered is recorded by its import path `module:ClassName`), so the arguments stay serialisable.
    """

    task_sampling_strategy: str | type[MultiTaskBatchSampler] = field(
        default="proportional",
        metadata={
            "help": "How batches are spread over tasks: 'proportional' (to task size), 'temperature' "
            "(p_i ~ n_i^(1/T)), 'uniform', 'round_robin', 'annealed' (p_i ~ n_i^alpha, alpha from 1 to 0.2 over "
            "the run), or another registered strategy "
            "(register_sampling_strategy) or a 'module:ClassName' path."
        },
    )
    sampling_temperature: float = field(
        default=DEFAULT_TEMPERATURE,
        metadata={"help": "T for task_sampling_strategy='temperature' (1 = proportional)."},
    )
    task_sampling_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Settings of the sampling strategy (its constructor's keyword arguments), as a dict or JSON object string."},
    )
    max_examples_per_task: int | None = field(
        default=None, metadata={"help": "Cap on the training examples a task contributes per epoch."}
    )
    task_weights: dict[str, float] | str | None = field(
        default=None,
        metadata={"help": "Static loss weight per task, as a dict or a JSON object string (default 1.0)."},
    )
    loss_balancer: str | type[LossBalancer] = field(
        default="static",
        metadata={
            "help": "How task losses are combined: 'static' (times task_weights), 'uncertainty' (learned, Kendall "
            "et al.), 'dwa' (Dynamic Weight Average), 'famo' (needs all_tasks_per_step), another registered balancer "
            "(register_loss_balancer) or a 'module:ClassName' path."
        },
    )
    loss_balancer_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Settings of the loss balancer (its constructor's keyword arguments), as a dict or JSON object string."},
    )
    all_tasks_per_step: bool = field(
        default=False,
        metadata={
            "help": "Every optimizer step accumulates one batch of each task (batches still hold one task), so "
            "balancers that need every task's loss each step (famo) see them all. The trainer then accumulates "
            "gradient_accumulation_steps x number-of-tasks batches per step; the sampling strategy must be "
            "'proportional' (the default) or 'round_robin', whose order it replaces."
        },
    )
    group_by_length: bool = field(
        default=False,
        metadata={"help": "Batch examples of similar length within each task (less padding, faster)."},
    )
    stream_buffer_size: int = field(
        default=DEFAULT_STREAM_BUFFER_SIZE,
        metadata={
            "help": "Rows of each streaming task read ahead, shuffled and grouped by length there (hf_mtl.streaming); "
            "memory grows with it, not with the corpus."
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Tokenization length for raw datasets (default: the tokenizer's/encoder's limit)."},
    )

    def __post_init__(self):
        super().__post_init__()
        self.task_sampling_strategy = sampling_strategy_name(self.task_sampling_strategy)
        self.loss_balancer = loss_balancer_name(self.loss_balancer)
        if not self.sampling_temperature > 0:
            raise ValueError(f"sampling_temperature must be > 0, got {self.sampling_temperature}.")
        if self.stream_buffer_size < 1:
            raise ValueError(f"stream_buffer_size must be >= 1, got {self.stream_buffer_size}.")
        if self.max_examples_per_task is not None and self.max_examples_per_task < 1:
            raise ValueError(f"max_examples_per_task must be >= 1, got {self.max_examples_per_task}.")
        self.task_weights = _json_object(self.task_weights, "task_weights", '{"ner": 2.0}')
        if self.task_weights is not None:
            for name, weight in self.task_weights.items():
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                    raise ValueError(f"task_weights[{name!r}] = {weight!r}; expected a number >= 0.")
            self.task_weights = {str(k): float(v) for k, v in self.task_weights.items()}
        self.task_sampling_kwargs = _json_object(self.task_sampling_kwargs, "task_sampling_kwargs", '{"temperature": 3}')
        self.loss_balancer_kwargs = _json_object(self.loss_balancer_kwargs, "loss_balancer_kwargs", '{"setting": 1.0}')

    @classmethod
    def multitask_defaults(cls) -> dict[str, Any]:
        """The defaults of the fields this class adds to `TrainingArguments` (what a plain `TrainingArguments`
        given to `MultiTaskTrainer` gets)."""
        base = {f.name for f in dataclasses.fields(TrainingArguments)}
        return {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cls)
            if f.name not in base and f.init
        }


def _json_object(value: Any, field_name: str, example: str) -> dict[str, Any] | None:
    """A dict argument given as a dict or a JSON object string (command lines, recipes)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"{field_name} must be a JSON object like '{example}': {err}") from None
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{field_name} must be a mapping (a dict or a JSON object like '{example}'), got {value!r}.")
    return value


__all__ = ["MultiTaskTrainingArguments"]
