"""Cold start and peak memory: PyTorch checkpoint vs its ONNX export, each in a fresh process.

Each case runs in a new Python process: import, load (`pipeline("multitask", model=...)`), first prediction
on one text; the process reports its wall time from start to first result and its peak resident memory
(`ru_maxrss`). Cases alternate over `--repeats` rounds; the table gives medians. Also `hf-mtl --help`.
Not a test.

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


def run_case(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, check=True)
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
    for name in args.files.split(","):
        if Path(args.export, name).exists():
            cases[f"ONNX {name}"] = [args.export, name]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in cases}
    help_runs = []
    for rep in range(args.repeats):
        for key in (list(cases) if rep % 2 == 0 else list(reversed(cases))):
            runs[key].append(run_case(cases[key]))
            print(f"[{key} run {rep + 1}] {runs[key][-1]}", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hf_mtl", "--help"], capture_output=True, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        help_runs.append(time.perf_counter() - t0)
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
    print(f"\nhf-mtl --help: median {float(np.median(help_runs)):.2f} s over {len(help_runs)} runs")
    payload = {"benchmark": "onnx_cold_start", "command": "python benchmarks/onnx_cold_start.py " + " ".join(sys.argv[1:]),
               "config": vars(args), "machine": machine_info(), "load_average": load_average(), "results": rows,
               "runs": runs, "help_s": help_runs, "table": text}
    return finish("onnx_cold_start", payload, args.out)


if __name__ == "__main__":
    main()
