"""Model cards for multi-task models: `README.md` with YAML front matter (library, base model, tags,
datasets and a `model-index` with one result per task and metric) rendered from the Jinja2 template
shipped in `hf_mtl/templates/model_card.md.j2` (its variables are documented in `model_cards/README.md`).

`card_info_from_trainer(trainer)` collects what the card shows after training: the model, the training
arguments and log history, and the trainer's record of the run (`trainer.run_record`, a
`hf_mtl.run_record.RunRecord`: data sizes, batch mix, data sources and the `CardSettings` of free-form fields);
`card_info_from_model(model)` is the fallback for a model without training records;
`render_model_card(info)` returns the README text and `write_model_card(dir, info)` saves it.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from .run_record import RunRecord
from .tasks import Task, tasks_from_config

CARD_FILENAME = "README.md"
TEMPLATE_NAME = "model_card.md.j2"
#: tag that marks a card written by hf_mtl (an hf_mtl card in a model folder is kept when pushing)
HF_MTL_TAG = "hf_mtl"

#: metric display order and names (token classification: entity F1 by conlleval's rules first, then the
#: strict figures; its `accuracy` is word accuracy)
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "macro_f1": "Macro F1",
    "micro_f1": "Micro F1",
    "subset_accuracy": "Subset accuracy",
    "f1": "F1",
    "precision": "Precision",
    "recall": "Recall",
    "strict_f1": "Strict F1",
    "strict_precision": "Strict precision",
    "strict_recall": "Strict recall",
    "pearson": "Pearson r",
    "spearman": "Spearman rho",
    "mse": "MSE",
}
_NOT_METRICS = ("loss", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time")

DEFAULT_INTENDED_USE = (
    "Predicting the tasks above ({tasks}) for short texts similar to the training data listed above, for research, "
    "prototyping, or as a starting point for further fine-tuning. One call returns every head's prediction."
)
DEFAULT_LIMITATIONS = (
    "Each head is only as good as its training data: expect lower accuracy on text from other domains, "
    "periods or registers than the data listed above, and check the model on your own data before relying "
    "on it. The model inherits the biases of its pretrained encoder and of the training data. Token "
    "classification predicts one tag per word, as split by the tokenizer's pre-tokenizer."
)


@dataclass(frozen=True)
class CardSettings:
    """The card's free-form fields (a recipe's `card:` section), and the example text of its usage snippet."""

    model_name: str | None = None
    license: str | None = None
    language: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    #: the text of the usage snippet (a recipe's first `predict:` text); None: a generic example
    example_text: str | None = None


@dataclass
class TaskCardInfo:
    """One task as the card shows it."""

    name: str
    task_type: str
    problem_type: str
    labels: list[str]
    main_metric: str
    data: str = "-"
    dataset_id: str | None = None
    dataset_config: str | None = None
    dataset_split: str | None = None
    num_train: int | None = None
    num_eval: int | None = None
    weight: float = 1.0
    batch_share: float | None = None
    #: token classification: the labels' tag scheme (IOB2, IOBES, ...), None when they mark no entities
    tag_scheme: str | None = None
    #: what the card calls the task's kind, and the Hub's task id for `model-index` (the task kind's wording:
    #: `Task.card_kind`, `Task.hub_task_type`)
    kind: str = "text classification"
    hub_task_type: str = "text-classification"

    @classmethod
    def from_task(cls, task: Task, **kwargs: Any) -> TaskCardInfo:
        labels = list(task.labels or [])
        kwargs.setdefault("tag_scheme", getattr(task, "tag_scheme", None))
        kwargs.setdefault("kind", task.card_kind)
        kwargs.setdefault("hub_task_type", task.hub_task_type)
        return cls(name=task.name, task_type=task.task_type, problem_type=task.problem_type, labels=labels,
                   main_metric=task.main_metric, **kwargs)


@dataclass
class ModelCardInfo:
    """Everything the card template shows."""

    model_name: str
    tasks: list[TaskCardInfo]
    base_model: str | None = None
    eval_results: Mapping[str, float] = field(default_factory=dict)
    eval_split: str = "validation"
    #: the sampling strategy's and the loss balancer's `describe()` (name, settings, a sentence for the card)
    sampling: Mapping[str, Any] = field(default_factory=dict)
    loss_balancer: Mapping[str, Any] = field(default_factory=dict)
    #: distillation from single-task teachers (`hf_mtl.distillation.Distiller.describe`), empty without it
    distillation: Mapping[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    #: the LoRA settings the encoder was trained with (`config.lora`), if any, and the run's parameter counts
    lora: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, int] = field(default_factory=dict)
    repo_id: str | None = None
    license: str | None = None
    language: Sequence[str] = ()
    tags: Sequence[str] = ()
    datasets: Sequence[str] = ()
    description: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    plot: str | None = None
    example_text: str = "The new phone is fast and the battery lasts all day."

    # ---------------------------------------------------------------- derived views for the template
    def task_metrics(self) -> dict[str, dict[str, float]]:
        """`eval_<task>_<metric>` results grouped as `{task: {metric: value}}`."""
        names = sorted((t.name for t in self.tasks), key=len, reverse=True)  # longest first: `ner_x` before `ner`
        out: dict[str, dict[str, float]] = {t.name: {} for t in self.tasks}
        for key, value in self.eval_results.items():
            if not key.startswith("eval_") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            rest = key[len("eval_"):]
            for name in names:
                if rest.startswith(name + "_"):
                    metric = rest[len(name) + 1:]
                    if metric and not metric.endswith(_NOT_METRICS) and math.isfinite(value):
                        out[name][metric] = float(value)
                    break
        return out

    @property
    def metric_columns(self) -> list[str]:
        found = {m for metrics in self.task_metrics().values() for m in metrics}
        ordered = [m for m in METRIC_NAMES if m in found] + sorted(found - set(METRIC_NAMES))
        return ordered

    @property
    def metric_column_titles(self) -> list[str]:
        return [METRIC_NAMES.get(m, m) for m in self.metric_columns]

    @property
    def results_table(self) -> list[dict[str, Any]]:
        rows = []
        metrics = self.task_metrics()
        for task in self.tasks:
            if not metrics[task.name]:
                continue
            cells = []
            for metric in self.metric_columns:
                value = metrics[task.name].get(metric)
                text = "-" if value is None else f"{value:.4f}"
                cells.append(f"**{text}**" if metric == task.main_metric and value is not None else text)
            rows.append({"task": task.name, "cells": cells})
        return rows

    @property
    def entity_tasks(self) -> list[TaskCardInfo]:
        """Token-classification tasks with entity scores in the results (the card says how they are counted)."""
        metrics = self.task_metrics()
        return [t for t in self.tasks if t.tag_scheme and "f1" in metrics[t.name]]

    @property
    def average(self) -> float | None:
        value = self.eval_results.get("eval_average")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    @property
    def sampling_description(self) -> str:
        """How batches were spread over tasks and how their losses were combined, in the sampling strategy's
        and the loss balancer's own words (each describes itself: the card knows no strategy or balancer)."""
        sampling = self.sampling.get("description") or "The sampling strategy was not recorded."
        balancing = self.loss_balancer.get("description") or "Each batch's loss is its task's loss times the task's loss weight."
        return f"{sampling} {balancing}"

    @property
    def distillation_description(self) -> str | None:
        """How the distilled tasks' losses mixed teacher and gold labels (the distiller's own words), or None."""
        return self.distillation.get("description") if self.distillation else None

    @property
    def teachers(self) -> list[dict[str, str]]:
        """Rows `{task, source, scores}` of the distilled tasks: the teacher's checkpoint and its validation
        scores as saved next to it (`-` when unknown)."""
        main = {t.name: t.main_metric for t in self.tasks}
        rows = []
        for task, teacher in (self.distillation.get("teachers") or {}).items():
            scores = _teacher_scores(teacher.get("scores") or {}, teacher.get("head") or task, main.get(task))
            rows.append({"task": task, "source": teacher.get("source") or "-", "scores": scores or "-"})
        return rows

    @property
    def parameters_description(self) -> str | None:
        """How much of the model was trained: the LoRA settings and the trainable parameter count (None when
        neither was recorded)."""
        counts = self.parameters
        share = (
            f"{counts['trainable']:,} of {counts['total']:,} parameters trainable "
            f"({100 * counts['trainable'] / counts['total']:.2f}%)"
            if counts.get("total") else None
        )
        if not self.lora:
            return f"Full fine-tuning: {share}." if share else None
        settings = {k: v for k, v in self.lora.items() if k != "merged"}
        targets = settings.pop("target_modules", None)
        text = (
            f"LoRA on the encoder (r={settings.pop('r', '?')}, alpha={settings.pop('lora_alpha', '?')}, "
            f"dropout={settings.pop('lora_dropout', '?')}, target modules: "
            f"{', '.join(f'`{t}`' for t in targets) if isinstance(targets, list) else targets}"
        )
        text += "".join(f", {k}={v}" for k, v in settings.items()) + "); the task heads were fully trained"
        text += f": {share}." if share else "."
        merged = self.lora.get("merged")
        text += (" The adapters are merged into the encoder weights: the model runs like a plain one." if merged
                 else " The adapters are saved separately (loading needs `peft`; `hf-mtl merge` merges them).")
        return text

    def eval_result_entries(self) -> list[EvalResult]:
        """`model-index` entries: one per task and metric."""
        entries = []
        metrics = self.task_metrics()
        for task in self.tasks:
            for metric in [m for m in self.metric_columns if m in metrics[task.name]]:
                entries.append(
                    EvalResult(
                        task_type=task.hub_task_type,
                        task_name=task.name,
                        dataset_type=task.dataset_id or _slug(task.data if task.data != "-" else task.name),
                        dataset_name=task.data if task.data != "-" else task.name,
                        dataset_config=task.dataset_config,
                        dataset_split=task.dataset_split or self.eval_split,
                        metric_type=metric,
                        metric_name=METRIC_NAMES.get(metric, metric),
                        metric_value=round(metrics[task.name][metric], 4),
                    )
                )
        return entries

    def card_data(self) -> ModelCardData:
        """The YAML front matter."""
        task_tags = sorted({t.hub_task_type for t in self.tasks})
        tags = list(dict.fromkeys([HF_MTL_TAG, "multi-task", *task_tags, *self.tags]))
        datasets = list(dict.fromkeys([*(t.dataset_id for t in self.tasks if t.dataset_id), *self.datasets]))
        results = self.eval_result_entries()
        return ModelCardData(
            library_name="transformers",
            base_model=self.base_model if self.base_model and not _is_local_path(self.base_model) else None,
            tags=tags,
            datasets=datasets or None,
            license=self.license,
            language=list(self.language) or None,
            model_name=self.model_name,
            eval_results=results or None,
            metrics=self.metric_columns or None,
        )


