"""Cold start and peak memory: PyTorch checkpoint vs its ONNX export (on the pipeline, and on the torch-free
`hf_mtl.runtime.OnnxPredictor`), each in a fresh process.

Each case runs in a new Python process: import, load (`pipeline("multitask", model=...)`, or
`OnnxPredictor(export, file=...)` for the torch-free cases, which also check that torch and transformers were
never imported), first prediction on one text; the process reports its wall time from start to first result
and its peak resident memory (`ru_maxrss`). Cases alternate over `--repeats` rounds; the table gives medians.
Also the process wall time of `hf-mtl --help`, `python -c "import hf_mtl"` and `python -c "import
hf_mtl.runtime"`. Not a test.

    python benchmarks/onnx_cold_start.py --model /tmp/ckpt_bench --export /tmp/onnx_bench_full
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import finish, load_average, machine_info, table  # noqa: E402

CHILD = """
import resource, sys, time, json
t0 = time.perf_counter()
import hf_mtl
from transformers import pipeline
kwargs = {} if len(sys.argv) < 3 else {"model_kwargs": {"file": sys.argv[2]}}
predict = pipeline("multitask", model=sys.argv[1], **kwargs)
t1 = time.perf_counter()
predict("Apple opened a new store in Paris and I love it")
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "first_s": t2 - t1, "total_s": t2 - t0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

RUNTIME_CHILD = """
import resource, sys, time, json
t0 = time.perf_counter()
from hf_mtl.runtime import OnnxPredictor
predict = OnnxPredictor(sys.argv[1], file=sys.argv[2])
t1 = time.perf_counter()
predict("Apple opened a new store in Paris and I love it")
t2 = time.perf_counter()
assert "torch" not in sys.modules and "transformers" not in sys.modules
print(json.dumps({"load_s": t1 - t0, "first_s": t2 - t1, "total_s": t2 - t0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
#: process wall time of these commands (fresh processes), besides the cases
STARTUP = {
    "hf-mtl --help": ["-m", "hf_mtl", "--help"],
    "import hf_mtl": ["-c", "import hf_mtl"],
    "import hf_mtl.runtime": ["-c", "import hf_mtl.runtime"],
}


def run_case(args: list[str], child: str = CHILD) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", child, *args], capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t0
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": wall}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--export", required=True)
    parser.add_argument("--files", default="model.onnx,model.opt.onnx,model.int8.onnx,model.opt.int8.onnx")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import numpy as np

    cases = {"PyTorch checkpoint": [args.model]}
    children = {"PyTorch checkpoint": CHILD}
    for name in args.files.split(","):
        if Path(args.export, name).exists():
            cases[f"ONNX {name}"] = [args.export, name]
            children[f"ONNX {name}"] = CHILD
    for name in args.files.split(","):
        if Path(args.export, name).exists():
            cases[f"torch-free OnnxPredictor {name}"] = [args.export, name]
            children[f"torch-free OnnxPredictor {name}"] = RUNTIME_CHILD
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in cases}
    startup_runs: dict[str, list[float]] = {k: [] for k in STARTUP}
    for rep in range(args.repeats):
        for key in (list(cases) if rep % 2 == 0 else list(reversed(cases))):
            runs[key].append(run_case(cases[key], children[key]))
            print(f"[{key} run {rep + 1}] {runs[key][-1]}", flush=True)
        for key, command in STARTUP.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, *command], capture_output=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
            startup_runs[key].append(time.perf_counter() - t0)
    help_runs = startup_runs["hf-mtl --help"]
    rows = []
    for key, values in runs.items():
        row = {"case": key, **{m: float(np.median([v[m] for v in values])) for m in values[0]}}
        size = Path(*cases[key]).stat().st_size if len(cases[key]) > 1 else Path(args.model, "model.safetensors").stat().st_size
        row["file_mb"] = size / 1e6
        rows.append(row)
    text = table(rows, [("case", "case", ""), ("file_mb", "file MB", ".1f"), ("load_s", "import + load (s)", ".2f"),
                        ("first_s", "first prediction (s)", ".3f"), ("process_s", "process wall (s)", ".2f"),
                        ("peak_rss_mib", "peak RSS (MiB)", ".0f")])
    print()
    print(text)
    print()
    for key, values in startup_runs.items():
        print(f"{key}: median {float(np.median(values)):.2f} s over {len(values)} runs (process wall)")
    payload = {"benchmark": "onnx_cold_start", "command": "python benchmarks/onnx_cold_start.py " + " ".join(sys.argv[1:]),
               "config": vars(args), "machine": machine_info(), "load_average": load_average(), "results": rows,
               "runs": runs, "help_s": help_runs, "startup_s": startup_runs,
               "table": text}
    return finish("onnx_cold_start", payload, args.out)


if __name__ == "__main__":
    main()
