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
from typing import Any

from ._common import add_command_parser, add_recipe_options, with_output_dir
from ._output import print_training_result, progress


def register(subparsers: Any) -> None:
    parser = add_command_parser(subparsers, "train", "Train, evaluate and save a multi-task model from a YAML recipe.", __doc__)
    parser.add_argument("recipe", metavar="RECIPE", help="Path of the YAML recipe.")
    add_recipe_options(parser)
    parser.add_argument("--output-dir", metavar="DIR", help="Write the model here (same as --set output_dir=DIR).")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs import train_recipe  # torch and transformers: imported to run, not for --help
    from ..recipe import load_recipe

    recipe = load_recipe(args.recipe, with_output_dir(args.overrides, args.output_dir), data_dir=args.data_dir)
    print_training_result(recipe, train_recipe(recipe, progress=progress))
    return 0
