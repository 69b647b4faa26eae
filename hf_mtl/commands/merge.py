"""`hf-mtl merge`: merge the LoRA adapters of a checkpoint into its encoder weights (a plain checkpoint).

    hf-mtl merge outputs/stn/checkpoint-500 outputs/stn-merged

Trainer checkpoints (`checkpoint-N`) of a LoRA run keep the adapters separately, so that training can resume;
the final save of a run already merges them. The merged folder loads without `peft` (also with
`trust_remote_code=True` where hf_mtl is not installed) and runs one plain encoder pass.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_command_parser


def register(subparsers: Any) -> None:
    parser = add_command_parser(subparsers, "merge", "Merge a checkpoint's LoRA adapters into its weights.", __doc__)
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="Directory of a multi-task checkpoint with LoRA adapters.")
    parser.add_argument("out", metavar="OUT", help="Directory to write the merged model to.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..lora_checkpoint import merge_lora_checkpoint

    print(merge_lora_checkpoint(args.checkpoint, args.out).summary())
    return 0
