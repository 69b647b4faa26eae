"""Recipe-driven jobs: what `hf-mtl train`, `evaluate` and `quickstart` do, as library calls returning results.

- `train_recipe(recipe)`: read and check every task's data, build the model from the recipe's encoder,
  train, evaluate, save the model with its card and training plot, and predict the recipe's `predict:`
  texts with the saved model; returns a `TrainResult`.
- `evaluate_recipe(model, recipe, split)`: score a saved model on a split of a recipe's data; returns an
  `EvaluationResult`.
- `quickstart_recipe_path()` / `quickstart_recipe_text()`: the recipe shipped with hf_mtl, and a copy of it to
  edit whose data paths point at the shipped data.

The jobs print nothing: progress goes to `progress(message)` (default: this module's logger) and results are
returned; `hf_mtl.commands` parses arguments, calls these and prints.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from transformers.utils import logging

from .card import CardSettings
from .recipe import Recipe, RecipeError

logger = logging.get_logger(__name__)

TRAIN_SPLIT = "train"
EVAL_SPLIT = "validation"
#: the packaged quickstart recipe, relative to the hf_mtl package (its data files lie next to it)
QUICKSTART_RECIPE = "data/quickstart/recipe.yaml"

Progress = Callable[[str], None]


@dataclass
class TrainResult:
    """What `train_recipe` produced.

    Attributes:
        output_dir: the folder holding the model, its card (README.md) and training_curves.png.
        metrics: the final evaluation (`eval_<task>_<metric>`, `eval_average`); empty without validation data.
        predictions: the saved model's output for each of the recipe's `predict:` texts, in order
            (`{task_name: result}` as `pipeline("multitask")` returns it).
        trainer: the `MultiTaskTrainer` that ran.
    """

    output_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    trainer: Any = None


@dataclass
class EvaluationResult:
    """What `evaluate_recipe` measured: `<split>_<task>_<metric>` and `<split>_average` on one split."""

    split: str
    metrics: dict[str, float]


# ---------------------------------------------------------------------------- data
def load_recipe_data(
    recipe: Recipe, splits: Sequence[str], required: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """`{split: {task_name: Dataset}}` for every task of the recipe (splits a task does not have are skipped)."""
    from .data.sources import load_task_data

    out: dict[str, dict[str, Any]] = {split: {} for split in splits}
    for entry in recipe.tasks:
        source = recipe.source_of(entry.task.name)
        for split, dataset in load_task_data(source, entry.task, splits, required=required).items():
            out[split][entry.task.name] = dataset
    return out


def data_sources(recipe: Recipe, eval_split: str = EVAL_SPLIT) -> dict[str, dict[str, Any]]:
    """Where each task's data came from, as `RunRecord.data_sources` holds it for the model card."""
    out = {}
    for entry in recipe.tasks:
        source = recipe.source_of(entry.task.name)  # the source actually read (`local` with --data-dir)
        out[entry.task.name] = {
            "description": source.describe(),
            "dataset_id": source.hub,
            "dataset_config": source.config,
            "dataset_split": source.splits.get(eval_split, eval_split) if source.hub else eval_split,
            "copy_of": entry.data.hub if source.hub is None else None,
        }
    return out


def card_settings(recipe: Recipe) -> CardSettings:
    """The recipe's `card:` settings, with its first `predict:` text as the card's usage example."""
    return replace(recipe.card, example_text=recipe.predict[0] if recipe.predict else None)


def apply_num_threads(recipe: Recipe) -> None:
    """Use the recipe's `num_threads` for torch's CPU ops (small batches run faster on one thread than on
    several competing for busy cores)."""
    if recipe.num_threads is not None:
        import torch

        torch.set_num_threads(recipe.num_threads)


