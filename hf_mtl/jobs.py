"""Recipe-driven jobs: what `hf-mtl train`, `evaluate` and `quickstart` do, as library calls returning results.

- `train_recipe(recipe)`: read and check every task's data, train the single-task teachers a
  `distillation: {teachers: train}` block asks for (`train_teachers`), build the model from the recipe's encoder,
  train (distilling from the teachers), evaluate, save the model with its card and training plot, and predict the recipe's `predict:`
  texts with the saved model; returns a `TrainResult`.
- `evaluate_recipe(model, recipe, split)`: score a saved model on a split of a recipe's data; returns an
  `EvaluationResult`.
- `search_recipe(recipe, trials=N)`: hyperparameter search (optuna) over the recipe's learning rate, task
  sampling and task weights, short trials; writes the best settings as a recipe; returns a `SearchResult`.
- `quickstart_recipe_path()` / `quickstart_recipe_text()`: the recipe shipped with hf_mtl, and a copy of it to
  edit whose data paths point at the shipped data.

The jobs print nothing: progress goes to `progress(message)` (default: this module's logger) and results are
returned; `hf_mtl.commands` parses arguments, calls these and prints.
"""

from __future__ import annotations

import copy
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
from .recipe import TRAIN_TEACHERS, Recipe, RecipeError

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
    distillation = None
    if recipe.distillation is not None:
        trained = train_teachers(recipe, training_args, train_data, eval_data, report)
        distillation = recipe.distillation_config({**recipe.distillation["teachers"], **trained})
    trainer = _build_trainer(recipe, training_args, train_data, eval_data, report, distillation=distillation)
    trainer.train()
    metrics = trainer.evaluate() if eval_data else {}
    trainer.create_model_card()  # README.md + training_curves.png
    trainer.save_model()  # also pushes (with the same card) when training.push_to_hub is true
    output_dir = Path(training_args.output_dir)
    predictions = predict_texts(output_dir, recipe.predict) if recipe.predict else []
    return TrainResult(output_dir=output_dir, metrics=metrics, predictions=predictions, trainer=trainer)


