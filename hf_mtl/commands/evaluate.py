"""`hf-mtl evaluate MODEL RECIPE`: score a trained multi-task model on the data of a recipe.

    hf-mtl evaluate outputs/quickstart recipes/quickstart.yaml
    hf-mtl evaluate outputs/stn recipes/sentiment_topic_ner.yaml --data-dir ../shared/data --split test
    hf-mtl evaluate outputs/stn recipes/sentiment_topic_ner.yaml --json results.json

Every task of the recipe must be a head of the model with the same labels. Tasks whose data has no such
split are skipped. Metrics are printed per task (and written as JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from ..recipe import RecipeError, load_recipe
from ._common import add_command_parser, add_recipe_options
from .train import apply_num_threads, format_metrics, load_recipe_data


def register(subparsers: Any) -> None:
    parser = add_command_parser(
        subparsers, "evaluate", "Evaluate a trained model on a recipe's data (per-task metrics).", __doc__
    )
    parser.add_argument("model", metavar="MODEL", help="Directory (or Hub id) of a trained multi-task model.")
    parser.add_argument("recipe", metavar="RECIPE", help="Recipe whose task data to evaluate on.")
    parser.add_argument("--split", default="validation", help="Data split to score (default: validation).")
    add_recipe_options(parser)
    parser.add_argument("--batch-size", type=int, metavar="N", help="Evaluation batch size (default: the recipe's).")
    parser.add_argument("--json", metavar="FILE", help="Also write the metrics to FILE as JSON.")
    parser.set_defaults(func=run)


def _check_tasks(recipe: Any, config: Any) -> None:
    model_tasks = {t["name"]: t for t in config.tasks}
    for i, entry in enumerate(recipe.tasks):
        task = entry.task
        if task.name not in model_tasks:
            raise RecipeError(
                f"tasks[{i}].name: {task.name!r} is not a head of the model (its heads: {sorted(model_tasks)})."
            )
        model_task = model_tasks[task.name]
        declared = (task.task_type, task.problem_type)
        trained = (model_task["task_type"], model_task["problem_type"])
        if declared != trained:
            raise RecipeError(
                f"tasks[{i}]: {task.name!r} is declared as {'/'.join(declared)} but the model's head is "
                f"{'/'.join(trained)}."
            )
        id2label = model_task["id2label"]
        model_labels = [id2label[j] for j in range(len(id2label))]
        if task.labels and list(task.labels) != model_labels:
            raise RecipeError(
                f"tasks[{i}].labels: {list(task.labels)} differ from the model's labels for {task.name!r}: {model_labels}."
            )


def run(args: argparse.Namespace) -> int:
    if args.batch_size is not None and args.batch_size < 1:
        raise RecipeError(f"--batch-size must be a positive integer, got {args.batch_size}.")
    recipe = load_recipe(args.recipe, args.overrides, data_dir=args.data_dir)
    from transformers import AutoTokenizer

    import hf_mtl  # noqa: F401 - registers the model with the auto classes

    from ..configuration_multitask import MultiTaskConfig
    from ..modeling_multitask import MultiTaskModel

    _check_tasks(recipe, MultiTaskConfig.from_pretrained(args.model))  # cheap checks before loading weights
    data = load_recipe_data(recipe, (args.split,))[args.split]
    if not data:
        raise RecipeError(f"no task of the recipe has a {args.split!r} split.")
    with tempfile.TemporaryDirectory(prefix="hf_mtl_eval_") as tmp:
        overrides: dict[str, Any] = {"output_dir": tmp, "report_to": "none", "eval_strategy": "no",
                                     "save_strategy": "no", "push_to_hub": False, "load_best_model_at_end": False}
        if args.batch_size:
            overrides["per_device_eval_batch_size"] = args.batch_size
        eval_args = recipe.training_arguments(**overrides)
        apply_num_threads(recipe)
        model = MultiTaskModel.from_pretrained(args.model)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        from ..trainer import MultiTaskTrainer

        trainer = MultiTaskTrainer(model=model, args=eval_args, processing_class=tokenizer)
        metrics = trainer.evaluate(eval_dataset=data, metric_key_prefix=args.split)
    print(format_metrics(metrics, recipe, args.split, prefix=args.split))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return 0
