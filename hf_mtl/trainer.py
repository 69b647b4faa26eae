"""`MultiTaskTrainer`: a `transformers.Trainer` that routes each single-task batch to its head.

What it adds to the plain Trainer, and nothing more:
- datasets are dicts keyed by task name; raw ones are tokenized and label-aligned (`prepare_datasets`);
- training batches come from the batch sampler of the chosen task sampling strategy (`hf_mtl.sampling`:
  one task per batch), wired in `get_train_dataloader`;
- with `all_tasks_per_step`, every optimizer step accumulates one batch of each task (`_all_tasks_args`:
  the Trainer's gradient accumulation becomes the arguments' own times the number of tasks);
- a task's training data may stream (`datasets.IterableDataset`, `hf_mtl.streaming`): prepared lazily, one
  task per batch from the same strategy, each process reading its own shard, the streams' position saved in
  checkpoints (`stream_state-<rank>.json`);
- each training batch's head loss (a per-batch mean) goes through the loss balancer (`hf_mtl.balancers`;
  by default the task's static weight), whose parameters, if any, join the optimizer and which hears of
  every optimizer step (`LossBalancer.end_step`); logs carry each task's running loss as `<task>_loss`;
- with `distillation=DistillationConfig(...)`, tasks with a single-task teacher also learn from its logits,
  computed once and cached with the prepared data (`hf_mtl.distillation`);
- `run_record` keeps the facts of the run the model card shows (data sizes, batch mix, sampling strategy,
  loss balancer);
- `evaluate()` scores every task with its own metrics (`eval_<task>_<metric>`) and adds `eval_average`
  (mean of the tasks' main metrics) and `eval_loss` (mean of their unweighted losses), so
  `metric_for_best_model="average"` works with `load_best_model_at_end`; metrics see one row per raw
  example in input order, and for token tasks one position per word of the whole sentence (the windows of
  a long sentence merged, `hf_mtl.evaluation`);
- `predict()` returns the same arrays per task (`MultiTaskPredictionOutput`), for labelled or unlabelled data;
- `model_init` and `hyperparameter_search()`: one fresh model per trial, and the loss balancer and batch sampler
  rebuilt from every trial's arguments; a trial's `task_weight_<task>` values set its `task_weights`
  (`hf_mtl.search`: spaces, objectives, `apply_best_run`);
- under DDP, heads a step does not use join the graph cheaply instead of DDP's unused-parameter scan, and
  their zero gradients are dropped before the optimizer step (docs/distributed.md); a launcher that starts
  several processes which do not form one group (CPU without `use_cpu=True`) is an error;
- checkpoints carry `multitask_state.json` (sampler settings and epoch, running per-task losses, the loss
  balancer's description) and, for a balancer with parameters or buffers, `loss_balancer.safetensors`, so a
  resumed run continues the same batch order, loss history and loss balancing; `resume_from_checkpoint=True` skips
  checkpoints cut short while being written, and weights load from safetensors only.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import math
import os
import re
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, TrainingArguments, enable_full_determinism, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import (
    PREFIX_CHECKPOINT_DIR,
    EvalPrediction,
    PredictionOutput,
    denumpify_detensorize,
    speed_metrics,
)
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, logging

from .balancers import LossBalancer, loss_balancer_class
from .collator import MultiTaskDataCollator
from .distillation import TEACHER_LOGITS_COLUMN, DistillationConfig, Distiller
from .encoders import load_tokenizer_for
from .evaluation import (
    PAD,
    MultiTaskPredictionOutput,
    merge_windows,
    nested_map,
    restore_order,
    rows_in_order,
    to_examples,
    word_index_from_labels,
)
from .hub import MultiTaskHubMixin
from .metrics import compute_task_metrics
from .modeling_multitask import MultiTaskModel
from .preprocessing import EXAMPLE_INDEX_COLUMN, WORD_INDEX_COLUMN, effective_max_length, prepare_datasets
from .lora import parameter_counts
from .run_record import RunRecord
from .sampling import MultiTaskBatchSampler, MultiTaskDataset, RunLength, sampling_strategy, sampling_strategy_name
from .search import average_objective, default_search_space, record_trial, trial_arguments
from .streaming import (
    StreamingTrainData,
    build_stream,
    is_streaming,
    load_stream_state,
    prepare_streaming_run,
    save_stream_state,
    training_task_sizes,
)
from .tasks import Task, tasks_from_config
from .training_args import MultiTaskTrainingArguments

logger = logging.get_logger(__name__)

#: written into every checkpoint: batch sampler settings and epoch, running losses since the last log
MULTITASK_STATE_NAME = "multitask_state.json"
#: written into checkpoints of runs whose loss balancer has parameters or buffers
LOSS_BALANCER_STATE_NAME = "loss_balancer.safetensors"


class _SortedIndexSampler(torch.utils.data.Sampler[int]):
    """Evaluation order: longest first, so batches hold similar lengths (results are put back in input
    order afterwards with `order`)."""

    def __init__(self, lengths: list[int] | None, size: int):
        self.order = list(np.argsort(-np.asarray(lengths), kind="stable")) if lengths is not None else list(range(size))

    def __iter__(self):
        return iter(int(i) for i in self.order)

    def __len__(self) -> int:
        return len(self.order)


class _MultiTaskStateCallback(TrainerCallback):
    """Internal: keeps the sampler's epoch and run length, the resumed state, the loss balancer's gradients and
    unused heads' gradients in step with the loop."""

    def __init__(self, trainer: MultiTaskTrainer):
        self._trainer = weakref.ref(trainer)

    def on_train_begin(self, args, state, control, **kwargs):
        self._trainer()._set_sampler_run_length(state)
        self._trainer()._restore_multitask_state()
        self._trainer().loss_balancer.zero_grad(set_to_none=True)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._trainer()._set_sampler_epoch(state)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._trainer()._sync_loss_balancer_grads()
        self._trainer()._drop_unused_head_grads()

    def on_optimizer_step(self, args, state, control, **kwargs):
        # the Trainer zeroes the model's gradients only; the balancer sits outside the model
        self._trainer().loss_balancer.zero_grad(set_to_none=True)
        self._trainer()._end_loss_balancer_step()

    def on_train_end(self, args, state, control, **kwargs):
        self._trainer()._record_loss_balancer()


