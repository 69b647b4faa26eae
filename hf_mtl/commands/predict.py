"""`hf-mtl predict`: run every head of a trained multi-task model on texts and write JSON lines.

    hf-mtl predict MODEL "Apple opened a store in Paris" "I love it"
    hf-mtl predict MODEL --input texts.txt --output predictions.jsonl --tasks sentiment,ner
    cat texts.jsonl | hf-mtl predict MODEL --input - > predictions.jsonl

Inputs are TEXT arguments and/or the lines of `--input` (a file, or `-` for stdin): plain text, one input per
line, or JSON lines holding objects with a `"text"` (and optionally `"text_pair"`) string. A file is read as
JSON lines when its name ends in `.jsonl`/`.ndjson`, or when its first non-blank line is a JSON object.
The output has one JSON object per input, in input order: `{task_name: result}` as `MultiTaskPipeline`
returns it. On a terminal, a few results are pretty-printed instead. MODEL may be an ONNX export folder
(`hf-mtl export`): on the CPU it then runs without importing PyTorch (`hf_mtl.runtime.OnnxPredictor`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from ._common import UserError

#: at most this many results are pretty-printed on a terminal (more are written as JSON lines)
PRETTY_PRINT_MAX = 10
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="Predict every head of a trained model on texts (JSON lines out).",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="Directory or Hub id of a trained multi-task model.")
    parser.add_argument("texts", metavar="TEXT", nargs="*", help="Texts to predict on.")
    parser.add_argument(
        "--input", "-i", metavar="FILE", help="Read inputs from FILE (plain-text lines or JSON lines); '-' for stdin."
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="Write JSON lines to FILE instead of stdout.")
    parser.add_argument("--tasks", metavar="A,B", help="Comma-separated heads to run (default: all).")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="Windows per encoder pass (default 32).")
    parser.add_argument(
        "--aggregation-strategy",
        default=None,
        choices=("none", "simple", "first", "average", "max"),
        help="How token heads group sub-words into entities (default: the pipeline's, first: one tag per word).",
    )
    parser.add_argument("--device", default=None, help="Device, e.g. cpu, cuda, cuda:1 (default: GPU if available).")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar shown for --input.")
    parser.set_defaults(func=run)


def _user_error(message: str) -> Exception:
    return UserError(message)


def read_inputs(stream: TextIO, name: str) -> list[Any]:
    """The inputs in `stream`: strings (plain-text lines) or `{"text", "text_pair"}` dicts (JSON lines).

    Errors name the line number. Blank lines are skipped in JSON lines; in plain text they are empty inputs.
    """
    lines = stream.read().splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    as_jsonl = name.lower().endswith(JSONL_SUFFIXES)
    if not as_jsonl and first.startswith("{"):
        try:
            as_jsonl = isinstance(json.loads(first), dict)
        except json.JSONDecodeError:
            as_jsonl = False
    if not as_jsonl:
        return lines
    inputs: list[Any] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise _user_error(f"{name}, line {number}: not valid JSON ({err.msg}); expected an object like {{\"text\": ...}}.") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise _user_error(
                f"{name}, line {number}: expected an object with a \"text\" string (and optionally \"text_pair\"); "
                f"got {line.strip()[:80]!r}."
            )
        pair = record.get("text_pair")
        if pair is not None and not isinstance(pair, str):
            raise _user_error(f"{name}, line {number}: \"text_pair\" must be a string, got {pair!r:.60}.")
        inputs.append({"text": record["text"], "text_pair": pair} if pair is not None else record["text"])
    return inputs


def _predictor(model: str, device: Any, batch_size: int, kwargs: dict[str, Any]) -> Any:
    """An ONNX export folder on the CPU runs on the torch-free `hf_mtl.runtime.OnnxPredictor` (the pipeline's own
    code without importing torch or transformers: faster to start); anything else on `pipeline("multitask")`."""
    from ..export import is_onnx_export

    if is_onnx_export(model) and device in (None, "cpu", "-1", -1):
        from ..runtime import OnnxPredictor

        return OnnxPredictor(model, batch_size=batch_size, **kwargs)
    from transformers import pipeline

    import hf_mtl  # noqa: F401 - registers the "multitask" pipeline task

    return pipeline("multitask", model=model, device=device, batch_size=batch_size, **kwargs)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise _user_error(f"--batch-size must be a positive integer, got {args.batch_size}.")
    inputs: list[Any] = list(args.texts)
    from_file = args.input is not None
    if from_file:
        if args.input == "-":
            inputs.extend(read_inputs(sys.stdin, "<stdin>"))
        else:
            with open(args.input, encoding="utf-8") as handle:
                inputs.extend(read_inputs(handle, args.input))
    elif not inputs:
        raise _user_error("nothing to predict on: give TEXT arguments or --input FILE (or --input - for stdin).")

    kwargs: dict[str, Any] = {}
    if args.aggregation_strategy:
        kwargs["aggregation_strategy"] = args.aggregation_strategy
    if args.tasks:
        kwargs["tasks"] = args.tasks
    predictor = _predictor(args.model, args.device, args.batch_size, kwargs)

    output = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    pretty = not args.output and output.isatty() and len(inputs) <= PRETTY_PRINT_MAX
    progress = None
    if from_file and not args.no_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(inputs), desc="Predicting", unit="text", file=sys.stderr)
    try:
        # An iterator is streamed: the pipeline reads it a few batches at a time (length-sorted within), so
        # results are written as they come and its memory stays bounded on big files.
        for item, result in zip(inputs, predictor(iter(inputs))):
            if pretty:
                text = item if isinstance(item, str) else f"{item['text']} || {item['text_pair']}"
                output.write(f">>> {text}\n{json.dumps(result, indent=2, ensure_ascii=False)}\n")
            else:
                output.write(json.dumps(result, ensure_ascii=False) + "\n")
            if progress is not None:
                progress.update(1)
    finally:
        if progress is not None:
            progress.close()
        if output is not sys.stdout:
            output.close()
        else:
            output.flush()
    return 0