def _teacher_scores(scores: Mapping[str, Any], head: str, main_metric: str | None) -> str:
    """`eval_<head>_<metric>` (hf_mtl teachers) or `eval_<metric>` (plain Trainer) scores as "metric 0.1234, ...",
    the task's headline metric alone when present."""
    found = {}
    for key, value in scores.items():
        metric = key.removeprefix("eval_")
        metric = metric.removeprefix(f"{head}_") if metric.startswith(f"{head}_") else metric
        if metric != "average" and not metric.endswith(_NOT_METRICS) and isinstance(value, (int, float)):
            found[metric] = float(value)
    if main_metric in found:
        found = {main_metric: found[main_metric]}
    return ", ".join(f"{METRIC_NAMES.get(m, m)} {v:.4f}" for m, v in found.items())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "data"


def _is_local_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith((".", "~")) or os.path.isdir(name)


# ---------------------------------------------------------------------------- rendering
def template_text() -> str:
    """The card template shipped in the package."""
    return resources.files("hf_mtl").joinpath("templates", TEMPLATE_NAME).read_text(encoding="utf-8")


def _model_link(name: str) -> str:
    """A Hub model as a link; a local folder by its name only (its path means nothing to readers)."""
    if _is_local_path(name):
        return f"`{Path(name).name}` (a local model)"
    return f"[`{name}`](https://huggingface.co/{name})"


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["cell"] = lambda value: str(value).replace("|", "\\|").replace("\n", " ")
    env.filters["code"] = lambda value: f"`{value}`"
    env.filters["score"] = lambda value: f"{value:.4f}"
    env.filters["percent"] = lambda value: "-" if value is None else f"{100 * value:.1f}%"
    env.filters["model_link"] = _model_link
    env.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


