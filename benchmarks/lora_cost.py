"""Training cost of LoRA against full fine-tuning: `MultiTaskTrainer` on the three-task mix with MiniLM-L6.

Settings (same data, batch size, learning rate, tokenization and task sampling):

- `full`    : every parameter of the encoder and the heads trains;
- `lora-r8` : `MultiTaskModel.from_encoder(..., peft_config=LoraConfig(r=8, lora_alpha=16))` with the encoder
              family's default target modules (query, key, value and every `dense` projection); heads fully trained;
- `lora-r16`: the same with r=16, lora_alpha=32;
- `lora-r8-nodropout` (with `--settings`): r=8 with lora_dropout=0.

Each run is a fresh subprocess (so its peak resident memory is its own: `ru_maxrss`, model, optimizer state,
activations and data included), runs `--warmup` untimed steps then `--steps` timed ones; the step time is the
median of the timed steps (wall clock between step ends, data loading included). Settings run in `--repeats`
rounds in alternating order; the table shows each setting's median over rounds, the ratios are the median over
rounds of the ratio within a round (runs close in time see similar load on a shared CPU). The load average is
recorded after every run. Nothing here is a test: times depend on the machine and its load.

    python benchmarks/lora_cost.py [--data-dir ../shared/data] [--steps 30] [--batch-size 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# On a shared CPU, OpenMP threads that spin while waiting make 2-thread torch up to 10x slower whenever
# another process holds a core; passive waiting keeps timings stable (set before torch is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import finish, load_average, machine_info, setup_run, table  # noqa: E402
from benchmarks._data import DEFAULT_DATA_DIR, TASKS, model_dir, task_datasets  # noqa: E402

#: setting -> LoRA settings (None: full fine-tuning)
SETTINGS: dict[str, dict[str, Any] | None] = {
    "full": None,
    "lora-r8": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1},
    "lora-r16": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1},
    # not run by default: r=8 without LoRA dropout (peft then feeds the layer input to the adapter as it is,
    # instead of a dropped-out copy kept for the backward pass)
    "lora-r8-nodropout": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
}
DEFAULT_SETTINGS = ("full", "lora-r8", "lora-r16")


def run_one(setting: str, args: argparse.Namespace) -> dict[str, Any]:
    """One training run in this process: step times, parameter counts and peak RSS."""
    import torch
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback

    from hf_mtl import MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments, prepare_datasets
    from hf_mtl.lora import parameter_counts

    setup_run(args.threads)
    model_path = args.model or model_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    raw = task_datasets(args.data_dir, "train", {t.name: args.examples_per_task for t in TASKS}, seed=args.seed)
    prepared = prepare_datasets(raw, TASKS, tokenizer, split="train")
    torch.manual_seed(args.seed)
    lora = SETTINGS[setting]
    peft_config = LoraConfig(**lora, target_modules=None) if lora else None
    model = MultiTaskModel.from_encoder(model_path, tasks=TASKS, peft_config=peft_config)
    counts = parameter_counts(model)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self.ends.append(time.perf_counter())

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        training_args = MultiTaskTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=args.warmup + args.steps,
            learning_rate=args.learning_rate, warmup_steps=0, logging_steps=10_000, save_strategy="no",
            report_to=[], disable_tqdm=True, seed=args.seed, use_cpu=not torch.cuda.is_available(),
            task_sampling_strategy="proportional",
        )
        trainer = MultiTaskTrainer(model=model, args=training_args, train_dataset=prepared, processing_class=tokenizer,
                                   callbacks=[timer])
        trainer.train()
    steps = np.diff(timer.ends[args.warmup - 1:])
    return {
        "setting": setting,
        "lora": lora,
        "trainable_parameters": counts["trainable"],
        "total_parameters": counts["total"],
        "step_seconds_median": float(np.median(steps)),
        "step_seconds": [float(x) for x in steps],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(setting: str, args: argparse.Namespace) -> dict[str, Any]:
    options = ["--data-dir", args.data_dir, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--examples-per-task", str(args.examples_per_task),
               "--seed", str(args.seed), "--learning-rate", str(args.learning_rate)]
    if args.model:
        options += ["--model", args.model]
    if args.threads:
        options += ["--threads", str(args.threads)]
    result = subprocess.run([sys.executable, __file__, "--one", setting, *options], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{setting} run failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--model", default=None, help="encoder checkpoint (default: the packaged MiniLM-L6)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (>= 1)")
    parser.add_argument("--examples-per-task", type=int, default=600, help="seeded train subset per task")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default=",".join(DEFAULT_SETTINGS), help=f"comma-separated, of {list(SETTINGS)}")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the settings (alternating order)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one run, JSON on stdout
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/lora_cost.json)")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be >= 1")
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return {}
    return run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info()
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in settings}
    for rep in range(args.repeats):
        for setting in settings if rep % 2 == 0 else list(reversed(settings)):
            r = _child(setting, args)
            r["load_average_after"] = load_average()
            runs[setting].append(r)
            print(f"[{setting} run {rep + 1}] step {r['step_seconds_median']:.3f} s, peak RSS "
                  f"{r['peak_rss_mib']:.0f} MiB, load {r['load_average_after']}", flush=True)

    results = {}
    for setting in settings:
        first = runs[setting][0]
        results[setting] = {
            "setting": setting,
            "lora": first["lora"],
            "trainable_parameters": first["trainable_parameters"],
            "total_parameters": first["total_parameters"],
            "trainable_share": first["trainable_parameters"] / first["total_parameters"],
            "step_seconds_median": float(np.median([r["step_seconds_median"] for r in runs[setting]])),
            "peak_rss_mib": float(np.median([r["peak_rss_mib"] for r in runs[setting]])),
            "runs": [{k: r[k] for k in ("step_seconds_median", "peak_rss_mib", "load_average_after")}
                     for r in runs[setting]],
        }

    def round_ratio(a: str, key: str) -> tuple[float | None, list[float]]:
        """Median over rounds of `a / full` within each round."""
        if "full" not in runs:
            return None, []
        per_round = [x[key] / y[key] for x, y in zip(runs[a], runs["full"])]
        return float(np.median(per_round)), per_round

    rows = []
    for setting, r in results.items():
        step_ratio, step_rounds = round_ratio(setting, "step_seconds_median")
        rss_ratio, _ = round_ratio(setting, "peak_rss_mib")
        r["vs_full"] = {"step_time": step_ratio, "step_time_per_round": step_rounds, "peak_rss": rss_ratio,
                        "trainable_parameters": r["trainable_parameters"] / results["full"]["trainable_parameters"]
                        if "full" in results else None}
        rows.append({
            **r, "step_ratio": step_ratio, "rss_ratio": rss_ratio,
            "trainable_ratio": r["vs_full"]["trainable_parameters"],
            "loads": " / ".join(", ".join(f"{x:.1f}" for x in run["load_average_after"] or []) for run in r["runs"]),
        })
    text = table(rows, [
        ("setting", "setting", ""), ("trainable_parameters", "trainable params", ",d"),
        ("trainable_share", "trainable share", ".2%"), ("trainable_ratio", "trainable vs full", ".3f"),
        ("step_seconds_median", "step s (median)", ".3f"), ("step_ratio", "step time vs full", ".2f"),
        ("peak_rss_mib", "peak RSS MiB", ".0f"), ("rss_ratio", "peak RSS vs full", ".2f"),
        ("loads", "load avg after each run", ""),
    ])
    print()
    print(text)
    payload = {
        "benchmark": "lora_cost",
        "command": "python benchmarks/lora_cost.py " + " ".join(sys.argv[1:]),
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "one")},
        "machine": info,
        "results": results,
        "table": text,
    }
    return finish("lora_cost", payload, args.out)


if __name__ == "__main__":
    main()
