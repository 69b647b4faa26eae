"""`hf-mtl annotate`: run every head of a trained model over a whole dataset and write Parquet (or JSON lines).

    hf-mtl annotate MODEL reviews.jsonl reviews.annotated.parquet --text-column body
    hf-mtl annotate MODEL data/ out.jsonl --tasks sentiment,ner --batch-size 64
    hf-mtl annotate MODEL imdb out.parquet --split test
    torchrun --nproc_per_node 4 -m hf_mtl annotate MODEL big.parquet big.annotated.parquet

INPUT is a JSONL, CSV/TSV or Parquet file, a folder of them, a `datasets` save_to_disk folder or a Hub dataset
id (--split). OUTPUT gets the input's columns plus, per head: `<task>_label` and `<task>_score` (multi-label:
lists; regression: `<task>_value`), or `<task>_entities` (a list of {entity_group, word, start, end, score}) for
token heads. MODEL may be an ONNX export folder (`hf-mtl export`): it then runs on ONNX Runtime. The input is
read and written in parts of --rows-per-part rows (OUTPUT.parts/): an interrupted run, rerun with the same
arguments, keeps the finished parts. Under torchrun or accelerate launch every process annotates a contiguous
share of the parts and process 0 writes OUTPUT.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import UserError, add_command_parser
from ._output import progress


def register(subparsers: Any) -> None:
    parser = add_command_parser(subparsers, "annotate", "Annotate a whole dataset with every head (Parquet/JSONL out).", __doc__)
    parser.add_argument("model", metavar="MODEL", help="Directory or Hub id of a trained multi-task model, or an ONNX export folder.")
    parser.add_argument("input", metavar="INPUT", help="File, folder of files, saved dataset folder or Hub dataset id.")
    parser.add_argument("output", metavar="OUTPUT", help="Output file (.parquet, or .jsonl for JSON lines).")
    parser.add_argument("--text-column", default="text", metavar="NAME", help="Column holding the texts (default: text).")
    parser.add_argument("--text-pair-column", default=None, metavar="NAME", help="Column holding the second texts of pairs.")
    parser.add_argument("--tasks", metavar="A,B", help="Comma-separated heads to run (default: all).")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="Windows per encoder pass (default 32).")
    parser.add_argument("--split", default="train", help="Split of a Hub dataset or saved DatasetDict (default: train).")
    parser.add_argument("--format", dest="output_format", choices=("parquet", "jsonl"), default=None,
                        help="Output format (default: from OUTPUT's suffix, else parquet).")
    parser.add_argument("--rows-per-part", type=int, default=None, metavar="N",
                        help="Rows per part file: the unit of work and of resuming (default 10000).")
    parser.add_argument("--device", default=None, help="Device, e.g. cpu, cuda, cuda:1 (default: GPU if available).")
    parser.add_argument("--keep-parts", action="store_true", help="Keep OUTPUT.parts/ after writing OUTPUT.")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..annotate import DEFAULT_ROWS_PER_PART, annotate_dataset

    for name in ("batch_size", "rows_per_part"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")
    result = annotate_dataset(
        args.model, args.input, args.output,
        text_column=args.text_column, text_pair_column=args.text_pair_column, tasks=args.tasks,
        batch_size=args.batch_size, split=args.split, output_format=args.output_format,
        rows_per_part=args.rows_per_part or DEFAULT_ROWS_PER_PART, device=args.device,
        progress=not args.no_progress, keep_parts=args.keep_parts,
    )
    kept = f", kept {result.parts_kept} finished part(s)" if result.parts_kept else ""
    rate = result.rows / result.seconds if result.seconds else 0.0
    where = f"process {result.rank} of {result.world_size}: " if result.world_size > 1 else ""
    progress(f"{where}annotated {result.rows} rows in {result.seconds:.1f} s ({rate:.1f} rows/s){kept}")
    if result.merged:
        print(f"Wrote {result.output}")
    return 0