def render_model_card(info: ModelCardInfo, *, versions: Mapping[str, str] | None = None) -> str:
    """The README.md text (front matter + body) for `info`.

    `versions` (package -> version) fills "Framework versions"; default: the installed versions.
    """
    task_list = ", ".join(t.name for t in info.tasks)
    view = _TemplateView(info, task_list, versions)
    template = _environment().from_string(template_text())
    text = template.render(card=view, front_matter=info.card_data().to_yaml())
    return re.sub(r"\n{3,}", "\n\n", text).lstrip()


class _TemplateView:
    """`info` with defaults filled in for the template (repo id, intended use, versions, ...)."""

    def __init__(self, info: ModelCardInfo, task_list: str, versions: Mapping[str, str] | None = None):
        self._info = info
        self.repo_id = info.repo_id or info.model_name
        self.intended_use = info.intended_use or DEFAULT_INTENDED_USE.format(tasks=task_list)
        self.limitations = info.limitations or DEFAULT_LIMITATIONS
        self.metric_columns = info.metric_column_titles
        self.versions = dict(versions) if versions is not None else framework_versions()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._info, name)


def framework_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("hf_mtl", "transformers", "torch", "datasets", "tokenizers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def write_model_card(output_dir: str | os.PathLike, info: ModelCardInfo) -> Path:
    """Render the card into `<output_dir>/README.md`."""
    path = Path(output_dir) / CARD_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_model_card(info), encoding="utf-8")
    return path


