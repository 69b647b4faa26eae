"""`hf-mtl search RECIPE --trials N`: search a recipe's learning rate, task sampling and task weights.

    hf-mtl search recipes/sentiment_topic_ner.yaml --data-dir ../shared/data --trials 20
    hf-mtl search my_recipe.yaml --trials 10 --space space.yaml --trial-steps 200 --output best.yaml
    hf-mtl search my_recipe.yaml --trials 10 --objective worst --reference single_task_scores.yaml
    hf-mtl search my_recipe.yaml --trials 30 --resume          # continue the stored study up to 30 trials

Each trial trains a fresh model for --trial-steps steps (default: 1/5 of the recipe's max_steps; the
recipe's own budget when it trains by epochs) and is scored on the validation split: by the average of
the tasks' main metrics (--objective average), or by the worst task's score minus its single-task
reference score (--objective worst --reference FILE, a YAML mapping task -> score). Without --space the
learning rate, the sampling strategy and temperature and the task weights are searched (docs/recipes.md
shows the space file format). The trials are printed as a table; the best settings are written as a
recipe (--output, default SEARCH_DIR/best.yaml) to train with `hf-mtl train`, and the optuna study is kept
in SEARCH_DIR/study.db (default: the recipe's output_dir + "-search"), so --resume continues it.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..search import OBJECTIVES, load_reference
from ._common import UserError, add_command_parser, add_recipe_options
from ._output import format_trials, progress


def register(subparsers: Any) -> None:
    parser = add_command_parser(
        subparsers, "search", "Search learning rate, task sampling and task weights for a recipe (optuna).", __doc__
    )
    parser.add_argument("recipe", metavar="RECIPE", help="Path of the YAML recipe.")
    parser.add_argument("--trials", type=int, required=True, metavar="N", help="Number of trials (in all, with --resume).")
    parser.add_argument("--space", metavar="FILE", help="YAML search space (default: learning rate, sampling, task weights).")
    parser.add_argument("--objective", choices=OBJECTIVES, default="average",
                        help="average: mean of the tasks' main metrics (default); worst: the worst task's score minus "
                        "its --reference score.")
    parser.add_argument("--reference", metavar="FILE", help="YAML mapping task -> single-task score (--objective worst).")
    parser.add_argument("--trial-steps", type=int, metavar="N", help="Training steps per trial (default: 1/5 of max_steps).")
    parser.add_argument("--output", metavar="FILE", help="Write the best recipe here (default: SEARCH_DIR/best.yaml).")
    parser.add_argument("--search-dir", metavar="DIR", help="Study and trial outputs (default: <output_dir>-search).")
    parser.add_argument("--resume", action="store_true", help="Continue the study stored in SEARCH_DIR.")
    add_recipe_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs import search_recipe  # torch and transformers: imported to run, not for --help
    from ..recipe import load_recipe

    if args.objective == "worst" and not args.reference:
        raise UserError("--objective worst needs --reference FILE (single-task score per task).")
    if args.reference and args.objective != "worst":
        raise UserError("--reference is for --objective worst.")
    recipe = load_recipe(args.recipe, args.overrides, data_dir=args.data_dir)
    result = search_recipe(
        recipe,
        trials=args.trials,
        space=args.space,
        objective=args.objective,
        reference=load_reference(args.reference) if args.reference else None,
        trial_steps=args.trial_steps,
        search_dir=args.search_dir,
        output=args.output,
        resume=args.resume,
        progress=progress,
    )
    print("Trials:")
    print(format_trials(result.trials, [t.name for t in recipe.task_specs], result.objective))
    best = result.best
    print(f"Best: trial {best.run_id}, {result.objective} = {best.objective:.4f}")
    for key, value in best.hyperparameters.items():
        print(f"  {key} = {value:.4g}" if isinstance(value, float) else f"  {key} = {value}")
    print(f"Wrote the best settings to {result.best_recipe} (train with: hf-mtl train {result.best_recipe}"
          + (" --data-dir ..." if recipe.use_local_data else "") + ")")
    print(f"Study: {result.search_dir / 'study.db'} (continue with --resume)")
    return 0
