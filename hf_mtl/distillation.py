"""Born-again multi-task distillation (BAM!, Clark et al. 2019): a multi-task student learns each task from
a single-task teacher's predictions as well as from the gold labels, with teacher annealing.

- `DistillationConfig` says which tasks have a teacher (`teachers`: task -> checkpoint), how the weight of the
  gold labels moves over training (`schedule`) and the softmax temperature; pass it to `MultiTaskTrainer(...,
  distillation=...)`. Tasks without a teacher train on gold labels only.
- A teacher is a single-task checkpoint: any `AutoModelForSequenceClassification` /
  `AutoModelForTokenClassification` folder or model object, or one head of an hf_mtl checkpoint
  (`"path::task"`, or `{"path": path, "task": task}`; `{"model": model, "task": task}` for a loaded
  `MultiTaskModel`). Its labels must be the task's, by name (`id2label`); a different order is mapped to the
  task's. It must use the student's tokenizer (same class and vocabulary): it reads the student's prepared
  `input_ids`, so its positions are the student's sub-words.
- Teacher logits are computed once per prepared training row, in eval mode and batches, and stored as the
  `teacher_logits` column of the prepared dataset (`Dataset.map` into `<cache_dir>/<task>-<fingerprint>.arrow`;
  the fingerprint covers the prepared rows, the teacher's weights and the label mapping, so a rerun or a resumed
  run loads the file instead of running the teacher). Under DDP the main process computes it first
  (`TrainingArguments.main_process_first`) and the others load it. Training batches carry the logits
  (`Task.collate_teacher_logits`); no teacher runs during training.
- The loss of a batch of task t with a teacher is `λ · gold_loss + (1 − λ) · distill_loss`, where
  `distill_loss = t.distillation_loss(student_logits, teacher_logits, batch, T)` (the task kind's: soft
  cross-entropy to the teacher's softmax for single-label and per-word token tasks, BCE to its sigmoid for
  multi-label, MSE to its outputs for regression). Soft targets are taken at temperature T and the loss is
  multiplied by T² (Hinton et al. 2015), so gradient sizes do not shrink with T; regression ignores T.
  `schedule="linear"` is BAM's teacher annealing: λ = global_step / max_steps, from 0 (teacher only) to 1
  (gold only); `schedule="constant"` keeps λ = 1 − `teacher_weight`. λ is logged as `distill_gold_weight`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover - tasks.py imports this module for the loss formulas
    from datasets import Dataset

    from .tasks import Task

logger = logging.getLogger(__name__)

#: the prepared training column holding a row's teacher logits (in the task's label order)
TEACHER_LOGITS_COLUMN = "teacher_logits"
#: the values of `DistillationConfig.schedule`
SCHEDULES = ("linear", "constant")
#: what the training logs call λ, the weight of the gold loss
GOLD_WEIGHT_LOG_KEY = "distill_gold_weight"
#: separates the checkpoint folder from the head in the string form of an hf_mtl teacher
HEAD_SEPARATOR = "::"
#: files read for a teacher's validation scores, first found wins (what `Trainer.save_metrics` writes)
SCORE_FILES = ("eval_results.json", "all_results.json")
#: bump when the cached column's layout changes, so old cache files are not read
_CACHE_FORMAT = 1


# ---------------------------------------------------------------------------- loss formulas
def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """`T² · mean over rows of −Σ_c softmax(teacher/T)_c · log_softmax(student/T)_c` (rows: the leading dims)."""
    t = float(temperature)
    targets = torch.softmax(teacher_logits.float() / t, dim=-1)
    log_probs = torch.log_softmax(student_logits.float() / t, dim=-1)
    return -(targets * log_probs).sum(-1).mean() * (t * t)


def soft_binary_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """`T² · mean over all outputs of BCE(sigmoid(student/T), sigmoid(teacher/T))`."""
    t = float(temperature)
    targets = torch.sigmoid(teacher_logits.float() / t)
    return torch.nn.functional.binary_cross_entropy_with_logits(student_logits.float() / t, targets) * (t * t)


# ---------------------------------------------------------------------------- configuration
@dataclass
class DistillationConfig:
    """How a `MultiTaskTrainer` distils single-task teachers into the multi-task student.

    Args:
        teachers: task name -> teacher: a checkpoint folder (`AutoModelFor{Sequence,Token}Classification`, or
            an hf_mtl checkpoint whose head of the same name, or only head, is used), `"folder::task"` for a
            named head of an hf_mtl checkpoint, a loaded model, or a dict `{"path": folder, "task": head}` /
            `{"model": model, "task": head}`. Tasks not listed train on gold labels only.
        schedule: `"linear"` (teacher annealing: the gold weight λ goes from 0 to 1 over training) or
            `"constant"` (λ = 1 − `teacher_weight` throughout).
        temperature: T of the soft targets (softmax / sigmoid of teacher logits / T; the loss is scaled by T²).
        teacher_weight: with `schedule="constant"`, the weight 1 − λ of the distillation loss (default 0.5).
        batch_size: batch size of the one-off teacher inference.
        cache_dir: where the teacher logits are cached (default: `<output_dir>/teacher_logits`).
    """

    teachers: Mapping[str, Any]
    schedule: str = "linear"
    temperature: float = 1.0
    teacher_weight: float | None = None
    batch_size: int = 64
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.teachers, Mapping) or not self.teachers:
            raise ValueError(
                f"DistillationConfig.teachers must be a non-empty dict task name -> teacher, got {self.teachers!r}."
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"DistillationConfig.schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}.")
        temperature = self.temperature
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"DistillationConfig.temperature must be a number > 0, got {self.temperature!r}.")
        if self.teacher_weight is not None:
            if self.schedule != "constant":
                raise ValueError(
                    f"DistillationConfig.teacher_weight is for schedule='constant'; schedule {self.schedule!r} "
                    "moves the weight itself (from teacher to gold over training)."
                )
            if isinstance(self.teacher_weight, bool) or not 0 <= float(self.teacher_weight) <= 1:
                raise ValueError(f"DistillationConfig.teacher_weight must be in [0, 1], got {self.teacher_weight!r}.")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"DistillationConfig.batch_size must be a positive integer, got {self.batch_size!r}.")

    def gold_weight(self, progress: float) -> float:
        """λ, the weight of the gold loss, at `progress` (0 = start of training, 1 = end)."""
        if self.schedule == "constant":
            return 1.0 - float(0.5 if self.teacher_weight is None else self.teacher_weight)
        return float(min(max(progress, 0.0), 1.0))


# ---------------------------------------------------------------------------- teachers
def _label_names(id2label: Mapping[Any, Any]) -> list[str]:
    return [str(id2label[k]) for k in sorted(id2label, key=int)]


def _default_names(names: list[str]) -> bool:
    return names == [f"LABEL_{i}" for i in range(len(names))]


def _fingerprint(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


def _weights_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def _folder_fingerprint(path: str) -> str:
    """The files of a checkpoint folder by name, size and modification time (weights are not read)."""
    entries = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            stat = os.stat(full)
            entries.append((name, stat.st_size, stat.st_mtime_ns))
    return _fingerprint(os.path.abspath(path), entries)


def _is_multitask_config(config: Any) -> bool:
    return hasattr(config, "tasks") and hasattr(config, "get_task")


class Teacher:
    """One task's teacher: where it comes from, its labels (mapped to the task's order), its tokenizer, and its
    model (loaded on first use: a cached run never loads it).

    Args:
        task: the student's task spec this teacher teaches.
        spec: the teacher as `DistillationConfig.teachers` gives it.
    """

    def __init__(self, task: Task, spec: Any):
        self.task = task
        self.head: str | None = None
        self.path: str | None = None
        self._model: Any = None
        model = None
        if isinstance(spec, Mapping):
            unknown = sorted(set(spec) - {"path", "model", "task"})
            if unknown or ("path" in spec) == ("model" in spec):
                raise ValueError(
                    f"Task {task.name!r}: a teacher given as a dict takes 'path' or 'model' (one of them) and "
                    f"optionally 'task' (the head of an hf_mtl checkpoint); got keys {sorted(spec)}."
                )
            self.head = spec.get("task")
            if "path" in spec:
                self.path = os.fspath(spec["path"])
            else:
                model = spec["model"]
        elif isinstance(spec, (str, os.PathLike)):
            self.path = os.fspath(spec)
            if HEAD_SEPARATOR in self.path:
                self.path, self.head = self.path.rsplit(HEAD_SEPARATOR, 1)
        elif isinstance(spec, torch.nn.Module):
            model = spec
        else:
            raise TypeError(
                f"Task {task.name!r}: a teacher is a checkpoint folder, 'folder::task', a model, or a dict with "
                f"'path'/'model' and 'task'; got {type(spec).__name__}."
            )
        if self.path is not None:
            from transformers import AutoConfig

            if not os.path.isdir(self.path):
                raise FileNotFoundError(f"Task {task.name!r}: teacher checkpoint {self.path!r} is not a folder.")
            self.config = AutoConfig.from_pretrained(self.path)
            self.source = self.path + (f"{HEAD_SEPARATOR}{self.head}" if self.head else "")
        else:
            self.config = model.config
            self._model = model
            self.source = str(getattr(model, "name_or_path", "") or "") or f"<{type(model).__name__} object>"
        self.multitask = _is_multitask_config(self.config)
        if self.multitask:
            self.head = self._pick_head()
            entry = self.config.get_task(self.head)
            names, token_level = _label_names(entry["id2label"]), entry["task_type"] == "token_classification"
            problem_type = entry["problem_type"]
        else:
            if self.head is not None and self.path is not None:
                raise ValueError(
                    f"Task {task.name!r}: teacher {self.source!r} names head {self.head!r}, but {self.path} is not an "
                    "hf_mtl checkpoint (heads are named only there)."
                )
            names = _label_names(self.config.id2label)
            named = getattr(self.config, "architectures", None) or [type(model).__name__ if model is not None else ""]
            architectures = " ".join(named)
            token_level = "TokenClassification" in architectures
            problem_type = getattr(self.config, "problem_type", None)
        self.label_names = names
        self._check_kind(token_level, problem_type)
        self.permutation = self._label_permutation(names)
        self.scores = self._read_scores()

    # ------------------------------------------------------------------ checks
    def _pick_head(self) -> str:
        heads = list(self.config.task_names)
        if self.head is None:
            if getattr(self.config, "view_task", None) in heads:  # a single-task view answers for its own head
                return self.config.view_task
            if self.task.name in heads:
                return self.task.name
            if len(heads) == 1:
                return heads[0]
            raise ValueError(
                f"Task {self.task.name!r}: teacher {self.source!r} is an hf_mtl checkpoint with heads {heads} and none "
                f"is named {self.task.name!r}; name the head ('folder::head' or {{'path': ..., 'task': head}})."
            )
        if self.head not in heads:
            raise ValueError(
                f"Task {self.task.name!r}: teacher {self.source!r} has no head {self.head!r}; its heads are {heads}."
            )
        return self.head

    def _check_kind(self, token_level: bool, problem_type: str | None) -> None:
        task = self.task
        if token_level != task.token_level:
            want = "a token-classification" if task.token_level else "a sequence-level"
            raise ValueError(
                f"Task {task.name!r} is a {task.task_type} task and needs {want} teacher; {self.source!r} is not one."
            )
        if not task.token_level and problem_type and problem_type != task.problem_type:
            raise ValueError(
                f"Task {task.name!r} is {task.problem_type}, but its teacher {self.source!r} is {problem_type}."
            )

    def _label_permutation(self, names: list[str]) -> list[int] | None:
        """Teacher output index of each of the task's labels (None: same order)."""
        task = self.task
        wanted = [str(task.id2label[i]) for i in range(task.num_labels)]
        if task.labels is None or (task.problem_type == "regression" and _default_names(names)):
            if len(names) != len(wanted):  # unnamed outputs (a regression score): only their number can be compared
                raise ValueError(
                    f"Task {task.name!r} has {len(wanted)} output(s) and its teacher {self.source!r} has {len(names)}."
                )
            return None
        if sorted(names) != sorted(wanted):
            raise ValueError(
                f"Task {task.name!r}: the teacher {self.source!r} has labels {names}, the task has labels {wanted}; a "
                "teacher must predict the same label names (their order may differ)."
            )
        permutation = [names.index(label) for label in wanted]
        return None if permutation == list(range(len(wanted))) else permutation

    def check_tokenizer(self, tokenizer: Any) -> None:
        """The teacher reads the student's `input_ids`: its tokenizer must be the student's (class and
        vocabulary). A teacher whose tokenizer cannot be found is assumed to share the student's (warned)."""
        from .encoders import load_tokenizer_for

        owner = self._model if self._model is not None else _ModelLocation(self.path, self.config)
        try:
            own = load_tokenizer_for(owner)
        except ValueError:
            logger.warning(
                f"Task {self.task.name!r}: the tokenizer of teacher {self.source!r} was not found; assuming it is the "
                "student's (the teacher reads the student's token ids)."
            )
            return
        mine, theirs = type(tokenizer).__name__.removesuffix("Fast"), type(own).__name__.removesuffix("Fast")
        if mine != theirs or tokenizer.get_vocab() != own.get_vocab():
            raise ValueError(
                f"Task {self.task.name!r}: the teacher {self.source!r} uses another tokenizer ({theirs}, "
                f"{len(own.get_vocab())} tokens) than the student ({mine}, {len(tokenizer.get_vocab())} tokens). "
                "The teacher's logits are computed on the student's sub-word tokens, so both must share one "
                "tokenizer (class and vocabulary): train the teacher on the student's encoder."
            )

    def _read_scores(self) -> dict[str, float]:
        """The teacher's validation metrics as saved next to it (`eval_results.json`), or {}."""
        if self.path is None:
            return {}
        for name in SCORE_FILES:
            path = os.path.join(self.path, name)
            if os.path.isfile(path):
                try:
                    with open(path, encoding="utf-8") as handle:
                        data = json.load(handle)
                except (OSError, ValueError):
                    return {}
                return {k: v for k, v in data.items() if k.startswith("eval_") and isinstance(v, (int, float))}
        return {}

    # ------------------------------------------------------------------ inference
    @property
    def fingerprint(self) -> str:
        """Identifies the teacher's weights and label mapping (for the cache file's name)."""
        weights = _weights_fingerprint(self._model) if self.path is None else _folder_fingerprint(self.path)
        return _fingerprint(weights, self.head, self.label_names, self.permutation)

    @property
    def model(self) -> Any:
        if self._model is None:
            if self.multitask:
                from .modeling_multitask import MultiTaskModel

                self._model = MultiTaskModel.from_pretrained(self.path)
            else:
                from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

                auto = AutoModelForTokenClassification if self.task.token_level else AutoModelForSequenceClassification
                self._model = auto.from_pretrained(self.path)
        return self._model

    def release(self) -> None:
        """Drop a teacher loaded from its folder (it loads again if needed)."""
        if self.path is not None:
            self._model = None

    def logits(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The teacher's logits for a padded batch of the student's inputs, in the task's label order."""
        model = self.model
        accepted = inspect.signature(model.forward).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            inputs = {k: v for k, v in inputs.items() if k in accepted}  # e.g. no token_type_ids for DistilBERT
        if self.multitask and hasattr(model.config, "tasks"):
            output = model(**inputs, task_name=self.head)
        else:
            output = model(**inputs)
        logits = output.logits if hasattr(output, "logits") else output[0]
        want = 3 if self.task.token_level else 2
        if logits.dim() != want:
            raise ValueError(
                f"Task {self.task.name!r}: teacher {self.source!r} returned logits of shape {tuple(logits.shape)}; "
                f"a {self.task.task_type} teacher gives {want}-d logits."
            )
        if self.permutation is not None:
            logits = logits[..., self.permutation]
        return logits.float()

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "head": self.head if self.multitask else None, "scores": dict(self.scores)}


