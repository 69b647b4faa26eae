"""`hf-mtl push MODEL REPO_ID`: upload a trained model folder to the Hugging Face Hub in one commit.

    hf-mtl push outputs/quickstart my-user/hf-mtl-quickstart
    hf-mtl push outputs/stn my-org/minilm-sentiment-topic-ner --private

Uploads the weights, config, self-contained modeling code, tokenizer, the model card (README.md written
by `hf-mtl train`, with its usage snippet pointed at REPO_ID) and training_curves.png, creating the
repository if needed. Log in first (`hf auth login`) or pass --token / set HF_TOKEN.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_command_parser


def register(subparsers: Any) -> None:
    parser = add_command_parser(
        subparsers, "push", "Upload a trained model folder (model, tokenizer, card, plot) to the Hub in one commit.", __doc__
    )
    parser.add_argument("model", metavar="MODEL", help="Model folder written by `hf-mtl train`.")
    parser.add_argument("repo_id", metavar="REPO_ID", help="Target repository, e.g. my-user/my-model.")
    parser.add_argument("--private", action="store_true", help="Create the repository as private (if it is new).")
    parser.add_argument("--token", help="Hub token with write access (default: the logged-in token).")
    parser.add_argument("--revision", metavar="BRANCH", help="Branch to commit to (default: main).")
    parser.add_argument("--commit-message", metavar="TEXT", help="Commit message.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import push_model_dir  # transformers and huggingface_hub: imported to run, not for --help

    commit = push_model_dir(
        args.model,
        args.repo_id,
        private=True if args.private else None,
        token=args.token,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    print(f"Pushed {args.model} to {getattr(commit, 'commit_url', None) or args.repo_id}")
    return 0
