"""The `hf-mtl` command line (also `python -m hf_mtl`).

Each sub-command lives in `hf_mtl/commands/<name>.py` and exposes `register(subparsers)`, which adds its
parser and sets `func` (a callable taking the parsed namespace and returning an exit code). Commands parse
arguments, call a job of `hf_mtl.jobs` (or the library) and print; they do not import each other.
User errors (bad arguments, files, recipes) are raised as `UserError` (or ValueError/KeyError/
FileNotFoundError/TypeError) and printed as one line, with a non-zero exit code and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__
from .commands._common import UserError

#: sub-command modules under hf_mtl.commands, in --help order
COMMANDS = ("train", "evaluate", "search", "predict", "annotate", "export", "merge", "push", "quickstart")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-mtl",
        description="Multi-task fine-tuning and prediction for Hugging Face encoders.",
    )
    parser.add_argument("--version", action="version", version=f"hf-mtl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"hf_mtl.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"hf_mtl.commands.{name}":
                continue  # not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("hf-mtl: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, KeyError, FileNotFoundError, TypeError, NotADirectoryError, OSError) as err:
        if os.environ.get("HF_MTL_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"hf-mtl {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