class MultiTaskTrainer(MultiTaskHubMixin, Trainer):
    """Trains a [`MultiTaskModel`] on several tasks at once.

    Args:
        model: a `MultiTaskModel` (e.g. from `MultiTaskModel.from_encoder`).
        model_init: instead of `model`, a function returning a fresh `MultiTaskModel` (with the same tasks every
            time), called with no argument or the trial; needed by `hyperparameter_search` (a new model per trial).
        args: `MultiTaskTrainingArguments` (a plain `TrainingArguments` gets the multi-task defaults).
        train_dataset / eval_dataset: `DatasetDict` or dict keyed by task name. Raw datasets (with the
            columns named by each task spec) are tokenized here; prepared ones (`input_ids`, `labels`) are
            used as is. A key that is not a task of the model is an error.
        processing_class: the encoder's tokenizer (loaded from the model's base encoder when omitted).
        compute_metrics: replaces the built-in metrics: either one function `fn(EvalPrediction) -> dict`,
            called once per task, or a dict task name -> such a function (tasks not in it keep their built-in
            metrics). A function with a `task_name` parameter also gets the task's name. It sees that task's
            predictions in input order, one row per raw example; for token tasks `(sentences, words,
            num_labels)` logits and `(sentences, words)` label ids, one position per word (-100 padding).
            Its keys are reported as `eval_<task>_<key>`, and its first key is the task's headline metric for
            `eval_average`.
        distillation: a `hf_mtl.distillation.DistillationConfig`: learn the tasks it names from single-task
            teachers as well as gold labels (born-again distillation with teacher annealing).
        task_sizes: rows of streaming training tasks (`datasets.IterableDataset` values of `train_dataset`)
            whose dataset info does not record them, for strategies that weigh tasks by size
            (`hf_mtl.streaming`; a run with a streaming task needs `max_steps`).
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
        model_init: Callable[..., MultiTaskModel] | None = None,
        compute_metrics: Callable[..., dict] | Mapping[str, Callable[..., dict]] | None = None,
        distillation: DistillationConfig | None = None,
        task_sizes: Mapping[str, int] | None = None,
        **kwargs: Any,
    ):
        if args is None:
            args = MultiTaskTrainingArguments(output_dir="trainer_output")
        if (model is None) == (model_init is None):
            raise ValueError("MultiTaskTrainer needs either a MultiTaskModel (`model`) or a `model_init`, not both.")
        if model is None:
            # the tasks, tokenizer and data preparation come from a first model; the Trainer seeds first too
            enable_full_determinism(args.seed) if args.full_determinism else set_seed(args.seed)
            self.model_init = model_init
            model = self.call_model_init()
        config = getattr(model, "config", None)
        if not hasattr(config, "tasks") or not config.tasks:
            raise TypeError(f"MultiTaskTrainer needs a MultiTaskModel with tasks, got {type(model).__name__}.")
        for name, default in MultiTaskTrainingArguments.multitask_defaults().items():
            if not hasattr(args, name):
                setattr(args, name, default)
        self.tasks: list[Task] = tasks_from_config(config)
        self.task_by_name = {t.name: t for t in self.tasks}
        if compute_metrics is None or isinstance(compute_metrics, Mapping):
            self.task_metric_fns = dict(compute_metrics or {})
            self._check_keys(self.task_metric_fns, "compute_metrics")
        elif callable(compute_metrics):
            self.task_metric_fns = {t.name: compute_metrics for t in self.tasks}
        else:
            raise TypeError(
                "compute_metrics must be a function fn(EvalPrediction) -> dict (called for every task) or a dict "
                f"task name -> function; got {type(compute_metrics).__name__}."
            )
        for name, fn in self.task_metric_fns.items():
            if not callable(fn):
                raise TypeError(f"compute_metrics[{name!r}] must be a function, got {type(fn).__name__}.")
        self._check_evaluation_args(args)
        if processing_class is None:
            processing_class = load_tokenizer_for(model, argument="processing_class")
        self.tokenizer_max_length = effective_max_length(processing_class, args.max_length, config)
        self.loss_balancer: LossBalancer = self._build_loss_balancer(args)

        # this process and the number of processes: under DDP each process reads its own shard of a stream
        self._process = (args.process_index, args.world_size)
        self.train_datasets = self._prepare(train_dataset, "train", processing_class) if train_dataset is not None else None
        streaming = any(is_streaming(d) for d in (self.train_datasets or {}).values())
        if streaming and distillation is not None:
            # teacher logits are cached as a column of the prepared data, which a stream does not hold
            raise ValueError(
                "MultiTaskTrainer: distillation needs map-style training data (teacher logits are cached with the "
                f"prepared dataset); streaming tasks: {[n for n, d in self.train_datasets.items() if is_streaming(d)]}."
            )
        if streaming and args.all_tasks_per_step:
            raise ValueError(
                "MultiTaskTrainer: all_tasks_per_step is not supported with streaming training data; use "
                "task_sampling_strategy='round_robin' to take the tasks in turn instead."
            )
        # teacher logits are computed once, cached with the prepared data (hf_mtl.distillation)
        self.distiller = Distiller(distillation, self.tasks, processing_class) if distillation is not None else None
        if self.distiller is not None and self.train_datasets:
            self.train_datasets = self.distiller.add_teacher_logits(self.train_datasets, args)
        self.eval_datasets = self._prepare(eval_dataset, "eval", processing_class) if eval_dataset is not None else None
        # rows per training task (None: a stream of unknown size)
        self._check_keys(task_sizes or {}, "task_sizes")
        self.train_task_sizes = training_task_sizes(self.train_datasets or {}, train_dataset, task_sizes, args.max_steps)
        # the facts of this run the model card shows (the sampler, balancer and job layer add theirs)
        self.run_record = RunRecord(
            train_sizes={name: n for name, n in self.train_task_sizes.items() if n is not None},
            eval_sizes={name: len(ds) for name, ds in (self.eval_datasets or {}).items()},
            loss_balancer=self.loss_balancer.describe(),
            distillation=self.distiller.describe() if self.distiller is not None else {},
            parameters=parameter_counts(model),
        )
        if data_collator is None:
            data_collator = MultiTaskDataCollator(processing_class, self.tasks)
        # rounds of one batch per task in an optimizer step (the arguments' own gradient accumulation)
        self._rounds_per_step = getattr(args, "_rounds_per_step", args.gradient_accumulation_steps)
        if args.all_tasks_per_step:
            args = self._all_tasks_args(args, self._rounds_per_step * len(self.train_datasets or self.tasks))
        if getattr(args, "ddp_find_unused_parameters", None) is None:
            # Heads a step does not use take part through `_unused_heads_term` instead of DDP's graph scan.
            args.ddp_find_unused_parameters = False
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=(
                (StreamingTrainData(self.train_datasets) if streaming else MultiTaskDataset(self.train_datasets))
                if self.train_datasets
                else None
            ),
            eval_dataset=self.eval_datasets,
            processing_class=processing_class,
            **kwargs,
        )
        # running per-task training loss since the last log: [sum, count] per task, on the model's device
        self._task_loss = torch.zeros(len(self.tasks), 2, dtype=torch.float32)
        self._task_index = {t.name: i for i, t in enumerate(self.tasks)}
        self._check_distributed_launch()
        # tasks whose head ran on this process since the last optimizer step (see `_drop_unused_head_grads`)
        self._heads_used = torch.zeros(len(self.tasks), dtype=torch.float32)
        self._train_batch_sampler: MultiTaskBatchSampler | None = None
        self._train_stream = None  # the `MultiTaskStream` of a run with streaming tasks
        self._resume_state: dict[str, Any] | None = None
        self._resume_checkpoint: str | None = None
        # False while `prediction_step` runs: evaluation reports the heads' own losses
        self._weigh_losses = True
        self._setup_loss_balancer()
        self.add_callback(_MultiTaskStateCallback(self))
        # the Trainer was given the first model (it refuses `model` and `model_init` together); later runs re-init
        self.model_init = model_init
        if model_init is not None and (self.optimizer is not None or self.lr_scheduler is not None):
            raise RuntimeError(
                "Passing a `model_init` is incompatible with providing the `optimizers` argument (each run builds a "
                "new model); override `create_optimizer` instead."
            )
        # task -> key of its headline metric in the last evaluation (`<prefix>_<task>_<metric>`)
        self.headline_metrics: dict[str, str] = {}
        # hyperparameter search: the original value of every argument a trial set (restored before each trial)
        self._search_originals: dict[str, Any] = {}

    @property
    def task_weights(self) -> dict[str, float]:
        """The weight each task's training loss currently gets from the loss balancer."""
        return self.loss_balancer.current_weights()

    @staticmethod
    def _all_tasks_args(args: TrainingArguments, batches_per_step: int) -> TrainingArguments:
        """`all_tasks_per_step`: a copy of the arguments (the caller's stay as given) whose gradient accumulation
        is `batches_per_step` (their own times the number of tasks), so the Trainer's loop takes one batch of
        every task per optimizer step, divides each batch's loss by that count (the logged loss stays a mean per
        batch) and counts steps, epochs and skipped batches on resume accordingly."""
        copied = copy.copy(args)
        copied._rounds_per_step = getattr(args, "_rounds_per_step", args.gradient_accumulation_steps)
        copied.gradient_accumulation_steps = batches_per_step
        return copied

    @staticmethod
    def _check_evaluation_args(args: TrainingArguments) -> None:
        """Evaluation options that cannot work when metrics need every window of a sentence at once."""
        unsupported = []
        if getattr(args, "batch_eval_metrics", False):
            unsupported.append("batch_eval_metrics=True (metrics are computed once per task, on whole sentences)")
        if not getattr(args, "eval_do_concat_batches", True):
            unsupported.append("eval_do_concat_batches=False (predictions are regrouped by raw example)")
        if getattr(args, "include_for_metrics", None):
            unsupported.append(
                f"include_for_metrics={list(args.include_for_metrics)} (metric functions get word-level "
                "predictions and label ids; token-level inputs and per-batch losses do not line up with them)"
            )
        if unsupported:
            raise ValueError("MultiTaskTrainer does not support " + "; ".join(unsupported) + ".")

    # ------------------------------------------------------------------ data
    def _check_keys(self, mapping: Mapping[str, Any], what: str) -> None:
        unknown = [k for k in mapping if k not in self.task_by_name]
        if unknown:
            raise KeyError(f"{what} has key(s) {unknown} that are not tasks of the model; its tasks are {list(self.task_by_name)}.")

    def _prepare(
        self, datasets: Mapping[str, Dataset], split: str, tokenizer: Any, require_labels: bool = True
    ) -> dict[str, Dataset]:
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
        if any(is_streaming(d) for d in ordered.values()):
            return prepare_streaming_run(
                ordered, self.task_by_name, tokenizer, split=split, max_length=self.tokenizer_max_length,
                rank=self._process[0], world_size=self._process[1],
            )
        return prepare_datasets(
            ordered,
            self.tasks,
            tokenizer,
            split={"train": "train", "eval": "validation"}.get(split, split),
            max_length=self.tokenizer_max_length,
            require_labels=require_labels,
        )

    def make_batch_sampler(self, dataset: MultiTaskDataset) -> MultiTaskBatchSampler:
        """The training batch sampler of the arguments' `task_sampling_strategy` (exposed for inspection and
        tests)."""
        args = self.args
        strategy = sampling_strategy(args.task_sampling_strategy)
        return strategy(
            dataset,
            self._train_batch_size,
            max_examples_per_task=args.max_examples_per_task,
            group_by_length=bool(args.group_by_length) or args.train_sampling_strategy == "group_by_length",
            drop_last=args.dataloader_drop_last,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            all_tasks_per_step=bool(args.all_tasks_per_step),
            num_processes=args.world_size,
            rounds_per_step=self._rounds_per_step,
            **strategy.strategy_kwargs(args),
        )

    def _loader_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "collate_fn": self.data_collator,
            "num_workers": self.args.dataloader_num_workers,
            # pinning only helps host-to-accelerator copies (and warns on CPU-only machines)
            "pin_memory": self.args.dataloader_pin_memory and self.args.device.type != "cpu",
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
        if isinstance(self.train_dataset, StreamingTrainData):
            return self._get_stream_dataloader()
        sampler = self.make_batch_sampler(self.train_dataset)
        self._train_batch_sampler = sampler
        self.run_record.batch_shares = dict(zip(sampler.task_names, (float(p) for p in sampler.batch_shares())))
        self.run_record.sampling = sampler.describe()
        loader = DataLoader(self.train_dataset, batch_sampler=sampler, **self._loader_params())
        return self.accelerator.prepare(loader)

    def _get_stream_dataloader(self) -> DataLoader:
        """A run with streaming tasks: one-task batches from `MultiTaskStream` (`hf_mtl.streaming`). Every
        process reads its own shard and the same task order, so the loader is not sharded by accelerate."""
        args = self.args
        if args.dataloader_num_workers:
            raise ValueError(
                f"dataloader_num_workers={args.dataloader_num_workers}: a run with streaming tasks reads its streams in "
                "the training process (their position is saved in checkpoints); set dataloader_num_workers=0."
            )
        strategy = sampling_strategy(args.task_sampling_strategy)
        stream = build_stream(
            self.train_dataset.datasets,
            strategy,
            self._train_batch_size,
            sizes=self.train_task_sizes,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            buffer_size=args.stream_buffer_size,
            group_by_length=bool(args.group_by_length) or args.train_sampling_strategy == "group_by_length",
            drop_last=args.dataloader_drop_last,
            max_examples_per_task=args.max_examples_per_task,
            strategy_kwargs=strategy.strategy_kwargs(args),
            rank=args.process_index,
            world_size=args.world_size,
        )
        self._train_stream = stream
        self._train_batch_sampler = stream.order
        self.run_record.batch_shares = dict(zip(stream.order.task_names, (float(p) for p in stream.order.probabilities())))
        self.run_record.sampling = stream.order.describe()
        # the stream yields whole batches; its own generator keeps `iter(loader)` from drawing from the global
        # RNG, which a resumed run restores before it (so dropout continues as in the uninterrupted run)
        params = {**self._loader_params(), "batch_size": None, "generator": torch.Generator().manual_seed(args.seed)}
        return DataLoader(stream, **params)

    def _init_training_state(self, *args: Any, **kwargs: Any) -> tuple[int, int]:
        """`Trainer._init_training_state`; a resumed streaming run restores its streams' position from the
        checkpoint instead of re-reading and skipping the batches already trained."""
        epochs_trained, steps_trained = super()._init_training_state(*args, **kwargs)
        return epochs_trained, 0 if self._train_stream is not None else steps_trained

    @staticmethod
    def _eval_sampler(dataset: Dataset) -> _SortedIndexSampler:
        lengths = None
        if "length" in (getattr(dataset, "column_names", None) or []):
            lengths = dataset.with_format("arrow")["length"].to_numpy()  # one columnar read, not row by row
        return _SortedIndexSampler(lengths, len(dataset))

    def get_task_eval_dataloader(self, task_name: str, dataset: Dataset) -> DataLoader:
        """Evaluation batches of one task, longest first. Results are put back in input order assuming this
        order (`_eval_sampler`): an override must keep it."""
        loader = DataLoader(
            MultiTaskDataset({task_name: dataset}),
            batch_size=self.args.eval_batch_size,
            sampler=self._eval_sampler(dataset),
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
        """The batch's head loss (a per-batch mean; with a teacher, mixed with the distillation loss:
        `hf_mtl.distillation`) through the loss balancer (by default: times its task weight). Evaluation and prediction losses are the head's own (`prediction_step`): the balancer steers
        training, it does not change what is measured."""
        inputs = dict(inputs)
        task_name = inputs.pop("task_name", None)
        if task_name is None:
            raise ValueError("Batch without 'task_name': use MultiTaskDataCollator.")
        teacher_logits = inputs.pop(TEACHER_LOGITS_COLUMN, None)
        outputs = model(**inputs, task_name=task_name)
        loss = outputs.loss
        if loss is None:
            raise ValueError(f"Task {task_name!r}: the batch has no labels, so no loss can be computed.")
        if teacher_logits is not None and self.distiller is not None and self._weigh_losses:
            loss = self.distiller.loss(
                self.task_by_name[task_name], loss, outputs.logits, teacher_logits, inputs, self.state
            )
        if model.training:
            index = self._task_index[task_name]
            if self._task_loss.device != loss.device:  # accumulate where the loss lives: no per-step sync
                self._task_loss = self._task_loss.to(loss.device)
            self._task_loss[index, 0] += loss.detach().float()
            self._task_loss[index, 1] += 1
            self._heads_used[index] += 1
        if self._weigh_losses:
            loss = self.loss_balancer({task_name: loss})
        if model.training and self._touches_unused_heads(model):
            loss = loss + self._unused_heads_term(model, task_name)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds `<task>_loss` (mean unweighted loss since the last log, over all processes) and the loss
        balancer's `log_values()` (e.g. learned task weights) to training logs."""
        if "loss" in logs and not any(k.startswith("eval_") for k in logs):
            totals = self._task_loss.to(self.args.device)
            if self.args.world_size > 1:
                totals = self.accelerator.reduce(totals, reduction="sum")
            totals = totals.cpu()
            for task, (loss_sum, count) in zip(self.tasks, totals.tolist()):
                if count:
                    logs[f"{task.name}_loss"] = round(loss_sum / count, 6)
            self._task_loss.zero_()
            logs.update(self.loss_balancer.log_values())
            if self.distiller is not None:
                logs.update(self.distiller.log_values(self.state))
            self._record_loss_balancer()
        super().log(logs, start_time)

    # ------------------------------------------------------------------ loss balancer
    def _build_loss_balancer(self, args: TrainingArguments) -> LossBalancer:
        return loss_balancer_class(args.loss_balancer).from_training_args([t.name for t in self.tasks], args)

    def _setup_loss_balancer(self) -> None:
        """Put the balancer on the training device; a balancer with parameters needs an optimizer this trainer
        builds or one that already holds them, and a plain data-parallel run (not DeepSpeed or FSDP, whose
        optimizers only see the model)."""
        self.loss_balancer.to(self.args.device)
        if not self.loss_balancer.param_groups():
            return
        name = self.loss_balancer.name
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise ValueError(
                f"loss_balancer={name!r} has trainable parameters, which DeepSpeed and FSDP would leave out of "
                "their optimizer; use a balancer without parameters (e.g. 'static') with them."
            )
        if self.optimizer is not None and not self._optimizer_holds_loss_balancer(self.optimizer):
            raise ValueError(
                f"loss_balancer={name!r} has trainable parameters, but the optimizer passed in `optimizers` does "
                "not hold them. Add a parameter group with trainer.loss_balancer.param_groups() to it, or let the "
                "trainer create the optimizer."
            )

    def _optimizer_holds_loss_balancer(self, optimizer: torch.optim.Optimizer) -> bool:
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        return all(id(p) in held for group in self.loss_balancer.param_groups() for p in group["params"])

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """`Trainer.create_optimizer`, plus the loss balancer's parameter groups (before the learning-rate
        scheduler is built, so it schedules them too)."""
        optimizer = super().create_optimizer(model)
        if not self._optimizer_holds_loss_balancer(optimizer):
            for group in self.loss_balancer.param_groups():
                optimizer.add_param_group(group)
        return optimizer

    def _sync_loss_balancer_grads(self) -> None:
        """Before each optimizer step of a multi-process run: average the balancer's gradients over processes,
        as DDP does for the model's (the balancer is outside the DDP wrapper). A parameter no process used keeps
        `grad=None`, so the optimizer leaves it alone, as in single-process training."""
        params = [p for group in self.loss_balancer.param_groups() for p in group["params"]]
        if not params or self.args.world_size <= 1:
            return
        device = self.args.device
        flat = torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).to(device, torch.float32)
            for p in params
        ])
        used = torch.tensor([float(p.grad is not None) for p in params], device=device)
        flat = self.accelerator.reduce(flat, reduction="mean")
        used = self.accelerator.reduce(used, reduction="sum").cpu().tolist()
        offset = 0
        for param, count in zip(params, used):
            size = param.numel()
            param.grad = flat[offset : offset + size].view_as(param).to(param.dtype).clone() if count else None
            offset += size

    def _end_loss_balancer_step(self) -> None:
        """After each optimizer step: the balancer updates what it follows (`LossBalancer.end_step`), with
        tensors summed over processes."""
        if self.args.world_size > 1:
            reduce = lambda t: self.accelerator.reduce(t, reduction="sum")  # noqa: E731
        else:
            reduce = lambda t: t  # noqa: E731
        self.loss_balancer.end_step(reduce)

    def _record_loss_balancer(self) -> None:
        self.run_record.loss_balancer = self.loss_balancer.describe()

    # ------------------------------------------------------------------ distributed training
    def _check_distributed_launch(self) -> None:
        """Fail when a launcher started several processes that do not form one training group (each would
        train and save its own model; on CPU this is what happens without `use_cpu=True`)."""
        if self.args.fsdp and not self.is_fsdp_enabled:
            # accelerate enables FSDP for GPU-like devices only: on CPU it silently drops the plugin
            logger.warning(
                f"fsdp={self.args.fsdp!r} was requested but accelerate did not enable FSDP (distributed type "
                f"{self.accelerator.state.distributed_type}; it does so on GPUs and similar devices only, not on CPU): "
                "training runs without sharding, as plain DDP (or one process). See docs/distributed.md."
            )
        try:
            launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
        except ValueError:
            return
        if launched > 1 and self.accelerator.num_processes == 1:
            raise RuntimeError(
                f"This process is one of {launched} started by a launcher (WORLD_SIZE={launched}, e.g. torchrun or "
                "accelerate launch), but the trainer runs as a single process: every process would train its own "
                "copy of the model on the full data and overwrite the others' checkpoints. On a machine without "
                "GPUs pass use_cpu=True (TrainingArguments / --use_cpu) so the processes form one gloo group; "
                "with GPUs, make sure every process sees CUDA."
            )

    @staticmethod
    def _touches_unused_heads(model: torch.nn.Module) -> bool:
        return isinstance(model, DistributedDataParallel) and not model.find_unused_parameters

    @staticmethod
    def _unused_heads_term(model: DistributedDataParallel, task_name: str) -> torch.Tensor:
        """`0 * sum(parameters of every other head)`: puts each head in the step's autograd graph, so DDP with
        `find_unused_parameters=False` sees a gradient for every parameter without scanning the graph each
        step. The resulting zero gradients are dropped before the optimizer step (`_drop_unused_head_grads`)."""
        terms = [
            p.sum()
            for name, head in model.module.heads.items()
            if name != task_name
            for p in head.parameters()
            if p.requires_grad
        ]
        return torch.stack(terms).sum() * 0.0 if terms else torch.zeros(())

    def _drop_unused_head_grads(self) -> None:
        """Before each optimizer step: the heads that no process used since the last step get `grad=None`, so
        the optimizer leaves them alone (no momentum or weight-decay update), as in single-process training."""
        used, self._heads_used = self._heads_used, torch.zeros_like(self._heads_used)
        model = self.model_wrapped
        if not self._touches_unused_heads(model):
            return
        used = self.accelerator.reduce(used.to(self.args.device), reduction="sum").cpu()
        for task, count in zip(self.tasks, used.tolist()):
            if count == 0:
                for param in model.module.heads[task.name].parameters():
                    param.grad = None

    def _set_sampler_run_length(self, state: Any) -> None:
        """Tell the sampler how long this run is (for strategies that change over training)."""
        if self._train_batch_sampler is not None:
            self._train_batch_sampler.set_run_length(
                RunLength(
                    num_epochs=int(state.num_train_epochs) if state.num_train_epochs else None,
                    max_steps=int(state.max_steps) if state.max_steps else None,
                    batches_per_step=self.args.gradient_accumulation_steps * self.args.world_size,
                )
            )
            self.run_record.sampling = self._train_batch_sampler.describe()  # a schedule knows its length now

    def _set_sampler_epoch(self, state: Any) -> None:
        """Select the epoch's batch order on the sampler itself: accelerate's `set_epoch` does not reach it
        through two wrappers (`SkipBatchSampler` around `BatchSamplerShard` when a multi-process run resumes)."""
        if self._train_batch_sampler is not None:
            self._train_batch_sampler.set_epoch(int(math.floor(state.epoch or 0)))

    # ------------------------------------------------------------------ hyperparameter search
    def hyperparameter_search(
        self,
        hp_space: Callable[[Any], dict[str, Any]] | None = None,
        compute_objective: Callable[[dict[str, float]], float] | None = None,
        n_trials: int = 20,
        direction: str | list[str] = "maximize",
        backend: str | None = None,
        hp_name: Callable[[Any], str] | None = None,
        **kwargs: Any,
    ):
        """`Trainer.hyperparameter_search` (needs `model_init`), with multi-task defaults and hooks.

        - `hp_space(trial)` may return `task_weight_<task>` values: the trial's `task_weights` are the
          arguments' weights with those replaced. Default: `hf_mtl.search.default_search_space(tasks)`.
        - `compute_objective` defaults to `eval_average` (`hf_mtl.search.average_objective`), so `direction`
          defaults to "maximize"; an objective with `for_trainer(trainer)` (`worst_task_objective`) is bound
          to this trainer's headline metrics.
        - every trial starts from the arguments the search started with, its loss balancer and batch sampler
          are built from its own arguments, and its tasks' headline scores are kept in the optuna trial
          (`user_attrs["task_scores"]`); the arguments are restored afterwards (`hf_mtl.search.apply_best_run`
          turns the returned `BestRun` into arguments).
        """
        space = hp_space if hp_space is not None else default_search_space([t.name for t in self.tasks])
        objective = compute_objective if compute_objective is not None else average_objective
        if callable(getattr(objective, "for_trainer", None)):
            objective = objective.for_trainer(self)

        def trial_space(trial: Any) -> dict[str, Any]:
            values = trial_arguments(space(trial), self.args.task_weights)
            for key in values:  # the value before any trial, restored before the next one
                self._search_originals.setdefault(key, getattr(self.args, key, None))
            return values

        def recorded_objective(metrics: dict[str, float]) -> float:
            record_trial(getattr(self, "_trial", None), metrics, self.headline_metrics)
            return objective(metrics)

        self._search_originals = {}
        try:
            return super().hyperparameter_search(
                hp_space=trial_space, compute_objective=recorded_objective, n_trials=n_trials, direction=direction,
                backend=backend, hp_name=hp_name, **kwargs,
            )
        finally:
            self._restore_search_arguments()
            self.hp_search_backend = None

    def _restore_search_arguments(self) -> None:
        for key, value in self._search_originals.items():
            setattr(self.args, key, value)
        self._search_originals = {}

    def call_model_init(self, trial: Any = None) -> MultiTaskModel:
        """`Trainer.call_model_init`, checking that the new model has the tasks the data was prepared for."""
        model = super().call_model_init(trial)
        tasks = [entry.get("name") for entry in (getattr(getattr(model, "config", None), "tasks", None) or [])]
        expected = [t.name for t in getattr(self, "tasks", [])]
        if expected and tasks != expected:
            raise ValueError(f"model_init returned a model with tasks {tasks}; the trainer's tasks are {expected}.")
        return model

    def _hp_search_setup(self, trial: Any) -> None:
        """A trial's arguments (`Trainer._hp_search_setup`, after restoring the search's starting arguments),
        then the loss balancer and running losses built afresh from them; the batch sampler is built from them
        when training starts (`get_train_dataloader`)."""
        searching = self.hp_search_backend is not None and trial is not None
        if searching:
            self._restore_search_arguments()
        super()._hp_search_setup(trial)
        if not searching:
            return
        args = self.args
        args.task_sampling_strategy = sampling_strategy_name(args.task_sampling_strategy)
        if not args.sampling_temperature > 0:
            raise ValueError(
                f"Trial {getattr(trial, 'number', trial)}: sampling_temperature must be > 0, got {args.sampling_temperature}."
            )
        self.loss_balancer = self._build_loss_balancer(args)
        self._record_loss_balancer()
        self._setup_loss_balancer()
        self._task_loss.zero_()
        self._heads_used.zero_()

    # ------------------------------------------------------------------ checkpoints and resume
    def _multitask_state(self) -> dict[str, Any]:
        """The training state a checkpoint needs beyond the Trainer's: sampler settings and epoch, the running
        losses since the last log (summed over processes) and the loss balancer's description (its tensors go
        to `LOSS_BALANCER_STATE_NAME`). Collective: every process calls it."""
        totals = self._task_loss.to(self.args.device)
        tr_loss = getattr(self, "_tr_loss", None)
        since_log = (
            tr_loss.detach().reshape(1).to(self.args.device, torch.float64)
            if isinstance(tr_loss, torch.Tensor)
            else torch.zeros(1, dtype=torch.float64, device=self.args.device)
        )
        if self.args.world_size > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
            since_log = self.accelerator.reduce(since_log, reduction="mean")
        sampler = self._train_batch_sampler
        return {
            "format": 1,
            "world_size": self.args.world_size,
            "sampler": {**sampler.settings(), "epoch": sampler.epoch} if sampler is not None else None,
            "task_loss_since_log": {t.name: row for t, row in zip(self.tasks, totals.cpu().tolist())},
            "loss_since_log": float(since_log.item()),
            "last_logged_step": int(getattr(self, "_globalstep_last_logged", self.state.global_step)),
            "loss_balancer": self.loss_balancer.describe(),
        }

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        """Adds `multitask_state.json` (and the loss balancer's tensors, if it has any) to the checkpoint,
        before the Trainer's files: `trainer_state.json`, written last, marks a complete checkpoint."""
        state = self._multitask_state()
        folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        output_dir = os.path.join(self._get_output_dir(trial=trial), folder)
        if self._train_stream is not None:  # every process: each reads its own shard
            trained = self.state.global_step * self.args.gradient_accumulation_steps
            save_stream_state(self._train_stream, output_dir, self.args.process_index, self.args.world_size, trained)
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            with open(os.path.join(output_dir, MULTITASK_STATE_NAME), "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=2)
            self._save_loss_balancer(output_dir)
        # a checkpoint keeps LoRA adapters unmerged (resuming trains them on); the final save merges them
        unwrapped = self.accelerator.unwrap_model(self.model)
        unwrapped.save_lora_merged = False
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del unwrapped.save_lora_merged

    def _save_loss_balancer(self, output_dir: str) -> None:
        """The balancer's parameters and buffers as safetensors (none for a balancer without tensors)."""
        state = self.loss_balancer.state_dict()
        not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
        if not_tensors:
            raise TypeError(
                f"Loss balancer {self.loss_balancer.name!r} has non-tensor state {not_tensors} (get_extra_state); "
                "checkpoints store a balancer's state as safetensors only: keep it in parameters or buffers."
            )
        if state:
            tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
            save_safetensors(tensors, os.path.join(output_dir, LOSS_BALANCER_STATE_NAME))

    @staticmethod
    def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
        """The newest `checkpoint-<step>` folder of `output_dir` that was written completely (it has
        `trainer_state.json`, the last file a checkpoint gets); None if there is none."""
        if not os.path.isdir(output_dir):
            return None
        steps = {}
        for name in os.listdir(output_dir):
            match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", name)
            if match and os.path.isdir(os.path.join(output_dir, name)):
                steps[int(match.group(1))] = os.path.join(output_dir, name)
        for step in sorted(steps, reverse=True):
            if os.path.isfile(os.path.join(steps[step], TRAINER_STATE_NAME)):
                return steps[step]
            logger.warning(f"Skipping incomplete checkpoint {steps[step]} (no {TRAINER_STATE_NAME}).")
        return None

    def _resolve_checkpoint(self, checkpoint: str | os.PathLike | bool) -> str:
        if checkpoint is True:
            found = self.last_complete_checkpoint(self.args.output_dir)
            if found is None:
                raise ValueError(f"No complete checkpoint found in output directory ({self.args.output_dir}).")
            return found
        checkpoint = os.fspath(checkpoint)
        if not os.path.isdir(checkpoint):
            raise FileNotFoundError(f"resume_from_checkpoint={checkpoint!r} is not a directory.")
        if not os.path.isfile(os.path.join(checkpoint, TRAINER_STATE_NAME)):
            raise ValueError(
                f"{checkpoint} is not a complete checkpoint: it has no {TRAINER_STATE_NAME} (the last file written, "
                "so the run probably stopped while saving it). Resume from an earlier checkpoint, or pass "
                "resume_from_checkpoint=True to use the newest complete one."
            )
        return checkpoint

    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: Any = None,
        ignore_keys_for_eval: list[str] | None = None,
        **kwargs: Any,
    ):
        """`Trainer.train`; `resume_from_checkpoint=True` picks the newest *complete* checkpoint, and a resumed
        run also restores the task batch order (sampler settings and epoch), the running per-task losses and
        the loss balancer's state."""
        self._resume_state = None
        self._resume_checkpoint = None
        if resume_from_checkpoint is not None and resume_from_checkpoint is not False:
            resume_from_checkpoint = self._resolve_checkpoint(resume_from_checkpoint)
            self._resume_checkpoint = resume_from_checkpoint
            path = os.path.join(resume_from_checkpoint, MULTITASK_STATE_NAME)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    self._resume_state = json.load(handle)
                self._check_resumed_loss_balancer(resume_from_checkpoint, self._resume_state)
            else:
                logger.warning(
                    f"{resume_from_checkpoint} has no {MULTITASK_STATE_NAME}: the batch order is replayed from the "
                    "seed, but the per-task losses since the last log are lost."
                )
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint, trial=trial, ignore_keys_for_eval=ignore_keys_for_eval, **kwargs
        )

    def _restore_multitask_state(self) -> None:
        """At the start of a resumed run (after the Trainer reset its counters and loaded the optimizer): check
        the sampler settings against the checkpoint's, restore its epoch, the running losses since the last log
        and the loss balancer's state."""
        state, self._resume_state = self._resume_state, None
        checkpoint, self._resume_checkpoint = self._resume_checkpoint, None
        if checkpoint is not None:
            self._restore_loss_balancer(checkpoint)
            self._restore_stream(checkpoint)
        if state is None:
            return
        saved = state.get("sampler")
        sampler = self._train_batch_sampler
        if saved and sampler is not None:
            current = sampler.settings()
            changed = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
            if changed:
                details = "; ".join(f"{k}: checkpoint {old!r}, now {new!r}" for k, (old, new) in changed.items())
                message = (
                    f"The training data or sampling settings differ from the checkpoint's ({details}), so resuming "
                    "would not continue the same batch order."
                )
                if not self.args.ignore_data_skip:
                    raise ValueError(
                        message + " Restore them, or pass ignore_data_skip=True to resume the weights and optimizer "
                        "anyway (the current epoch then starts over with the new order)."
                    )
                logger.warning(message)
            sampler.set_epoch(int(saved["epoch"]))
        if state.get("world_size") not in (None, self.args.world_size):
            logger.warning(
                f"The checkpoint was written by {state['world_size']} processes and this run has "
                f"{self.args.world_size}: batches are dealt to processes differently from here on."
            )
        self._task_loss.zero_()
        if self.args.process_index == 0:  # totals over processes; log() sums them again
            for index, task in enumerate(self.tasks):
                loss_sum, count = state.get("task_loss_since_log", {}).get(task.name, (0.0, 0))
                self._task_loss[index, 0] = float(loss_sum)
                self._task_loss[index, 1] = float(count)
        tr_loss = getattr(self, "_tr_loss", None)
        if isinstance(tr_loss, torch.Tensor) and "loss_since_log" in state:
            tr_loss += float(state["loss_since_log"])
            self._globalstep_last_logged = min(int(state["last_logged_step"]), self.state.global_step)

    def _restore_stream(self, checkpoint: str) -> None:
        """A resumed streaming run continues every task's stream where the checkpoint left it."""
        if self._train_stream is None:
            return
        saved = load_stream_state(checkpoint, self.args.process_index)
        if saved is None or saved.get("world_size", self.args.world_size) != self.args.world_size:
            message = (
                f"{checkpoint} holds no stream position for process {self.args.process_index} of "
                f"{self.args.world_size} (written by a run without streaming tasks, or by another number of "
                "processes, whose shards differ)"
            )
            if not self.args.ignore_data_skip:
                raise ValueError(
                    message + ", so the streams cannot continue where they were. Resume with the same data and "
                    "number of processes, or pass ignore_data_skip=True to start the streams from their beginning."
                )
            logger.warning(message + ": the streams start from their beginning.")
            return
        self._train_stream.load_state_dict(saved)

    def _check_resumed_loss_balancer(self, checkpoint: str, state: Mapping[str, Any]) -> None:
        """A run resumes with the checkpoint's balancer (checkpoints of hf_mtl 0.1 had only static weights):
        a balancer's parameters are part of the optimizer state it resumes."""
        saved = (state.get("loss_balancer") or {}).get("name", "static")
        if saved != self.loss_balancer.name:
            raise ValueError(
                f"{checkpoint} was trained with loss balancer {saved!r} and this run uses {self.loss_balancer.name!r}. "
                f"Resume with loss_balancer={saved!r} (its settings may change): a balancer's parameters and "
                "their optimizer state are part of the checkpoint."
            )

    def _restore_loss_balancer(self, checkpoint: str) -> None:
        """Load the balancer's tensors from the checkpoint (in place: the optimizer keeps referring to the same
        parameters). Its settings are this run's arguments."""
        balancer = self.loss_balancer
        if not balancer.state_dict():
            return
        path = os.path.join(checkpoint, LOSS_BALANCER_STATE_NAME)
        if not os.path.isfile(path):
            logger.warning(f"{checkpoint} has no {LOSS_BALANCER_STATE_NAME}: loss balancer {balancer.name!r} starts afresh.")
            return
        try:
            balancer.load_state_dict(load_safetensors(path))
        except RuntimeError as err:
            raise ValueError(
                f"{path} does not fit loss balancer {balancer.name!r} (task names or settings changed?): {err}"
            ) from None
        self._record_loss_balancer()

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        """Weights are loaded from safetensors only: a checkpoint holding only pickle weights is refused."""
        has = lambda name: os.path.isfile(os.path.join(resume_from_checkpoint, name))  # noqa: E731
        if not (has(SAFE_WEIGHTS_NAME) or has(SAFE_WEIGHTS_INDEX_NAME)) and (has(WEIGHTS_NAME) or has(WEIGHTS_INDEX_NAME)):
            raise ValueError(
                f"{resume_from_checkpoint} holds its weights only as a pickle ({WEIGHTS_NAME}); hf_mtl loads weights "
                f"from safetensors only. Convert them with a trusted tool to {SAFE_WEIGHTS_NAME}."
            )
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    # ------------------------------------------------------------------ evaluation and prediction
    def evaluate(
        self,
        eval_dataset: Mapping[str, Dataset] | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Evaluate every task with its own metrics.

        Returns `<prefix>_<task>_<metric>` for every task and metric, `<prefix>_<task>_loss` (the head's own
        loss: `task_weights` apply to training only), `<prefix>_average` (mean of the tasks' main metrics),
        `<prefix>_loss` (mean of the task losses), and runtime figures. Metrics are computed on one row per
        raw example; a long NER sentence split into windows is scored once, as the whole sentence.
        """
        if eval_dataset is not None:
            datasets = self._prepare(eval_dataset, "eval", self.processing_class)
        else:
            datasets = self.eval_datasets
        if not datasets:
            raise ValueError("MultiTaskTrainer: evaluation requires an eval_dataset (dict keyed by task name).")
        self._memory_tracker.start()
        start_time = time.time()
        _, metrics = self._run_tasks(datasets, {}, "Evaluation", ignore_keys, metric_key_prefix, start_time)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics

    def predict(
        self,
        test_dataset: Mapping[str, Dataset] | Dataset,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "test",
        task_name: str | None = None,
    ) -> MultiTaskPredictionOutput | PredictionOutput:
        """Predict every task of a dict of datasets (raw or prepared, with or without labels).

        Args:
            test_dataset: a dict (or `DatasetDict`) keyed by task name, or one dataset with `task_name`.
            ignore_keys: output keys of the model to leave out of the predictions.
            metric_key_prefix: metric names start with it (`test_<task>_<metric>`).
            task_name: the task of a single dataset (may be omitted for a one-task model).

        Returns:
            For a dict: a `MultiTaskPredictionOutput`, task name -> `PredictionOutput(predictions, label_ids,
            metrics)`, with `.metrics` holding every task's metrics, `<prefix>_average`, `<prefix>_loss` and
            runtime figures as `evaluate()` names them. For a single dataset: that task's `PredictionOutput`,
            its `metrics` being those merged metrics.

            Rows are in input order, one per raw row (for prepared data: one per example, in the order its
            rows come): sequence tasks give `(rows, num_labels)` logits, token tasks `(sentences, max_words,
            num_labels)` logits with position `w` = word `w` of the sentence (a long sentence's windows
            merged). Rows skipped in preprocessing (empty text, logged with their
            row numbers) and positions past a sentence's end hold -100, as do words without any sub-word
            token. `label_ids` has the same layout, or is None (and there are no metrics) for data without
            the task's label column.
        """
        if isinstance(test_dataset, Mapping):
            if task_name is not None:
                raise ValueError(
                    "task_name is for a single dataset; a dict of datasets names its tasks by its keys "
                    f"({list(test_dataset)})."
                )
            datasets = test_dataset
        else:
            if task_name is None:
                if len(self.tasks) != 1:
                    raise ValueError(
                        f"predict() got one dataset but the model has tasks {list(self.task_by_name)}: pass "
                        "task_name=..., or a dict keyed by task name."
                    )
                task_name = self.tasks[0].name
            datasets = {task_name: test_dataset}
        self._memory_tracker.start()
        start_time = time.time()
        shapes = {}  # raw datasets: rows and longest sentence, so outputs have one row per raw row
        for name, dataset in datasets.items():
            if isinstance(dataset, Dataset) and "input_ids" not in dataset.column_names:
                task = self.task_by_name.get(name)
                words = 0
                if task is not None and task.token_level and task.tokens_column in dataset.column_names:
                    words = max((len(t) for t in dataset[task.tokens_column] if isinstance(t, (list, tuple))), default=0)
                shapes[name] = (len(dataset), words)
        prepared = self._prepare(datasets, "test", self.processing_class, require_labels=False)
        outputs, metrics = self._run_tasks(prepared, shapes, "Prediction", ignore_keys, metric_key_prefix, start_time)
        self.control = self.callback_handler.on_predict(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        if isinstance(test_dataset, Mapping):
            return MultiTaskPredictionOutput(outputs, metrics)
        output = outputs[task_name]
        return PredictionOutput(predictions=output.predictions, label_ids=output.label_ids, metrics=metrics)

    def _run_tasks(
        self,
        datasets: Mapping[str, Dataset],
        shapes: Mapping[str, tuple[int, int]],
        description: str,
        ignore_keys: list[str] | None,
        prefix: str,
        start_time: float,
    ) -> tuple[dict[str, PredictionOutput], dict[str, float]]:
        """Run every task's data through the model: per-task outputs in the raw data's shape, and all metrics
        (per task, `<prefix>_average`, `<prefix>_loss`, runtime)."""
        outputs: dict[str, PredictionOutput] = {}
        metrics: dict[str, float] = {}
        headlines: dict[str, str] = {}  # task -> key of its headline metric (tasks with labels)
        num_samples = 0
        for name, dataset in datasets.items():
            output, headline, samples = self._run_task(
                self.task_by_name[name], dataset, shapes.get(name), description, ignore_keys, prefix
            )
            outputs[name] = output
            metrics.update(output.metrics)
            num_samples += samples
            if headline is not None:
                headlines[name] = headline
        self.headline_metrics = headlines
        losses = [metrics[f"{prefix}_{name}_loss"] for name in datasets if f"{prefix}_{name}_loss" in metrics]
        if headlines:  # tasks with labels (all of them in evaluation)
            mains = [metrics[k] for k in headlines.values() if k in metrics]
            metrics[f"{prefix}_average"] = float(np.mean(mains)) if mains else float("nan")
        if losses:
            metrics[f"{prefix}_loss"] = float(np.mean(losses))
        total_batch_size = self.args.eval_batch_size * self.args.world_size
        metrics.update(
            speed_metrics(prefix, start_time, num_samples=num_samples, num_steps=math.ceil(num_samples / total_batch_size))
        )
        return outputs, metrics

    def _run_task(
        self,
        task: Task,
        dataset: Dataset,
        shape: tuple[int, int] | None,
        description: str,
        ignore_keys: list[str] | None,
        prefix: str,
    ) -> tuple[PredictionOutput, str | None, int]:
        """One task: the evaluation loop, its arrays reshaped to the raw data (`_input_shaped`), its metrics.
        Returns the output, the key of its headline metric (None without labels) and the prepared rows run."""
        task_prefix = f"{prefix}_{task.name}"
        loop = self.evaluation_loop(
            self.get_task_eval_dataloader(task.name, dataset),
            description=f"{description} ({task.name})",
            prediction_loss_only=False,
            ignore_keys=ignore_keys,
            metric_key_prefix=task_prefix,
        )
        predictions, label_ids, scored = self._input_shaped(task, dataset, loop.predictions, loop.label_ids, shape)
        task_metrics = {k: v for k, v in loop.metrics.items() if not k.endswith("_model_preparation_time")}
        headline = None
        if label_ids is not None:
            metric_fn = self._metric_function(task)
            # metrics see the rows that were scored: rows skipped in preprocessing are left out, as in training
            computed = metric_fn(
                EvalPrediction(
                    predictions=nested_map(lambda a: a[scored], predictions), label_ids=label_ids[scored]
                )
            )
            computed = denumpify_detensorize(dict(computed or {}))
            keys = []
            for key, value in computed.items():
                key = key if key.startswith(f"{task_prefix}_") else f"{task_prefix}_{key}"
                task_metrics[key] = value
                keys.append(key)
            if task.name in self.task_metric_fns:
                produced = [k for k in keys if k != f"{task_prefix}_loss"]
                headline = produced[0] if produced else f"{task_prefix}_loss"
            else:
                headline = f"{task_prefix}_{task.main_metric}"
        output = PredictionOutput(predictions=predictions, label_ids=label_ids, metrics=task_metrics)
        return output, headline, loop.num_samples

    def _input_shaped(
        self,
        task: Task,
        dataset: Dataset,
        predictions: Any,
        label_ids: np.ndarray | None,
        shape: tuple[int, int] | None,
    ) -> tuple[Any, np.ndarray | None, np.ndarray]:
        """The evaluation loop's arrays (prepared rows, longest first; tokens of each window) in the raw data's
        shape: one row per example, for token tasks one position per word.

        `shape` is `(raw rows, longest raw sentence in words)` when the trainer prepared the raw data itself
        (prediction): rows then line up with the raw rows, skipped ones included. Otherwise there is one row
        per example of the prepared data, in the order they come. Returns predictions, label ids and the rows
        that were scored (not skipped in preprocessing)."""
        order = self._eval_sampler(dataset).order
        predictions = restore_order(predictions, order)
        label_ids = restore_order(label_ids, order) if label_ids is not None else None
        columns = dataset.column_names
        arrow = dataset.with_format("arrow")  # the bookkeeping columns as arrays, without a row-by-row read
        if EXAMPLE_INDEX_COLUMN in columns:
            example_index = arrow[EXAMPLE_INDEX_COLUMN].to_numpy().astype(np.int64)
        else:  # prepared outside hf_mtl: one row per example
            example_index = np.arange(len(dataset), dtype=np.int64)
        if shape is not None:
            row_of, (num_rows, num_words) = example_index, shape
            scored = np.unique(example_index)
        else:
            row_of, num_rows = rows_in_order(example_index)
            num_words, scored = 0, np.arange(num_rows)
        if not task.token_level:
            predictions = to_examples(predictions, row_of, num_rows)
            label_ids = to_examples(label_ids, row_of, num_rows) if label_ids is not None else None
            return predictions, label_ids, scored
        if isinstance(predictions, (tuple, list)):
            raise ValueError(
                f"Task {task.name!r}: the model returned {len(predictions)} outputs per batch (logits plus e.g. "
                "hidden states or attentions); token predictions are regrouped by word, which needs the logits "
                "alone. Pass ignore_keys=['hidden_states', 'attentions'] or turn those outputs off."
            )
        if WORD_INDEX_COLUMN in columns:
            word_index = arrow[WORD_INDEX_COLUMN]
        elif label_ids is not None:
            word_index = word_index_from_labels(label_ids)
        else:
            raise ValueError(
                f"Task {task.name!r}: the prepared dataset has neither labels nor a {WORD_INDEX_COLUMN!r} column, so "
                "which token predicts which word is unknown. Pass the raw sentences (column "
                f"{task.tokens_column!r}), or prepare them with hf_mtl.prepare_datasets(..., split='test')."
            )
        predictions, label_ids = merge_windows(predictions, label_ids, word_index, row_of, num_rows, num_words)
        return predictions, label_ids, scored

    def _metric_function(self, task: Task) -> Callable[[EvalPrediction], dict[str, float]]:
        """The task's metric function: the user's (given the task name if it has a `task_name` parameter)
        or the built-in one."""
        custom = self.task_metric_fns.get(task.name)
        if custom is None:
            return self._builtin_metrics(task)
        try:
            takes_name = "task_name" in inspect.signature(custom).parameters
        except (TypeError, ValueError):  # builtins and some C callables have no signature
            takes_name = False
        return functools.partial(custom, task_name=task.name) if takes_name else custom

    @staticmethod
    def _builtin_metrics(task: Task) -> Callable[[EvalPrediction], dict[str, float]]:
        def compute(prediction: EvalPrediction) -> dict[str, float]:
            return compute_task_metrics(task, prediction.predictions, prediction.label_ids)

        return compute

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, Any, Any]:
        """`Trainer.prediction_step`, with the head's own loss (no task weight), and token outputs of
        left-padded batches moved to the start of their rows, so position `p` of every row is its token `p`
        (what the prepared `word_index` counts)."""
        self._weigh_losses = False
        try:
            loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        finally:
            self._weigh_losses = True
        mask = inputs.get("attention_mask")
        task = self.task_by_name.get(inputs.get("task_name"))
        if task is not None and task.token_level and mask is not None:
            logits, labels = _left_align(logits, mask), _left_align(labels, mask)
        return loss, logits, labels


def _left_align(value: Any, attention_mask: torch.Tensor) -> Any:
    """Token outputs `(batch, tokens, ...)` of a left-padded batch shifted so each row starts at position 0
    (padding moves to the right, filled with -100); right-padded batches come back unchanged."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return type(value)(_left_align(v, attention_mask) for v in value)
    width = attention_mask.shape[1]
    if not isinstance(value, torch.Tensor) or value.dim() < 2 or value.shape[1] != width:
        return value
    shift = attention_mask.to(value.device).long().argmax(dim=1)  # first real token of each row
    if not bool(shift.any()):
        return value
    index = torch.arange(width, device=value.device).unsqueeze(0) + shift.unsqueeze(1)
    valid = index < width
    index = index.clamp(max=width - 1).reshape(*index.shape, *([1] * (value.dim() - 2))).expand_as(value)
    shifted = value.gather(1, index)
    fill = valid.reshape(*valid.shape, *([1] * (value.dim() - 2))).expand_as(value)
    return shifted.masked_fill(~fill, PAD)


__all__ = ["MultiTaskPredictionOutput", "MultiTaskTrainer"]