# ---------------------------------------------------------------------------- training
def train_recipe(recipe: Recipe, *, progress: Progress | None = None) -> TrainResult:
    """Run a recipe: check, load data, train, evaluate, save model + card + plot, predict the `predict:` texts.

    Everything that can be checked without the encoder (training arguments, every task's data) is checked
    before it is loaded. With `training.push_to_hub: true` the final save also pushes.
    """
    report = progress or logger.info
    training_args = recipe.training_arguments()  # fails on bad arguments before anything is loaded
    train_data, eval_data = _training_data(recipe, training_args, report)
    trainer = _build_trainer(recipe, training_args, train_data, eval_data, report)
    trainer.train()
    metrics = trainer.evaluate() if eval_data else {}
    trainer.create_model_card()  # README.md + training_curves.png
    trainer.save_model()  # also pushes (with the same card) when training.push_to_hub is true
    output_dir = Path(training_args.output_dir)
    predictions = predict_texts(output_dir, recipe.predict) if recipe.predict else []
    return TrainResult(output_dir=output_dir, metrics=metrics, predictions=predictions, trainer=trainer)


def _training_data(recipe: Recipe, training_args: Any, report: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    """The train and validation datasets of every task, checked; one progress line per task."""
    data = load_recipe_data(recipe, (TRAIN_SPLIT, EVAL_SPLIT), required=(TRAIN_SPLIT,))
    train_data, eval_data = data[TRAIN_SPLIT], data[EVAL_SPLIT]
    if not eval_data and str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no":
        raise RecipeError("training.eval_strategy: no task has validation data; set eval_strategy to \"no\".")
    for name, dataset in train_data.items():
        size = f"{len(dataset)} train" + (f", {len(eval_data[name])} validation" if name in eval_data else "")
        report(f"hf-mtl: task {name!r}: {size} examples from {recipe.source_of(name).describe()}")
    return train_data, eval_data


def _build_trainer(
    recipe: Recipe, training_args: Any, train_data: Mapping[str, Any], eval_data: Mapping[str, Any], report: Progress
) -> Any:
    """The encoder with the recipe's heads, its tokenizer, and a `MultiTaskTrainer` whose run record names
    the recipe's data sources and card settings."""
    from transformers import AutoTokenizer, set_seed

    from .modeling_multitask import MultiTaskModel
    from .trainer import MultiTaskTrainer

    apply_num_threads(recipe)
    # Seed before the heads are initialised (the Trainer seeds only when it is built, after the model), so
    # a recipe's `seed` makes the whole run reproducible, as transformers' example scripts do.
    set_seed(training_args.seed)
    encoder = recipe.encoder_path()
    report(f"hf-mtl: loading encoder {recipe.encoder}" + (f" from {encoder}" if encoder != recipe.encoder else ""))
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model_kwargs = dict(recipe.model)
    if "lora" in model_kwargs:  # `model.lora:` LoRA adapters on the encoder, merged into the final save
        from peft import LoraConfig

        model_kwargs["peft_config"] = LoraConfig(**model_kwargs.pop("lora"))
    model = MultiTaskModel.from_encoder(encoder, tasks=recipe.task_specs, **model_kwargs)
    model.config.base_model_name_or_path = recipe.encoder  # the portable name, not this machine's path
    trainer = MultiTaskTrainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data or None,
        processing_class=tokenizer,
    )
    trainer.run_record.data_sources = data_sources(recipe)
    trainer.run_record.card_settings = card_settings(recipe)
    return trainer


def predict_texts(model_dir: str | Path, texts: Sequence[str]) -> list[dict[str, Any]]:
    """Every head's prediction for each text, from the model saved in `model_dir` (`pipeline("multitask")`)."""
    from transformers import pipeline

    import hf_mtl  # noqa: F401 - registers the "multitask" pipeline

    predictor = pipeline("multitask", model=str(model_dir))
    # "first": a word takes its first sub-word's tag, the only sub-word token heads are trained on by default
    return list(predictor(list(texts), aggregation_strategy="first"))


