"""`hf-mtl evaluate MODEL RECIPE`: score a trained multi-task model on the data of a recipe.

    hf-mtl evaluate outputs/stn recipes/sentiment_topic_ner.yaml --data-dir ../shared/data --split test
    hf-mtl evaluate outputs/stn recipes/sentiment_topic_ner.yaml --json results.json
    hf-mtl quickstart --print-recipe > quickstart.yaml && hf-mtl evaluate outputs/quickstart quickstart.yaml

Every task of the recipe must be a head of the model with the same labels. Tasks whose data has no such
split are skipped. Metrics are printed per task (and written as JSON with --json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import add_command_parser, add_recipe_options
from ._output import format_metrics


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


def run(args: argparse.Namespace) -> int:
    from ..jobs import evaluate_recipe  # torch and transformers: imported to run, not for --help
    from ..recipe import RecipeError, load_recipe

    if args.batch_size is not None and args.batch_size < 1:
        raise RecipeError(f"--batch-size must be a positive integer, got {args.batch_size}.")
    recipe = load_recipe(args.recipe, args.overrides, data_dir=args.data_dir)
    result = evaluate_recipe(args.model, recipe, args.split, batch_size=args.batch_size)
    print(format_metrics(result.metrics, recipe.task_specs, args.split, prefix=args.split))
    if args.json:
        Path(args.json).write_text(json.dumps(result.metrics, indent=2) + "\n", encoding="utf-8")
    return 0
