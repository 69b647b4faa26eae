"""Parser helpers shared by the commands, and `UserError`."""

from __future__ import annotations

import argparse
from typing import Any


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit code 2 (see `hf_mtl.cli`)."""


def add_command_parser(subparsers: Any, name: str, help: str, doc: str | None) -> argparse.ArgumentParser:
    """A sub-command parser whose --help shows the module docstring: its first paragraph and the text after
    the examples as the description, and the second paragraph (the example command lines) as the epilog."""
    paragraphs = (doc or "").split("\n\n")
    return subparsers.add_parser(
        name,
        help=help,
        description="\n\n".join([paragraphs[0], *paragraphs[2:]]),
        epilog="examples:\n" + paragraphs[1] if len(paragraphs) > 1 else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_set_option(parser: argparse.ArgumentParser, example: str = "training.learning_rate=3e-5") -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
        help=f"Override a recipe field (repeatable); the value is read as YAML, e.g. --set {example}, "
        "--set tasks[0].weight=2, --set tasks.ner.data.max_examples=100.",
    )


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """`--set` and `--data-dir`, for the commands that read a recipe."""
    add_set_option(parser)
    parser.add_argument(
        "--data-dir", metavar="DIR",
        help="Resolve relative data file paths against DIR and read each task's `local:` files instead of its Hub "
        "dataset (e.g. --data-dir ../shared/data for offline runs).",
    )


def with_output_dir(overrides: list[str], output_dir: str | None) -> list[str]:
    """`--output-dir DIR` as the override `output_dir=DIR`."""
    return [*overrides, f"output_dir={output_dir}"] if output_dir else list(overrides)