# ---------------------------------------------------------------------------- evaluation
def check_model_tasks(recipe: Recipe, config: Any) -> None:
    """RecipeError unless every task of the recipe is a head of the model (`config`) with the same kind and labels."""
    from .tasks import task_from_config

    model_tasks = {entry["name"]: entry for entry in config.tasks}
    for i, entry in enumerate(recipe.tasks):
        task = entry.task
        if task.name not in model_tasks:
            raise RecipeError(
                f"tasks[{i}].name: {task.name!r} is not a head of the model (its heads: {sorted(model_tasks)})."
            )
        trained = task_from_config(model_tasks[task.name])
        declared_kind, trained_kind = (task.task_type, task.problem_type), (trained.task_type, trained.problem_type)
        if declared_kind != trained_kind:
            raise RecipeError(
                f"tasks[{i}]: {task.name!r} is declared as {'/'.join(declared_kind)} but the model's head is "
                f"{'/'.join(trained_kind)}."
            )
        model_labels = [trained.id2label[j] for j in range(len(trained.id2label))]
        if task.labels and list(task.labels) != model_labels:
            raise RecipeError(
                f"tasks[{i}].labels: {list(task.labels)} differ from the model's labels for {task.name!r}: {model_labels}."
            )


def evaluate_recipe(
    model: str | Path, recipe: Recipe, split: str = EVAL_SPLIT, *, batch_size: int | None = None
) -> EvaluationResult:
    """Score the model saved in `model` (a folder or Hub id) on `split` of the recipe's data.

    Every task of the recipe must be a head of the model with the same labels (checked before the weights
    load); tasks whose data has no such split are skipped. `batch_size` replaces the recipe's evaluation
    batch size.
    """
    from .configuration_multitask import MultiTaskConfig
    from .encoders import load_tokenizer_for
    from .modeling_multitask import MultiTaskModel
    from .trainer import MultiTaskTrainer

    check_model_tasks(recipe, MultiTaskConfig.from_pretrained(model))  # cheap checks before loading weights
    data = load_recipe_data(recipe, (split,))[split]
    if not data:
        raise RecipeError(f"no task of the recipe has a {split!r} split.")
    with tempfile.TemporaryDirectory(prefix="hf_mtl_eval_") as tmp:
        overrides: dict[str, Any] = {"output_dir": tmp, "report_to": "none", "eval_strategy": "no",
                                     "save_strategy": "no", "push_to_hub": False, "load_best_model_at_end": False}
        if batch_size:
            overrides["per_device_eval_batch_size"] = batch_size
        eval_args = recipe.training_arguments(**overrides)
        apply_num_threads(recipe)
        loaded = MultiTaskModel.from_pretrained(model)
        trainer = MultiTaskTrainer(model=loaded, args=eval_args, processing_class=load_tokenizer_for(loaded))
        metrics = trainer.evaluate(eval_dataset=data, metric_key_prefix=split)
    return EvaluationResult(split=split, metrics=metrics)


# ---------------------------------------------------------------------------- the quickstart recipe
def quickstart_recipe_path() -> Path:
    """The quickstart recipe shipped in the package (`hf-mtl quickstart` runs it)."""
    return Path(str(resources.files("hf_mtl").joinpath(QUICKSTART_RECIPE)))


#: a `files:` flow mapping entry of the quickstart recipe: `{train: name, validation: name}`
_FILES_ENTRY = re.compile(r"(?P<key>[{,]\s*\w+:\s*)(?P<path>[^,{}\s]+)")


def quickstart_recipe_text() -> str:
    """The quickstart recipe as a file to copy and edit: the shipped text, with its data file paths made
    absolute (they point at the data shipped in the package), so the copy runs from any folder."""
    path = quickstart_recipe_path()
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.lstrip().startswith("files:"):
            line = _FILES_ENTRY.sub(
                lambda m: m.group("key") + json.dumps(str(path.parent / m.group("path"))), line  # a YAML string
            )
        lines.append(line)
    header = (
        "# A copy of the recipe of `hf-mtl quickstart` (printed by `hf-mtl quickstart --print-recipe`); its data\n"
        "# paths point at the example data installed with hf_mtl. Edit it and run `hf-mtl train <this file>`.\n"
    )
    return header + "".join(lines)


__all__ = [
    "EVAL_SPLIT",
    "TRAIN_SPLIT",
    "EvaluationResult",
    "TrainResult",
    "apply_num_threads",
    "card_settings",
    "check_model_tasks",
    "data_sources",
    "evaluate_recipe",
    "load_recipe_data",
    "predict_texts",
    "quickstart_recipe_path",
    "quickstart_recipe_text",
    "train_recipe",
]