def is_hf_mtl_card(path: str | os.PathLike) -> bool:
    """Whether `path` is a model card written by hf_mtl (its front matter has the `hf_mtl` tag)."""
    from huggingface_hub import ModelCard

    path = Path(path)
    if not path.is_file():
        return False
    try:
        tags = ModelCard.load(path).data.tags or []
    except Exception:
        return False
    return HF_MTL_TAG in tags


# ---------------------------------------------------------------------------- collecting the facts
def _hyperparameters(args: Any, trainer: Any = None) -> dict[str, Any]:
    world = getattr(args, "world_size", 1) or 1
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    params: dict[str, Any] = {
        "learning rate": f"{args.learning_rate:g}",
        "batch size (per device)": args.per_device_train_batch_size,
        "effective batch size": effective,
    }
    if args.max_steps and args.max_steps > 0:
        params["max steps"] = args.max_steps
    else:
        params["epochs"] = f"{args.num_train_epochs:g}"
    state = getattr(trainer, "state", None)
    if state is not None and getattr(state, "global_step", 0):
        params["optimizer steps"] = state.global_step
    params.update({
        "warmup steps": f"{args.warmup_steps:g}" + (" (fraction of training)" if 0 < args.warmup_steps < 1 else ""),
        "learning-rate schedule": getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
        "weight decay": args.weight_decay,
        "optimizer": getattr(args.optim, "value", args.optim),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "max sequence length": getattr(trainer, "tokenizer_max_length", None) or getattr(args, "max_length", None) or "-",
        "seed": args.seed,
    })
    return params


