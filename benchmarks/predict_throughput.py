"""Inference throughput: `MultiTaskPipeline` against the built-in transformers pipelines and the forward floor.

Input: a fixed mix of real texts (equal thirds of SST-2 sentences, AG News articles and CoNLL-2003 sentences
joined to text, seeded order). Model: MiniLM-L6 with three heads (sentiment, topic, NER). Same batch size
everywhere. Settings, all in one process and one run:

- `(a) multitask`       : `MultiTaskPipeline`, all three heads;
- `(b) 3 builtin`       : three built-in pipelines run one after the other (`text-classification` x2,
                          `token-classification` with the same aggregation), each on its own single-task
                          model of the same size (`MultiTaskModel.task_view(name)`: a BERT-size
                          `*ForSequenceClassification`-style model, whose outputs are comparable to (a));
- `(c) floor`           : tokenization plus one encoder forward in length-sorted batches, no postprocessing;
- `(c') floor unsorted` : the same forward in input order (context only);
- single head: `MultiTaskPipeline(tasks=["sentiment"])` against the built-in `text-classification` pipeline
  on the same model, on the mixed input and on uniform-length input (SST-2 sentences of one token length);
- `ort_fp32` / `ort_int8` : `MultiTaskPipeline` on ONNX Runtime (`pipeline("multitask", model=<export>)`, all
  three heads, same pre/postprocessing as (a)) with the export's `model.onnx` / `model.int8.onnx`; the export
  is `--onnx-dir`, else made at start (`export_onnx(model, tmp, quantize="int8", optimize=True)`); `ort_fp32_opt`: the
  fused graph of `export_onnx(optimize=True)` (`model.opt.onnx`, fused attention), `ort_int8_opt` its int8;
  `ort:<file>` any other file of the export folder. Targets: vs (c), the PyTorch floor.

Settings run in `--repeats` rounds (alternating order). The table gives each setting's best run; the target
ratios are the median over rounds of the ratio within a round (runs close in time see similar load, which
matters on a shared CPU). Peak memory is the
resident-memory growth during the run (process-wide, comparable side by side only). Not a test.

    python benchmarks/predict_throughput.py [--data-dir ../shared/data] [--n-texts 1800] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# On a shared CPU, OpenMP threads that spin while waiting make 2-thread torch up to 10x slower whenever
# another process holds a core; passive waiting keeps timings stable (set before torch is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (  # noqa: E402
    PeakMemory,
    finish,
    load_average,
    machine_info,
    setup_run,
    table,
    target_line,
    targets_table,
)
from benchmarks._data import DEFAULT_DATA_DIR, TASKS, mixed_texts, model_dir, read_sst2  # noqa: E402


def build_model(model_path: str | None, seed: int):
    """A trained multi-task checkpoint (`--model-dir`), or MiniLM with three freshly initialised heads."""
    import torch

    from hf_mtl import MultiTaskModel

    torch.manual_seed(seed)
    if model_path and _is_multitask_dir(model_path):
        model = MultiTaskModel.from_pretrained(model_path)
    else:
        model = MultiTaskModel.from_encoder(model_path or model_dir(), tasks=TASKS)
    return model.eval()


def _is_multitask_dir(path: str) -> bool:
    """Whether `path` is a saved hf_mtl checkpoint (its config names hf_mtl's model type)."""
    import json

    from hf_mtl import MultiTaskConfig

    config = Path(path, "config.json")
    return config.is_file() and json.loads(config.read_text()).get("model_type") == MultiTaskConfig.model_type


def uniform_texts(data_dir: str, tokenizer: Any, n: int, n_tokens: int = 24) -> list[str]:
    """`n` SST-2 training sentences that all tokenize to exactly `n_tokens` tokens (special tokens included)."""
    rows = [r["text"] for r in read_sst2(data_dir, "train")]
    picked: list[str] = []
    for start in range(0, len(rows), 5000):  # tokenize only as much as needed
        chunk = rows[start : start + 5000]
        lengths = [len(ids) for ids in tokenizer(chunk)["input_ids"]]
        picked.extend(t for t, n_ in zip(chunk, lengths) if n_ == n_tokens)
        if len(picked) >= n:
            break
    picked = picked[:n]
    if len(picked) < n:
        raise ValueError(f"only {len(picked)} SST-2 sentences of {n_tokens} tokens")
    return picked


def floor_fn(model: Any, tokenizer: Any, batch_size: int, sort: bool) -> Callable[[list[str]], None]:
    """Tokenization (one call) plus one encoder forward per batch; no heads, no postprocessing."""
    import torch

    encoder = model.encoder

    def run(texts: list[str]) -> None:
        encoded = tokenizer(texts, truncation=True)
        ids = encoded["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i])) if sort else list(range(len(ids)))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = [{k: encoded[k][i] for k in encoded.keys()} for i in order[start : start + batch_size]]
                batch = tokenizer.pad(rows, return_tensors="pt")
                encoder(**batch)

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--model", default=None,
                        help="encoder checkpoint, or a trained multi-task checkpoint (default: MiniLM-L6, new heads)")
    parser.add_argument("--n-texts", type=int, default=1800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per setting (best is reported)")
    parser.add_argument("--aggregation", default="first", help="token-classification aggregation_strategy (default: the pipeline's, first)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--settings", default="a,b,c,c_unsorted,single_mixed,builtin_single_mixed,"
                        "single_uniform,builtin_single_uniform")
    parser.add_argument("--onnx-dir", default=None, help="`hf-mtl export --quantize int8` folder of --model "
                        "(default: exported at start into a temporary folder)")
    parser.add_argument("--ort-threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its choice)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/predict_throughput.json)")
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, pipeline

    from hf_mtl import TokenClassificationTask, tasks_from_config
    from hf_mtl.pipeline import MultiTaskPipeline

    setup_run(args.threads)
    info = machine_info()
    model = build_model(args.model, args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model if args.model and _is_multitask_dir(args.model) else
                                              (model.config.base_model_name_or_path or model_dir()))
    texts = mixed_texts(args.data_dir, args.n_texts, seed=args.seed)
    n_uniform = max(32, args.n_texts // 3)
    uniform = uniform_texts(args.data_dir, tokenizer, n_uniform)
    bs = args.batch_size
    agg = args.aggregation

    mtl = MultiTaskPipeline(model=model, tokenizer=tokenizer, batch_size=bs, aggregation_strategy=agg)
    tasks = tasks_from_config(model)  # a trained checkpoint's own heads, not necessarily benchmarks' TASKS
    views = {t.name: model.task_view(t.name).eval() for t in tasks}
    builtin = {}
    for task in tasks:
        kind = "token-classification" if isinstance(task, TokenClassificationTask) else "text-classification"
        kwargs = {"aggregation_strategy": agg} if kind == "token-classification" else {}
        builtin[task.name] = pipeline(kind, model=views[task.name], tokenizer=tokenizer, batch_size=bs, **kwargs)

    single = next(t.name for t in tasks if not isinstance(t, TokenClassificationTask))
    chosen = [s.strip() for s in args.settings.split(",") if s.strip()]
    ort = {key: ort_pipeline(model, tokenizer, args, key, bs, agg) for key in chosen if key.startswith("ort")}

    def three_builtin(xs):
        return {name: pipe(xs) for name, pipe in builtin.items()}

    settings: dict[str, tuple[str, Callable[[], Any], int]] = {
        "a": ("(a) MultiTaskPipeline, 3 heads", lambda: mtl(texts), len(texts)),
        "b": ("(b) 3 built-in pipelines in turn", lambda: three_builtin(texts), len(texts)),
        "c": ("(c) floor: tokenize + encoder, length-sorted", lambda: floor_fn(model, tokenizer, bs, True)(texts), len(texts)),
        "c_unsorted": ("(c') floor, input order", lambda: floor_fn(model, tokenizer, bs, False)(texts), len(texts)),
        "single_mixed": (f"MultiTaskPipeline(tasks=[{single}]), mixed", lambda: mtl(texts, tasks=[single]), len(texts)),
        "builtin_single_mixed": ("built-in text-classification, mixed", lambda: builtin[single](texts), len(texts)),
        "single_uniform": (f"MultiTaskPipeline(tasks=[{single}]), uniform {len(uniform)}",
                           lambda: mtl(uniform, tasks=[single]), len(uniform)),
        "builtin_single_uniform": (f"built-in text-classification, uniform {len(uniform)}",
                                   lambda: builtin[single](uniform), len(uniform)),
    }
    for key, pipe in ort.items():
        settings[key] = (f"{key}: MultiTaskPipeline on ORT, {pipe.model.file}, 3 heads", functools.partial(pipe, texts), len(texts))
    unknown = [s for s in chosen if s not in settings]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; choose from {list(settings)}")

    # warm-up: every setting once on a few texts (allocator, thread pools, lazy imports)
    for key in chosen:
        label, fn, _ = settings[key]
        if key in ("a", "single_mixed"):
            mtl(texts[: 2 * bs], tasks=None if key == "a" else [single])
        elif key in ("b",):
            three_builtin(texts[: 2 * bs])
        elif key.startswith("builtin"):
            builtin[single](texts[: 2 * bs])
        elif key in ort:
            ort[key](texts[: 2 * bs])

    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in chosen}
    outputs: dict[str, Any] = {}
    torch.manual_seed(args.seed)
    for rep in range(args.repeats):
        for key in chosen if rep % 2 == 0 else list(reversed(chosen)):
            label, fn, n = settings[key]
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                out = fn()
                seconds = time.perf_counter() - t0
            if key in ("a", "b") and key not in outputs:
                outputs[key] = out
            runs[key].append({"seconds": seconds, "texts_per_s": n / seconds, "peak_mib": mem.peak_mib,
                              "load_average": load_average()})
            print(f"[{key} run {rep + 1}] {n / seconds:.1f} texts/s, +{mem.peak_mib:.0f} MiB", flush=True)

    results = {}
    for key in chosen:
        label, _, n = settings[key]
        best = max(runs[key], key=lambda r: r["texts_per_s"])
        results[key] = {"setting": label, "texts": n, "texts_per_s": best["texts_per_s"],
                        "seconds": best["seconds"], "peak_mib": max(r["peak_mib"] for r in runs[key]),
                        "runs": runs[key]}

    def ratio(a: str, b: str) -> float | None:
        if a in results and b in results:
            return results[a]["texts_per_s"] / results[b]["texts_per_s"]
        return None

    for key, r in results.items():
        r["vs_b"] = ratio(key, "b") if key in ("a", "b", "c", "c_unsorted") else None
        r["vs_c"] = ratio(key, "c") if key in ("a", "b", "c", "c_unsorted") or key in ort else None
    def round_ratio(a: str, b: str) -> tuple[float | None, list[float]]:
        """Median over rounds of the ratio within each round (runs close in time see similar load)."""
        if a not in runs or b not in runs:
            return None, []
        per_round = [x["texts_per_s"] / y["texts_per_s"] for x, y in zip(runs[a], runs[b])]
        return float(np.median(per_round)), per_round

    targets = []
    for name, a, b, target in (
        ("(a) / (b): multitask vs 3 built-in pipelines", "a", "b", 6.0),
        ("(a) / (c): multitask vs forward floor", "a", "c", 0.85),
        ("single head vs built-in text-classification, mixed", "single_mixed", "builtin_single_mixed", 2.0),
        ("single head vs built-in text-classification, uniform", "single_uniform", "builtin_single_uniform", 1.0),
        ("ORT fp32 pipeline (3 heads) vs PyTorch forward floor (c)", "ort_fp32", "c", 1.3),
        ("ORT fp32 optimized pipeline vs PyTorch forward floor (c)", "ort_fp32_opt", "c", 1.3),
        ("ORT int8 pipeline (3 heads) vs PyTorch forward floor (c)", "ort_int8", "c", 2.5),
        ("ORT int8 optimized pipeline vs PyTorch forward floor (c)", "ort_int8_opt", "c", 2.5),
    ):
        if a not in runs or b not in runs:
            continue
        value, per_round = round_ratio(a, b)
        targets.append({**target_line(name, value, target), "per_round": per_round, "best_of_ratio": ratio(a, b)})
    agreement = compare_outputs(outputs.get("a"), outputs.get("b")) if "a" in outputs and "b" in outputs else None
    text = table(list(results.values()), [
        ("setting", "setting", ""), ("texts", "texts", "d"), ("texts_per_s", "texts/s", ".1f"),
        ("peak_mib", "peak RSS growth (MiB)", ".0f"), ("vs_b", "vs (b)", ".2f"), ("vs_c", "vs (c)", ".2f"),
    ])
    print()
    print(text)
    print()
    print(targets_table(targets))
    if agreement:
        print(f"\n(a) vs (b) outputs: {agreement}")
    payload = {
        "benchmark": "predict_throughput",
        "command": "python benchmarks/predict_throughput.py " + " ".join(sys.argv[1:]),
        "config": {**{k: v for k, v in vars(args).items() if k != "out"}, "uniform_texts": len(uniform),
                   "uniform_tokens": 24, "heads": "trained checkpoint" if args.model and _is_multitask_dir(args.model)
                   else "freshly initialised (random) heads on MiniLM-L6"},
        "machine": info,
        "results": results,
        "targets": targets,
        "outputs_agreement": agreement,
        "table": text,
        "targets_table": targets_table(targets),
    }
    return finish("predict_throughput", payload, args.out)


def ort_pipeline(model: Any, tokenizer: Any, args: argparse.Namespace, key: str, batch_size: int, aggregation: str) -> Any:
    """`MultiTaskPipeline` on ONNX Runtime for setting `key` (`ort_fp32`, `ort_fp32_opt`, `ort_int8`, `ort_int8_opt`, `ort:<file>`)."""
    import tempfile

    from hf_mtl.export import export_onnx
    from hf_mtl.onnx_backend import OnnxMultiTaskModel
    from hf_mtl.pipeline import MultiTaskPipeline

    if not args.onnx_dir or not Path(args.onnx_dir, "config.json").exists():
        args.onnx_dir = args.onnx_dir or tempfile.mkdtemp(prefix="predict_throughput_onnx_")
        t0 = time.perf_counter()
        result = export_onnx(model, args.onnx_dir, quantize="int8", tokenizer=tokenizer, optimize=True)
        print(f"exported to {args.onnx_dir} in {time.perf_counter() - t0:.0f} s: {result.files}", flush=True)
    file = ORT_FILES.get(key) or key.split(":", 1)[1]  # "ort:<file>": any file of the export folder
    described = Path(args.onnx_dir, "config.json")
    config = json.loads(described.read_text())
    if file not in config["onnx_export"]["files"]:
        raise SystemExit(f"{args.onnx_dir} has no {file}: export with `hf-mtl export ... --optimize` for the *_opt settings")
    ort_model = OnnxMultiTaskModel.from_pretrained(args.onnx_dir, file=file, intra_op_num_threads=args.ort_threads)
    return MultiTaskPipeline(model=ort_model, tokenizer=tokenizer, batch_size=batch_size, aggregation_strategy=aggregation)


#: ONNX Runtime settings -> the export folder's file they run
ORT_FILES = {"ort_fp32": "model.onnx", "ort_int8": "model.int8.onnx", "ort_fp32_opt": "model.opt.onnx",
             "ort_int8_opt": "model.opt.int8.onnx"}


def compare_outputs(a: list[dict[str, Any]], b: dict[str, list[Any]]) -> dict[str, Any]:
    """How often (a) and (b) agree: same label per classification head, same entity groups for NER."""
    out = {}
    for name, b_results in b.items():
        same = 0
        for a_item, b_item in zip(a, b_results):
            x = a_item[name]
            if isinstance(x, list):  # a token head's entity list
                same += [(e["entity_group"], e["start"], e["end"]) for e in x] == [
                    (e["entity_group"], e["start"], e["end"]) for e in b_item]
            else:
                same += x["label"] == b_item["label"]
        out[name] = f"{same}/{len(a)} identical"
    return out


if __name__ == "__main__":
    main()
