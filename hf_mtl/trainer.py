"""`MultiTaskTrainer`: a `transformers.Trainer` that routes each single-task batch to its head.

What it adds to the plain Trainer, and nothing more:
- datasets are dicts keyed by task name; raw ones are tokenized and label-aligned (`prepare_datasets`);
- training batches come from `MultiTaskBatchSampler` (one task per batch), wired in `get_train_dataloader`;
- each batch's loss is its head's per-batch mean times the task's weight; logs carry each task's
  running loss as `<task>_loss`;
- `evaluate()` scores every task with its own metrics (`eval_<task>_<metric>`) and adds `eval_average`
  (mean of the tasks' main metrics) and `eval_loss` (mean of their losses), so
  `metric_for_best_model="average"` works with `load_best_model_at_end`;
- under DDP, heads a step does not use join the graph cheaply instead of DDP's unused-parameter scan, and
  their zero gradients are dropped before the optimizer step (docs/distributed.md); a launcher that starts
  several processes which do not form one group (CPU without `use_cpu=True`) is an error;
- checkpoints carry `multitask_state.json` (sampler settings and epoch, running per-task losses), so a
  resumed run continues the same batch order and loss history; `resume_from_checkpoint=True` skips
  checkpoints cut short while being written, and weights load from safetensors only.
"""

from __future__ import annotations

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
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, EvalPrediction, speed_metrics
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, logging

from .collator import MultiTaskDataCollator
from .hub import MultiTaskHubMixin
from .metrics import compute_task_metrics
from .modeling_multitask import MultiTaskModel
from .preprocessing import effective_max_length, prepare_datasets
from .sampling import MultiTaskBatchSampler, MultiTaskDataset
from .tasks import Task, tasks_from_config
from .training_args import MultiTaskTrainingArguments

logger = logging.get_logger(__name__)

#: written into every checkpoint: batch sampler settings and epoch, running losses since the last log
MULTITASK_STATE_NAME = "multitask_state.json"

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


class _MultiTaskStateCallback(TrainerCallback):
    """Internal: keeps the sampler's epoch, the resumed state and unused heads' gradients in step with the loop."""

    def __init__(self, trainer: MultiTaskTrainer):
        self._trainer = weakref.ref(trainer)

    def on_train_begin(self, args, state, control, **kwargs):
        self._trainer()._restore_multitask_state()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._trainer()._set_sampler_epoch(state)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._trainer()._drop_unused_head_grads()


class MultiTaskTrainer(MultiTaskHubMixin, Trainer):
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
        if getattr(args, "ddp_find_unused_parameters", None) is None:
            # Heads a step does not use take part through `_unused_heads_term` instead of DDP's graph scan.
            args.ddp_find_unused_parameters = False
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
        self._task_loss = torch.zeros(len(self.tasks), 2, dtype=torch.float32)
        self._task_index = {t.name: i for i, t in enumerate(self.tasks)}
        self._check_distributed_launch()
        # tasks whose head ran on this process since the last optimizer step (see `_drop_unused_head_grads`)
        self._heads_used = torch.zeros(len(self.tasks), dtype=torch.float32)
        self._train_batch_sampler: MultiTaskBatchSampler | None = None
        self._resume_state: dict[str, Any] | None = None
        self.add_callback(_MultiTaskStateCallback(self))

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
        sampler = self.make_batch_sampler(self.train_dataset)
        self._train_batch_sampler = sampler
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
            index = self._task_index[task_name]
            if self._task_loss.device != loss.device:  # accumulate where the loss lives: no per-step sync
                self._task_loss = self._task_loss.to(loss.device)
            self._task_loss[index, 0] += loss.detach().float()
            self._task_loss[index, 1] += 1
            self._heads_used[index] += 1
        weight = self.task_weights.get(task_name, 1.0)
        if weight != 1.0:
            loss = loss * weight
        if model.training and self._touches_unused_heads(model):
            loss = loss + self._unused_heads_term(model, task_name)
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

    # ------------------------------------------------------------------ distributed training
    def _check_distributed_launch(self) -> None:
        """Fail when a launcher started several processes that do not form one training group (each would
        train and save its own model; on CPU this is what happens without `use_cpu=True`)."""
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

    def _set_sampler_epoch(self, state: Any) -> None:
        """Select the epoch's batch order on the sampler itself: accelerate's `set_epoch` does not reach it
        through two wrappers (`SkipBatchSampler` around `BatchSamplerShard` when a multi-process run resumes)."""
        if self._train_batch_sampler is not None:
            self._train_batch_sampler.set_epoch(int(math.floor(state.epoch or 0)))

    # ------------------------------------------------------------------ checkpoints and resume
    def _multitask_state(self) -> dict[str, Any]:
        """The training state a checkpoint needs beyond the Trainer's: sampler settings and epoch, and the
        running losses since the last log (summed over processes). Collective: every process calls it."""
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
        }

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        """Adds `multitask_state.json` to the checkpoint, before the Trainer's files: `trainer_state.json`,
        written last, marks a complete checkpoint."""
        state = self._multitask_state()
        if self.args.should_save:
            folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            output_dir = os.path.join(self._get_output_dir(trial=trial), folder)
            os.makedirs(output_dir, exist_ok=True)
            with open(os.path.join(output_dir, MULTITASK_STATE_NAME), "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=2)
        super()._save_checkpoint(model, trial)

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
        run also restores the task batch order (sampler settings and epoch) and the running per-task losses."""
        self._resume_state = None
        if resume_from_checkpoint is not None and resume_from_checkpoint is not False:
            resume_from_checkpoint = self._resolve_checkpoint(resume_from_checkpoint)
            path = os.path.join(resume_from_checkpoint, MULTITASK_STATE_NAME)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    self._resume_state = json.load(handle)
            else:
                logger.warning(
                    f"{resume_from_checkpoint} has no {MULTITASK_STATE_NAME}: the batch order is replayed from the "
                    "seed, but the per-task losses since the last log are lost."
                )
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint, trial=trial, ignore_keys_for_eval=ignore_keys_for_eval, **kwargs
        )

    def _restore_multitask_state(self) -> None:
        """At the start of a resumed run (after the Trainer reset its counters): check the sampler settings
        against the checkpoint's, restore its epoch and the running losses since the last log."""
        state, self._resume_state = self._resume_state, None
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

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        """Weights are loaded from safetensors only: a checkpoint holding only pickle weights is refused."""
        has = lambda name: os.path.isfile(os.path.join(resume_from_checkpoint, name))  # noqa: E731
        if not (has(SAFE_WEIGHTS_NAME) or has(SAFE_WEIGHTS_INDEX_NAME)) and (has(WEIGHTS_NAME) or has(WEIGHTS_INDEX_NAME)):
            raise ValueError(
                f"{resume_from_checkpoint} holds its weights only as a pickle ({WEIGHTS_NAME}); hf_mtl loads weights "
                f"from safetensors only. Convert them with a trusted tool to {SAFE_WEIGHTS_NAME}."
            )
        super()._load_from_checkpoint(resume_from_checkpoint, model)

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