def _last_eval(log_history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    for entry in reversed(list(log_history)):
        if any(k.startswith("eval_") and k != "eval_runtime" for k in entry):
            return dict(entry)
    return {}


def card_info_from_trainer(
    trainer: Any,
    *,
    eval_results: Mapping[str, float] | None = None,
    eval_split: str = "validation",
    plot: str | None = None,
    repo_id: str | None = None,
) -> ModelCardInfo:
    """Collect the card's facts from a trained `MultiTaskTrainer`: its model, arguments and log history, and
    its record of the run (`trainer.run_record`: data sizes, batch mix, data sources, card settings).

    `eval_results` default to the last evaluation in the trainer's log history.
    """
    model = trainer.model
    args = trainer.args
    record = getattr(trainer, "run_record", None) or RunRecord()
    settings = record.card_settings or CardSettings()
    return ModelCardInfo(
        model_name=_model_name(settings, args),
        tasks=_task_infos(tasks_from_config(model.config), record, _loss_weights(trainer, record)),
        base_model=model.config.base_model_name_or_path,
        eval_results=dict(eval_results) if eval_results is not None else _last_eval(trainer.state.log_history),
        eval_split=eval_split,
        sampling=dict(record.sampling),
        loss_balancer=dict(record.loss_balancer),
        distillation=_distillation(record, args.output_dir),
        hyperparameters=_hyperparameters(args, trainer),
        lora=_saved_lora(model),
        parameters=dict(record.parameters),
        repo_id=repo_id or args.hub_model_id,
        datasets=_copied_datasets(record),
        plot=plot,
        **_settings_fields(settings),
    )


def _distillation(record: RunRecord, output_dir: str) -> dict[str, Any]:
    """The run's distillation, teachers saved inside the output folder named relative to it (a card read
    elsewhere has no use for this machine's paths)."""
    distillation = dict(getattr(record, "distillation", None) or {})
    if not distillation:
        return {}
    root = Path(output_dir).resolve()
    teachers = {}
    for task, teacher in (distillation.get("teachers") or {}).items():
        teacher = dict(teacher)
        source, _, head = str(teacher.get("source") or "").partition("::")
        if source and Path(source).resolve().is_relative_to(root):
            teacher["source"] = Path(source).resolve().relative_to(root).as_posix() + (f"::{head}" if head else "")
        teachers[task] = teacher
    distillation["teachers"] = teachers
    return distillation


def _saved_lora(model: Any) -> dict[str, Any]:
    """The model's LoRA settings as its saved checkpoint holds them: `save_pretrained` merges adapters by
    default, so a model still holding them is described as merged."""
    lora = dict(getattr(model.config, "lora", None) or {})
    if lora and getattr(model, "save_lora_merged", True):
        lora["merged"] = True
    return lora


def _model_name(settings: CardSettings, args: Any) -> str:
    """The settings' name, else the Hub repository's name, else the output folder's."""
    return settings.model_name or (args.hub_model_id or "").split("/")[-1] or Path(args.output_dir).name


def _loss_weights(trainer: Any, record: RunRecord) -> dict[str, float]:
    """Task -> loss weight: as the loss balancer describes them, else the trainer's static weights."""
    return dict((record.loss_balancer or {}).get("weights") or getattr(trainer, "task_weights", None) or {})


def _task_infos(tasks: Sequence[Task], record: RunRecord, weights: Mapping[str, float]) -> list[TaskCardInfo]:
    """One `TaskCardInfo` per head: its data source (when recorded), sizes, loss weight and share of batches."""
    infos = []
    for task in tasks:
        source = record.data_sources.get(task.name)
        extra: dict[str, Any] = {}
        if source is not None:
            extra = {
                "data": source.get("description") or "-",
                "dataset_id": source.get("dataset_id"),
                "dataset_config": source.get("dataset_config"),
                "dataset_split": source.get("dataset_split"),
            }
        infos.append(TaskCardInfo.from_task(
            task,
            num_train=record.train_sizes.get(task.name),
            num_eval=record.eval_sizes.get(task.name),
            weight=round(float(weights.get(task.name, 1.0)), 4),  # learned weights: 4 decimals on the card
            batch_share=record.batch_shares.get(task.name),
            **extra,
        ))
    return infos


def _copied_datasets(record: RunRecord) -> list[str]:
    """Hub datasets that local data was copied from: the card lists them with the datasets read from the Hub."""
    return [source["copy_of"] for source in record.data_sources.values() if source.get("copy_of")]


def _settings_fields(settings: CardSettings) -> dict[str, Any]:
    """The `ModelCardInfo` fields the card settings fill in."""
    fields = {
        "license": settings.license,
        "language": settings.language,
        "tags": settings.tags,
        "description": settings.description,
        "intended_use": settings.intended_use,
        "limitations": settings.limitations,
    }
    if settings.example_text:
        fields["example_text"] = settings.example_text
    return fields


def card_info_from_model(model: Any, *, repo_id: str | None = None) -> ModelCardInfo:
    """A card for a model without training records (tasks, labels and base encoder only)."""
    tasks = [TaskCardInfo.from_task(t) for t in tasks_from_config(model.config)]
    name = (repo_id or "").split("/")[-1] or Path(str(getattr(model, "name_or_path", "") or "multitask-model")).name
    return ModelCardInfo(
        model_name=name or "multitask-model",
        tasks=tasks,
        base_model=model.config.base_model_name_or_path,
        repo_id=repo_id,
    )


__all__ = [
    "CARD_FILENAME",
    "CardSettings",
    "ModelCardInfo",
    "TaskCardInfo",
    "card_info_from_model",
    "card_info_from_trainer",
    "is_hf_mtl_card",
    "render_model_card",
    "template_text",
    "write_model_card",
]
