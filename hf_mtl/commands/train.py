"""`hf-mtl train RECIPE`: train, evaluate and save a multi-task model described by a YAML recipe.

    hf-mtl train recipes/sentiment_topic_ner.yaml
    hf-mtl train recipes/sentiment_topic_ner.yaml --data-dir ../shared/data --set training.max_steps=500
    hf-mtl train my_recipe.yaml --set tasks.ner.weight=2 --set training.learning_rate=3e-5

The recipe is validated completely, then every task's data is read and checked, before the encoder is
loaded. The output directory receives the model (config, weights, modeling code, tokenizer), its model
card (README.md) and training_curves.png. Texts listed under the recipe's `predict:` are run through the
saved model at the end. See docs/recipes.md for the recipe format.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..recipe import Recipe, load_recipe
from ._common import add_command_parser, add_recipe_options, with_output_dir

TRAIN_SPLIT = "train"
EVAL_SPLIT = "validation"


def register(subparsers: Any) -> None:
    parser = add_command_parser(subparsers, "train", "Train, evaluate and save a multi-task model from a YAML recipe.", __doc__)
    parser.add_argument("recipe", metavar="RECIPE", help="Path of the YAML recipe.")
    add_recipe_options(parser)
    parser.add_argument("--output-dir", metavar="DIR", help="Write the model here (same as --set output_dir=DIR).")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, with_output_dir(args.overrides, args.output_dir), data_dir=args.data_dir)
    train_recipe(recipe)
    return 0


# ---------------------------------------------------------------------------- the job
def load_recipe_data(
    recipe: Recipe, splits: Sequence[str], required: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """`{split: {task: Dataset}}` for every task of the recipe (splits a task does not have are skipped)."""
    from ..data.sources import load_task_data

    out: dict[str, dict[str, Any]] = {split: {} for split in splits}
    for entry in recipe.tasks:
        source = recipe.source_of(entry.task.name)
        for split, dataset in load_task_data(source, entry.task, splits, required=required).items():
            out[split][entry.task.name] = dataset
    return out


def apply_num_threads(recipe: Recipe) -> None:
    """Use the recipe's `num_threads` for torch's CPU ops (small batches run faster on one thread than on
    several competing for busy cores)."""
    if recipe.num_threads is not None:
        import torch

        torch.set_num_threads(recipe.num_threads)


def _log(message: str, stream: TextIO | None = None) -> None:
    print(message, file=stream or sys.stderr, flush=True)


def train_recipe(recipe: Recipe, *, stream: TextIO | None = None) -> dict[str, float]:
    """Run a recipe: check, load data, train, evaluate, save model + card + plot, print predictions.

    Returns the final evaluation metrics (empty when no task has validation data).
    """
    out = stream or sys.stdout
    training_args = recipe.training_arguments()  # fails on bad arguments before anything is loaded
    data = load_recipe_data(recipe, (TRAIN_SPLIT, EVAL_SPLIT), required=(TRAIN_SPLIT,))
    train_data, eval_data = data[TRAIN_SPLIT], data[EVAL_SPLIT]
    if not eval_data and str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no":
        from ..recipe import RecipeError

        raise RecipeError("training.eval_strategy: no task has validation data; set eval_strategy to \"no\".")
    for name, dataset in train_data.items():
        size = f"{len(dataset)} train" + (f", {len(eval_data[name])} validation" if name in eval_data else "")
        _log(f"hf-mtl: task {name!r}: {size} examples from {recipe.source_of(name).describe()}")

    from transformers import AutoTokenizer, set_seed

    from ..modeling_multitask import MultiTaskModel
    from ..trainer import MultiTaskTrainer

    apply_num_threads(recipe)
    # Seed before the heads are initialised (the Trainer seeds only when it is built, after the model), so
    # a recipe's `seed` makes the whole run reproducible, as transformers' example scripts do.
    set_seed(training_args.seed)
    encoder = recipe.encoder_path()
    _log(f"hf-mtl: loading encoder {recipe.encoder}" + (f" from {encoder}" if encoder != recipe.encoder else ""))
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = MultiTaskModel.from_encoder(encoder, tasks=recipe.task_specs, **recipe.model)
    model.config.base_model_name_or_path = recipe.encoder  # the portable name, not this machine's path

    trainer = MultiTaskTrainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data or None,
        processing_class=tokenizer,
    )
    trainer.recipe = recipe
    trainer.train()
    metrics = trainer.evaluate() if eval_data else {}
    output_dir = Path(training_args.output_dir)
    trainer.create_model_card()  # README.md + training_curves.png
    trainer.save_model()  # also pushes (with the same card) when training.push_to_hub is true
    if metrics:
        print(format_metrics(metrics, recipe, EVAL_SPLIT), file=out)
    print(f"Saved the model, its card (README.md) and training_curves.png to {output_dir}", file=out)
    if recipe.predict:
        print_predictions(output_dir, recipe.predict, stream=out)
    return metrics


# ---------------------------------------------------------------------------- reporting
def format_metrics(metrics: Mapping[str, float], recipe: Recipe, split: str, prefix: str = "eval") -> str:
    """A small table of each task's metrics (main metric first) and the average."""
    lines = [f"Evaluation on {split}:"]
    width = max(len(t.task.name) for t in recipe.tasks)
    for entry in recipe.tasks:
        name = entry.task.name
        task_prefix = f"{prefix}_{name}_"
        found = {
            key[len(task_prefix):]: value for key, value in metrics.items()
            if key.startswith(task_prefix) and not key.endswith(("_runtime", "_per_second", "_loss"))
        }
        if not found:
            continue
        main = entry.task.main_metric
        ordered = [main] + sorted(k for k in found if k != main) if main in found else sorted(found)
        lines.append(f"  {name:<{width}}  " + "  ".join(f"{k} {found[k]:.4f}" for k in ordered))
    if f"{prefix}_average" in metrics:
        lines.append(f"  {'average':<{width}}  {metrics[f'{prefix}_average']:.4f} (mean of the main metrics)")
    return "\n".join(lines)


def _describe_result(result: Any) -> str:
    if isinstance(result, dict) and "label" in result:
        return f"{result['label']} ({result['score']:.2f})"
    if isinstance(result, dict) and "score" in result:
        return f"{result['score']:.3f}"
    if isinstance(result, list) and all(isinstance(r, dict) and ("entity_group" in r or "entity" in r) for r in result):
        if not result:
            return "(no entities)"
        return ", ".join(f"{r['word']} [{r.get('entity_group', r.get('entity'))}]" for r in result)
    if isinstance(result, list):
        return ", ".join(_describe_result(r) for r in result)
    return str(result)


def print_predictions(model_dir: str | Path, texts: Sequence[str], *, stream: TextIO | None = None) -> None:
    """Load the saved model with `pipeline("multitask")` and print every head's prediction per text."""
    from transformers import pipeline

    import hf_mtl  # noqa: F401 - registers the "multitask" pipeline

    out = stream or sys.stdout
    predictor = pipeline("multitask", model=str(model_dir))
    print("Predictions of the saved model:", file=out)
    # "first": a word takes its first sub-word's tag, the only sub-word token heads are trained on by default
    for text, result in zip(texts, predictor(list(texts), aggregation_strategy="first")):
        print(f"  {text}", file=out)
        for task, value in result.items():
            print(f"    {task}: {_describe_result(value)}", file=out)


__all__ = ["format_metrics", "load_recipe_data", "print_predictions", "train_recipe"]
