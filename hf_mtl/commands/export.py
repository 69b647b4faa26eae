"""`hf-mtl export`: export a trained multi-task model to ONNX (one graph, one output per head), validated.

    hf-mtl export MODEL OUT
    hf-mtl export MODEL OUT --quantize int8 --tasks sentiment,ner

The folder OUT gets `model.onnx` (and `model.int8.onnx` with --quantize int8), the tokenizer, `config.json`
with the tasks and label maps, and the model card with an "ONNX" section. PyTorch and ONNX Runtime are run on
fixed inputs: a float32 head differing beyond 1e-4 fails the export; for int8 the agreement of predicted
labels and the largest logit deviation are printed. `hf-mtl predict OUT ...` and `pipeline("multitask",
model=OUT)` then run on ONNX Runtime. Needs the [onnx] extra (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import UserError, add_command_parser


def register(subparsers: Any) -> None:
    parser = add_command_parser(subparsers, "export", "Export a trained model to ONNX (optionally int8).", __doc__)
    parser.add_argument("model", metavar="MODEL", help="Directory or Hub id of a trained multi-task model.")
    parser.add_argument("out", metavar="OUT", help="Directory to write the export to.")
    parser.add_argument("--quantize", choices=("int8",), default=None, help="Also write a dynamic int8 model (the default file then).")
    parser.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset version (default: the exporter's).")
    parser.add_argument("--tasks", metavar="A,B", help="Comma-separated heads to export (default: all).")
    parser.add_argument(
        "--per-tensor", action="store_true",
        help="int8: one weight scale per tensor instead of per output channel (smaller quality loss per channel).",
    )
    parser.add_argument(
        "--optimize", action="store_true",
        help="Also write model.opt.onnx (and its int8): ONNX Runtime's transformer fusions (fused attention), "
        "for BERT, RoBERTa and DistilBERT encoders; the folder's default file then.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..export import export_onnx
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise UserError(f"export needs the [onnx] extra (pip install 'hf_mtl[onnx]'): {err}") from None
    if args.per_tensor and not args.quantize:
        raise UserError("--per-tensor applies to --quantize int8 only.")
    result = export_onnx(args.model, args.out, quantize=args.quantize, tasks=args.tasks, opset=args.opset,
                         per_channel=not args.per_tensor, optimize=args.optimize)
    print(result.summary())
    return 0