class _HashingSink:
    """A write-only file that only hashes what is written to it."""

    def __init__(self):
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _rows_fingerprint(dataset: Dataset) -> str:
    """The content of a prepared dataset (every column: the cache file holds them all), streamed through a hash
    as Arrow IPC: the datasets' own fingerprints of in-memory data are not stable across processes."""
    import pyarrow as pa

    table = dataset.with_format("arrow")[:]
    sink = _HashingSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as writer:
        for batch in table.to_batches(max_chunksize=10_000):
            writer.write_batch(batch)
    return sink.digest.hexdigest()[:32]


class _ModelLocation:
    """What `hf_mtl.encoders.tokenizer_sources` reads of a model, for a teacher not loaded yet."""

    def __init__(self, path: str, config: Any):
        self.name_or_path = path
        self.config = config


# ---------------------------------------------------------------------------- the trainer's part
class Distiller:
    """What `MultiTaskTrainer` does for distillation: the teachers, their cached logits, the loss mix.

    Args:
        config: the `DistillationConfig`.
        tasks: the student's task specs.
        tokenizer: the student's tokenizer (teachers must share it).
    """

    def __init__(self, config: DistillationConfig, tasks: list[Task], tokenizer: Any):
        if not isinstance(config, DistillationConfig):
            raise TypeError(f"distillation must be a hf_mtl.distillation.DistillationConfig, got {type(config).__name__}.")
        by_name = {t.name: t for t in tasks}
        unknown = [name for name in config.teachers if name not in by_name]
        if unknown:
            raise KeyError(
                f"DistillationConfig.teachers names task(s) {unknown} that the model does not have; its tasks are "
                f"{list(by_name)}."
            )
        from .tasks import Task

        lacking = [n for n in config.teachers if type(by_name[n]).distillation_loss is Task.distillation_loss]
        if lacking:
            raise TypeError(
                f"Task(s) {lacking} have a teacher, but their kind has no distillation loss "
                f"({', '.join(sorted({type(by_name[n]).__name__ for n in lacking}))}.distillation_loss is not "
                "implemented): train them on gold labels only, or implement it."
            )
        self.config = config
        self.tokenizer = tokenizer
        self.teachers = {name: Teacher(by_name[name], spec) for name, spec in config.teachers.items()}
        for teacher in self.teachers.values():
            teacher.check_tokenizer(tokenizer)
        #: number of teacher forward passes run by this distiller (0 when every task's logits came from cache)
        self.teacher_forwards = 0

    # ------------------------------------------------------------------ cache
    def add_teacher_logits(self, datasets: Mapping[str, Dataset], args: Any) -> dict[str, Dataset]:
        """The prepared training datasets with a `teacher_logits` column for every task that has a teacher,
        computed once (by the main process first) and cached under `cache_dir`."""
        cache_dir = self.config.cache_dir or os.path.join(args.output_dir, "teacher_logits")
        out = dict(datasets)
        for name, teacher in self.teachers.items():
            if name not in out:
                logger.warning(f"Task {name!r} has a teacher but no training data: its teacher is not used.")
                continue
            with args.main_process_first(desc=f"teacher logits of task {name!r}"):
                out[name] = self._with_logits(teacher, out[name], cache_dir, args.device)
        return out

    def _with_logits(self, teacher: Teacher, dataset: Dataset, cache_dir: str, device: Any) -> Dataset:
        from datasets import Features

        from .preprocessing import MODEL_INPUT_COLUMNS

        if TEACHER_LOGITS_COLUMN in dataset.column_names:
            dataset = dataset.remove_columns(TEACHER_LOGITS_COLUMN)
        fingerprint = _fingerprint(_CACHE_FORMAT, _rows_fingerprint(dataset), teacher.fingerprint)
        os.makedirs(cache_dir, exist_ok=True)
        cache_file = os.path.join(cache_dir, f"{teacher.task.name}-{fingerprint}.arrow")
        features = Features({**dataset.features, TEACHER_LOGITS_COLUMN: teacher.task.teacher_logits_feature()})
        inputs = [c for c in MODEL_INPUT_COLUMNS if c in dataset.column_names]
        state: dict[str, Any] = {}

        def predict(batch: dict[str, list]) -> dict[str, list]:
            if not state:  # first batch not found in the cache: load and place the teacher once
                model = teacher.model
                state.update(model=model, training=model.training, device=next(model.parameters()).device)
                model.eval()
                model.to(device)
            features_in = [{k: batch[k][i] for k in inputs} for i in range(len(batch["input_ids"]))]
            padded = self.tokenizer.pad(features_in, padding=True, return_tensors="pt")
            padded = {k: v.to(device) for k, v in padded.items()}
            with torch.no_grad():
                logits = teacher.logits(padded).cpu().numpy()
            self.teacher_forwards += 1
            if not teacher.task.token_level:
                return {TEACHER_LOGITS_COLUMN: logits.tolist()}
            left = getattr(self.tokenizer, "padding_side", "right") == "left"
            width = logits.shape[1]
            out = []
            for row, ids in zip(logits, batch["input_ids"]):
                n = len(ids)
                out.append((row[width - n :] if left else row[:n]).tolist())
            return {TEACHER_LOGITS_COLUMN: out}

        try:
            return dataset.map(
                predict,
                batched=True,
                batch_size=self.config.batch_size,
                features=features,
                cache_file_name=cache_file,
                load_from_cache_file=True,
                new_fingerprint=fingerprint,
                desc=f"Teacher logits ({teacher.task.name})",
            )
        finally:
            if state:  # give the memory back: the teacher is not needed during training
                state["model"].to(state["device"])
                state["model"].train(state["training"])
                if teacher.path is not None:
                    teacher.release()

    # ------------------------------------------------------------------ loss
    def gold_weight(self, state: Any) -> float:
        """λ at the trainer's current step (`global_step / max_steps`)."""
        max_steps = int(getattr(state, "max_steps", 0) or 0)
        progress = state.global_step / max_steps if max_steps > 0 else 0.0
        return self.config.gold_weight(progress)

    def loss(
        self,
        task: Task,
        gold_loss: torch.Tensor,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        batch: Mapping[str, Any],
        state: Any,
    ) -> torch.Tensor:
        """`λ · gold_loss + (1 − λ) · distillation_loss` for a batch of a task with a teacher."""
        weight = self.gold_weight(state)
        if weight >= 1.0:
            return gold_loss
        distill = task.distillation_loss(student_logits, teacher_logits, batch, float(self.config.temperature))
        return weight * gold_loss + (1.0 - weight) * distill

    def log_values(self, state: Any) -> dict[str, float]:
        return {GOLD_WEIGHT_LOG_KEY: round(self.gold_weight(state), 6)}

    def describe(self) -> dict[str, Any]:
        """For the run record and the model card: the schedule, temperature and each task's teacher."""
        config = self.config
        mix = "a distilled task's batch loss is λ · (gold-label loss) + (1 − λ) · (distillation loss)"
        if config.schedule == "linear":
            schedule = (f"Teacher annealing: {mix}, with λ rising linearly over training from 0 (the teacher's "
                        "predictions only) at the first step to 1 (gold labels only) at the last.")
        else:
            schedule = f"{mix[0].upper()}{mix[1:]}, with λ = {config.gold_weight(0.0):g} throughout."
        targets = (f"The distillation loss is the cross-entropy to the teacher's softmax at temperature T = "
                   f"{float(config.temperature):g} (per word for token tasks; binary cross-entropy to its sigmoid for "
                   "multi-label tasks), times T²; regression heads match the teacher's outputs (mean squared error).")
        return {
            "description": f"{schedule} {targets}",
            "schedule": config.schedule,
            "temperature": float(config.temperature),
            "teacher_weight": None if config.schedule != "constant" else 1.0 - config.gold_weight(0.0),
            "teachers": {name: teacher.describe() for name, teacher in self.teachers.items()},
        }


__all__ = [
    "GOLD_WEIGHT_LOG_KEY",
    "TEACHER_LOGITS_COLUMN",
    "DistillationConfig",
    "Distiller",
    "Teacher",
    "soft_binary_cross_entropy",
    "soft_cross_entropy",
]
