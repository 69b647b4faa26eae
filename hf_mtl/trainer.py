"""`MultiTaskTrainer`: a `transformers.Trainer` that routes each single-task batch to its head.

What it adds to the plain Trainer, and nothing more:
- datasets are dicts keyed by task name; raw ones are tokenized and label-aligned (`prepare_datasets`);
- training batches come from `MultiTaskBatchSampler` (one task per batch), wired in `get_train_dataloader`;
- each batch's loss is its head's per-batch mean times the task's weight; logs carry each task's
  running loss as `<task>_loss`;
- `evaluate()` scores every task with its own metrics (`eval_<task>_<metric>`) and adds `eval_average`
  (mean of the tasks' main metrics) and `eval_loss` (mean of their losses), so
  `metric_for_best_model="average"` works with `load_best_model_at_end`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, Trainer, TrainingArguments
from transformers.trainer_utils import EvalPrediction, speed_metrics
from transformers.utils import logging

from .collator import MultiTaskDataCollator
from .metrics import compute_task_metrics
from .modeling_multitask import MultiTaskModel
from .preprocessing import effective_max_length, prepare_datasets
from .sampling import MultiTaskBatchSampler, MultiTaskDataset
from .tasks import Task, tasks_from_config
from .training_args import MultiTaskTrainingArguments

logger = logging.get_logger(__name__)

#: defaults for the multi-task fields when a plain `TrainingArguments` is passed
_ARG_DEFAULTS = {
    "task_sampling_strategy": "proportional",
    "sampling_temperature": 2.0,
    "max_examples_per_task": None,
    "task_weights": None,
    "group_by_length": False,
    "max_length": None,
}


class _SortedIndexSampler(torch.utils.data.Sampler[int]):
    """Evaluation order: longest first, so batches hold similar lengths (metrics do not depend on order)."""

    def __init__(self, lengths: list[int] | None, size: int):
        self.order = list(np.argsort(-np.asarray(lengths), kind="stable")) if lengths is not None else list(range(size))

    def __iter__(self):
        return iter(int(i) for i in self.order)

    def __len__(self) -> int:
        return len(self.order)


class MultiTaskTrainer(Trainer):
    """Trains a [`MultiTaskModel`] on several tasks at once.

    Args:
        model: a `MultiTaskModel` (e.g. from `MultiTaskModel.from_encoder`).
        args: `MultiTaskTrainingArguments` (a plain `TrainingArguments` gets the multi-task defaults).
        train_dataset / eval_dataset: `DatasetDict` or dict keyed by task name. Raw datasets (with the
            columns named by each task spec) are tokenized here; prepared ones (`input_ids`, `labels`) are
            used as is. A key that is not a task of the model is an error.
        processing_class: the encoder's tokenizer (loaded from the model's base encoder when omitted).
        compute_metrics: optional dict task name -> `fn(EvalPrediction) -> dict` replacing that task's
            built-in metrics (its headline metric for `eval_average` is then the first key returned).
        Everything else is passed to `transformers.Trainer`.
    """

    def __init__(
        self,
        model: MultiTaskModel | None = None,
        args: TrainingArguments | None = None,
        data_collator: Callable | None = None,
        train_dataset: Mapping[str, Dataset] | None = None,
        eval_dataset: Mapping[str, Dataset] | None = None,
        processing_class: Any = None,
        compute_metrics: Mapping[str, Callable[[EvalPrediction], dict]] | None = None,
        **kwargs: Any,
    ):
        if model is None:
            raise ValueError("MultiTaskTrainer needs a MultiTaskModel (model_init is not supported).")
        config = getattr(model, "config", None)
        if not hasattr(config, "tasks") or not config.tasks:
            raise TypeError(f"MultiTaskTrainer needs a MultiTaskModel with tasks, got {type(model).__name__}.")
        if args is None:
            args = MultiTaskTrainingArguments(output_dir="trainer_output")
        for name, default in _ARG_DEFAULTS.items():
            if not hasattr(args, name):
                setattr(args, name, default)
        if compute_metrics is not None and not isinstance(compute_metrics, Mapping):
            raise TypeError(
                "compute_metrics must be a dict of task name -> function; each task already has built-in metrics."
            )
        self.tasks: list[Task] = tasks_from_config(config)
        self.task_by_name = {t.name: t for t in self.tasks}
        self.task_metric_fns = dict(compute_metrics or {})
        self._check_keys(self.task_metric_fns, "compute_metrics")
        if processing_class is None:
            processing_class = self._default_tokenizer(model)
        self.tokenizer_max_length = effective_max_length(processing_class, args.max_length, config)
        task_weights = dict(getattr(args, "task_weights", None) or {})
        self._check_keys(task_weights, "task_weights")
        self.task_weights = {t.name: float(task_weights.get(t.name, 1.0)) for t in self.tasks}

        self.train_datasets = self._prepare(train_dataset, "train", processing_class) if train_dataset is not None else None
        self.eval_datasets = self._prepare(eval_dataset, "eval", processing_class) if eval_dataset is not None else None
        if data_collator is None:
            data_collator = MultiTaskDataCollator(processing_class, self.tasks)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=MultiTaskDataset(self.train_datasets) if self.train_datasets else None,
            eval_dataset=self.eval_datasets,
            processing_class=processing_class,
            **kwargs,
        )
        # running per-task training loss since the last log: [sum, count] per task, on the model's device
        self._task_loss = torch.zeros(len(self.tasks), 2, dtype=torch.float64)

    # ------------------------------------------------------------------ data
    def _check_keys(self, mapping: Mapping[str, Any], what: str) -> None:
        unknown = [k for k in mapping if k not in self.task_by_name]
        if unknown:
            raise KeyError(f"{what} has key(s) {unknown} that are not tasks of the model; its tasks are {list(self.task_by_name)}.")

    @staticmethod
    def _default_tokenizer(model: MultiTaskModel) -> Any:
        source = getattr(model.config, "base_model_name_or_path", None) or getattr(model, "name_or_path", None)
        if not source:
            raise ValueError("Pass processing_class=<the encoder's tokenizer>; the model does not record its source.")
        return AutoTokenizer.from_pretrained(source)

    def _prepare(self, datasets: Mapping[str, Dataset], split: str, tokenizer: Any) -> dict[str, Dataset]:
        if not isinstance(datasets, Mapping):
            raise TypeError(
                f"The {split} dataset must be a DatasetDict or dict keyed by task name "
                f"({list(self.task_by_name)}), got {type(datasets).__name__}."
            )
        self._check_keys(datasets, f"The {split} dataset")
        if split == "train":
            missing = [t.name for t in self.tasks if t.name not in datasets]
            if missing:
                logger.warning(f"No training data for task(s) {missing}: their heads will not be trained.")
        ordered = {t.name: datasets[t.name] for t in self.tasks if t.name in datasets}
        return prepare_datasets(
            ordered,
            self.tasks,
            tokenizer,
            split="train" if split == "train" else "validation",
            max_length=self.tokenizer_max_length,
        )

    def make_batch_sampler(self, dataset: MultiTaskDataset) -> MultiTaskBatchSampler:
        """The training batch sampler built from the arguments (exposed for inspection and tests)."""
        args = self.args
        return MultiTaskBatchSampler(
            dataset,
            self._train_batch_size,
            strategy=args.task_sampling_strategy,
            temperature=args.sampling_temperature,
            max_examples_per_task=args.max_examples_per_task,
            group_by_length=bool(args.group_by_length) or args.train_sampling_strategy == "group_by_length",
            drop_last=args.dataloader_drop_last,
            seed=args.data_seed if args.data_seed is not None else args.seed,
        )

    def _loader_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "collate_fn": self.data_collator,
            "num_workers": self.args.dataloader_num_workers,
            "pin_memory": self.args.dataloader_pin_memory,
            "persistent_workers": self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0,
        }
        if self.args.dataloader_num_workers > 0 and self.args.dataloader_prefetch_factor is not None:
            params["prefetch_factor"] = self.args.dataloader_prefetch_factor
        return params

    def get_train_dataloader(self) -> DataLoader:
        """Single-task batches from `MultiTaskBatchSampler`, prepared by accelerate (sharded by whole
        batches across processes)."""
        if self.train_dataset is None:
            raise ValueError("MultiTaskTrainer: training requires a train_dataset.")
        sampler = self.make_batch_sampler(self.train_dataset)
        loader = DataLoader(self.train_dataset, batch_sampler=sampler, **self._loader_params())
        return self.accelerator.prepare(loader)

    def get_task_eval_dataloader(self, task_name: str, dataset: Dataset) -> DataLoader:
        """Evaluation batches of one task, longest first."""
        wrapped = MultiTaskDataset({task_name: dataset})
        lengths = wrapped.lengths()[task_name]
        loader = DataLoader(
            wrapped,
            batch_size=self.args.eval_batch_size,
            sampler=_SortedIndexSampler(lengths, len(wrapped)),
            **self._loader_params(),
        )
        return self.accelerator.prepare(loader)

    # ------------------------------------------------------------------ loss
    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        """The batch's head loss (a per-batch mean) times its task weight."""
        inputs = dict(inputs)
        task_name = inputs.pop("task_name", None)
        if task_name is None:
            raise ValueError("Batch without 'task_name': use MultiTaskDataCollator.")
        outputs = model(**inputs, task_name=task_name)
        loss = outputs.loss
        if loss is None:
            raise ValueError(f"Task {task_name!r}: the batch has no labels, so no loss can be computed.")
        if model.training:
            index = self.tasks.index(self.task_by_name[task_name])
            self._task_loss[index, 0] += float(loss.detach())
            self._task_loss[index, 1] += 1
        weight = self.task_weights.get(task_name, 1.0)
        if weight != 1.0:
            loss = loss * weight
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds `<task>_loss` (mean unweighted loss since the last log, over all processes) to training logs."""
        if "loss" in logs and not any(k.startswith("eval_") for k in logs):
            totals = self._task_loss.to(self.args.device)
            if self.args.world_size > 1:
                totals = self.accelerator.reduce(totals, reduction="sum")
            totals = totals.cpu()
            for task, (loss_sum, count) in zip(self.tasks, totals.tolist()):
                if count:
                    logs[f"{task.name}_loss"] = round(loss_sum / count, 6)
            self._task_loss.zero_()
        super().log(logs, start_time)

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        eval_dataset: Mapping[str, Dataset] | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Evaluate every task with its own metrics.

        Returns `<prefix>_<task>_<metric>` for every task and metric, `<prefix>_<task>_loss`,
        `<prefix>_average` (mean of the tasks' main metrics), `<prefix>_loss` (mean of the task losses),
        and runtime figures.
        """
        if eval_dataset is not None:
            datasets = self._prepare(eval_dataset, "eval", self.processing_class)
        else:
            datasets = self.eval_datasets
        if not datasets:
            raise ValueError("MultiTaskTrainer: evaluation requires an eval_dataset (dict keyed by task name).")
        self._memory_tracker.start()
        start_time = time.time()
        metrics: dict[str, float] = {}
        num_samples = 0
        main_names: dict[str, str] = {}
        saved_compute_metrics = self.compute_metrics
        try:
            for name, dataset in datasets.items():
                task = self.task_by_name[name]
                custom = self.task_metric_fns.get(name)
                self.compute_metrics = custom or self._builtin_metrics(task)
                output = self.evaluation_loop(
                    self.get_task_eval_dataloader(name, dataset),
                    description=f"Evaluation ({name})",
                    prediction_loss_only=False,
                    ignore_keys=ignore_keys,
                    metric_key_prefix=f"{metric_key_prefix}_{name}",
                )
                task_metrics = {
                    k: v for k, v in output.metrics.items() if not k.endswith("_model_preparation_time")
                }
                metrics.update(task_metrics)
                num_samples += output.num_samples
                if custom is not None:
                    produced = [k for k in task_metrics if not k.endswith("_loss")]
                    main_names[name] = produced[0] if produced else f"{metric_key_prefix}_{name}_loss"
                else:
                    main_names[name] = f"{metric_key_prefix}_{name}_{task.main_metric}"
        finally:
            self.compute_metrics = saved_compute_metrics
        mains = [metrics[k] for k in main_names.values() if k in metrics]
        metrics[f"{metric_key_prefix}_average"] = float(np.mean(mains)) if mains else float("nan")
        losses = [metrics[f"{metric_key_prefix}_{name}_loss"] for name in datasets if f"{metric_key_prefix}_{name}_loss" in metrics]
        if losses:
            metrics[f"{metric_key_prefix}_loss"] = float(np.mean(losses))
        total_batch_size = self.args.eval_batch_size * self.args.world_size
        metrics.update(
            speed_metrics(
                metric_key_prefix,
                start_time,
                num_samples=num_samples,
                num_steps=math.ceil(num_samples / total_batch_size),
            )
        )
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics

    @staticmethod
    def _builtin_metrics(task: Task) -> Callable[[EvalPrediction], dict[str, float]]:
        def compute(prediction: EvalPrediction) -> dict[str, float]:
            return compute_task_metrics(task, prediction.predictions, prediction.label_ids)

        return compute


__all__ = ["MultiTaskTrainer"]