def _training_data(recipe: Recipe, training_args: Any, report: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    """The train and validation datasets of every task, checked; one progress line per task."""
    streams = [entry.task.name for entry in recipe.tasks if recipe.source_of(entry.task.name).streaming]
    if streams and not (training_args.max_steps and training_args.max_steps > 0):
        raise RecipeError(
            f"training.max_steps: required when a task's data streams (tasks {streams}: `streaming: true`), since "
            "an epoch of a stream has no known length."
        )
    data = load_recipe_data(recipe, (TRAIN_SPLIT, EVAL_SPLIT), required=(TRAIN_SPLIT,))
    train_data, eval_data = data[TRAIN_SPLIT], data[EVAL_SPLIT]
    if not eval_data and str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no":
        raise RecipeError("training.eval_strategy: no task has validation data; set eval_strategy to \"no\".")
    for name, dataset in train_data.items():
        train_size = "streamed" if recipe.source_of(name).streaming else str(len(dataset))
        size = f"{train_size} train" + (f", {len(eval_data[name])} validation" if name in eval_data else "")
        report(f"hf-mtl: task {name!r}: {size} examples from {recipe.source_of(name).describe()}")
    return train_data, eval_data


def train_teachers(
    recipe: Recipe,
    training_args: Any,
    train_data: Mapping[str, Any],
    eval_data: Mapping[str, Any],
    report: Progress,
) -> dict[str, str]:
    """Train the single-task teachers the recipe's `distillation.teachers` marks `train`: for each such task a
    one-head `MultiTaskModel` on the recipe's encoder, trained by `MultiTaskTrainer` on that task's own data
    with the recipe's training arguments (its epochs or steps, learning rate, batch size, seed), saved with its
    tokenizer and validation scores (`eval_results.json`) in `<output_dir>/teachers/<task>`. Returns task ->
    teacher folder."""
    from .training_args import MultiTaskTrainingArguments

    folders = {}
    for name, teacher in recipe.distillation["teachers"].items():
        if teacher != TRAIN_TEACHERS:
            continue
        folder = Path(training_args.output_dir) / "teachers" / name
        report(f"hf-mtl: training the teacher of task {name!r} in {folder}")
        settings = {**recipe.training, "output_dir": str(folder), "push_to_hub": False}
        if "task_weights" in settings:
            settings["task_weights"] = {name: settings["task_weights"].get(name, 1.0)}
        task_eval = {name: eval_data[name]} if name in eval_data else {}
        if not task_eval:
            settings.update(eval_strategy="no", load_best_model_at_end=False)
        args = MultiTaskTrainingArguments(**settings)
        entry = next(t for t in recipe.tasks if t.task.name == name)
        teacher_recipe = replace(recipe, tasks=(entry,), distillation=None)
        trainer = _build_trainer(teacher_recipe, args, {name: train_data[name]}, task_eval, report)
        trainer.train()
        if task_eval:
            trainer.save_metrics("eval", trainer.evaluate())
        trainer.save_model()  # with the tokenizer: the student checks it shares the teacher's
        trainer.accelerator.wait_for_everyone()  # every process reads the saved teacher next
        folders[name] = str(folder)
    return folders


def _build_trainer(
    recipe: Recipe,
    training_args: Any,
    train_data: Mapping[str, Any],
    eval_data: Mapping[str, Any],
    report: Progress,
    model_init: bool = False,
    distillation: Any = None,
) -> Any:
    """The encoder with the recipe's heads, its tokenizer, and a `MultiTaskTrainer` (distilling from teachers
    with a `DistillationConfig`) whose run record names the recipe's data sources and card settings.
    `model_init=True`: the trainer gets a function building a fresh model (for `hyperparameter_search`)
    instead of one model."""
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

    def new_model() -> MultiTaskModel:
        model = MultiTaskModel.from_encoder(encoder, tasks=recipe.task_specs, **model_kwargs)
        model.config.base_model_name_or_path = recipe.encoder  # the portable name, not this machine's path
        return model

    trainer = MultiTaskTrainer(
        **({"model_init": new_model} if model_init else {"model": new_model()}),
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data or None,
        processing_class=tokenizer,
        distillation=distillation,
        task_sizes={
            name: recipe.source_of(name).num_rows for name in train_data if recipe.source_of(name).num_rows is not None
        },
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


# ---------------------------------------------------------------------------- hyperparameter search
#: the optuna study's name in its sqlite file
STUDY_NAME = "hf-mtl-search"
STUDY_FILE = "study.db"
#: trials train this fraction of the recipe's `max_steps` unless told otherwise
TRIAL_STEPS_FRACTION = 5


@dataclass
class SearchResult:
    """What `search_recipe` found.

    Attributes:
        best: the best trial as transformers' `BestRun` (`run_id` = trial number, `objective`, `hyperparameters`).
        trials: every trial of the study (`hf_mtl.search.TrialRow`: params, objective, each task's score), in order.
        best_recipe: the recipe file written with the best settings (`hf-mtl train` it).
        search_dir: the folder holding the optuna study (`study.db`) and the trials' output.
        objective: the objective's name; `trial_steps`: each trial's `max_steps` (None: the recipe's budget).
        space: each searched hyperparameter's range or choices, for printing.
    """

    best: Any
    trials: list[Any]
    best_recipe: Path
    search_dir: Path
    objective: str
    trial_steps: int | None
    space: dict[str, str] = field(default_factory=dict)


def default_trial_steps(recipe: Recipe) -> int | None:
    """A trial's budget: 1/5 of the recipe's `max_steps` (at least 1), or None (the recipe's own budget) when
    it trains by epochs."""
    max_steps = recipe.training.get("max_steps")
    if isinstance(max_steps, int) and max_steps > 0:
        return max(1, max_steps // TRIAL_STEPS_FRACTION)
    return None


def search_recipe(
    recipe: Recipe,
    *,
    trials: int,
    space: Any = None,
    objective: str = "average",
    reference: Mapping[str, float] | None = None,
    trial_steps: int | None = None,
    search_dir: str | Path | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> SearchResult:
    """Search the recipe's hyperparameters with optuna: `trials` short runs (`trial_steps` each, default
    `default_trial_steps`), each from a fresh model, scored on the validation split by `objective`
    ("average": `eval_average`; "worst": the worst task's score minus its `reference` score).

    `space` is a `hf_mtl.search.SearchSpace`, a path to a space file (YAML), or None for
    `default_search_space`. The study is stored in `search_dir/study.db` (default `<output_dir>-search`);
    `resume=True` continues it up to `trials` trials in all. The best settings are written as a recipe to
    `output` (default `search_dir/best.yaml`): the recipe with its learning rate, sampling and task weights
    replaced and its data paths made absolute, so it trains from anywhere.
    """
    import optuna

    from .search import SearchSpace, default_search_space, objective_by_name, trial_rows

    report = progress or logger.info
    if trials < 1:
        raise ValueError(f"--trials: expected a positive number of trials, got {trials}.")
    task_names = [entry.task.name for entry in recipe.tasks]
    if space is None:
        space = default_search_space(task_names)
    elif not isinstance(space, SearchSpace):
        space = SearchSpace.from_file(space, task_names)
    objective_fn = objective_by_name(objective, reference)
    search_dir = Path(search_dir) if search_dir is not None else Path(f"{recipe.output_dir.rstrip('/')}-search")
    storage = f"sqlite:///{(search_dir / STUDY_FILE).resolve()}"
    if (search_dir / STUDY_FILE).exists() and not resume:
        raise ValueError(f"{search_dir / STUDY_FILE} exists: pass --resume to continue that search, or delete it.")
    if resume and not (search_dir / STUDY_FILE).exists():
        raise FileNotFoundError(f"--resume: no study to continue in {search_dir} ({STUDY_FILE} not found).")
    steps = trial_steps if trial_steps is not None else default_trial_steps(recipe)
    if steps is not None and steps < 1:
        raise ValueError(f"--trial-steps: expected a positive number of steps, got {steps}.")
    overrides: dict[str, Any] = {
        "output_dir": str(search_dir / "trials"), "eval_strategy": "no", "save_strategy": "no",
        "load_best_model_at_end": False, "push_to_hub": False, "report_to": "none",
    }
    if steps is not None:
        overrides["max_steps"] = steps
    training_args = recipe.training_arguments(**overrides)
    train_data, eval_data = _training_data(recipe, training_args, report)
    if not eval_data:
        raise RecipeError("search: no task has validation data to score the trials on.")
    search_dir.mkdir(parents=True, exist_ok=True)
    trainer = _build_trainer(recipe, training_args, train_data, eval_data, report, model_init=True)
    bound = objective_fn.for_trainer(trainer) if hasattr(objective_fn, "for_trainer") else objective_fn

    def reported(metrics: Mapping[str, float]) -> float:
        value = bound(metrics)
        report(f"hf-mtl: trial {getattr(getattr(trainer, '_trial', None), 'number', '?')}: {objective} = {value:.4f}")
        return value

    done = 0
    if resume:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    remaining = trials - done
    report(f"hf-mtl: {remaining} trial(s) of {trials}" + (f" ({done} done before)" if done else "")
           + (f", {steps} training step(s) each" if steps else "") + f"; study in {search_dir / STUDY_FILE}")
    if remaining > 0:
        trainer.hyperparameter_search(
            hp_space=space, compute_objective=reported, n_trials=remaining, direction="maximize", backend="optuna",
            storage=storage, study_name=STUDY_NAME, load_if_exists=resume,
            sampler=optuna.samplers.TPESampler(seed=training_args.seed),
        )
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    best_trial = study.best_trial
    from transformers.trainer_utils import BestRun

    best = BestRun(str(best_trial.number), best_trial.value, dict(best_trial.params))
    best_recipe = Path(output) if output is not None else search_dir / "best.yaml"
    write_best_recipe(recipe, best.hyperparameters, best_recipe, header=(
        f"best of {len(study.trials)} trial(s) of `hf-mtl search` (trial {best.run_id}, objective {objective} = "
        f"{best.objective:.4f}, " + (f"{steps} training step(s)" if steps else "the recipe's training budget") + " per trial)"
    ))
    return SearchResult(best=best, trials=trial_rows(study), best_recipe=best_recipe, search_dir=search_dir,
                        objective=objective, trial_steps=steps, space=space.describe())


def best_recipe_raw(recipe: Recipe, params: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as read, with a search's hyperparameters set (`task_weight_<task>` as that task's
    `weight`, others under `training:`) and every data file path absolute (they were relative to the recipe's
    folder or --data-dir)."""
    from .search import trial_arguments

    if recipe.raw is None:
        raise ValueError("The recipe was not read from a file (Recipe.raw is missing): nothing to write back.")
    raw = copy.deepcopy(dict(recipe.raw))
    values = trial_arguments(params)
    weights = values.pop("task_weights", {}) or {}
    training = raw.setdefault("training", {}) or {}
    raw["training"] = training
    training.update(values)
    given = training.get("task_weights")
    for i, entry in enumerate(recipe.tasks):
        raw_task = raw["tasks"][i]
        name = entry.task.name
        if name in weights:
            raw_task["weight"] = weights[name]
            if isinstance(given, dict):
                given.pop(name, None)  # training.task_weights would override the task's weight
        data = raw_task.get("data") or {}
        if "files" in data:
            data["files"] = dict(entry.data.files)
        if isinstance(data.get("local"), dict) and entry.data.local is not None:
            data["local"]["files"] = dict(entry.data.local.files)
    if isinstance(given, dict) and not given:
        training.pop("task_weights")
    return raw


def write_best_recipe(recipe: Recipe, params: Mapping[str, Any], path: str | Path, header: str = "") -> Path:
    """Write `best_recipe_raw(recipe, params)` as YAML (with `header` as a comment) and check it loads."""
    import yaml

    from .recipe import load_recipe

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(best_recipe_raw(recipe, params), sort_keys=False, allow_unicode=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines()) if header else ""
    path.write_text(comment + text, encoding="utf-8")
    load_recipe(path)  # what `hf-mtl train` will do with it
    return path


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
    "SearchResult",
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
    "search_recipe",
    "train_recipe",
    "write_best_recipe",
    "train_teachers",
]
