"""Training throughput: `MultiTaskTrainer` on the three-task mix against the plain `transformers.Trainer`.

Four settings, one process, same model size (MiniLM-L6), batch size, learning rate and tokenization:

- `plain/random`  : `transformers.Trainer` + `AutoModelFor{Sequence,Token}Classification`, one run per task,
                    default (random) batching; each task gets as many steps as it had in the multi-task mix;
- `plain/grouped` : the same with `train_sampling_strategy="group_by_length"`;
- `mtl/random`    : `MultiTaskTrainer`, one `MultiTaskModel` with three heads, proportional task sampling;
- `mtl/grouped`   : the same with length grouping within tasks (`group_by_length=True`).

Settings run in `--repeats` rounds (alternating order); the table gives each setting's fastest run, the target
ratios the median over rounds of the ratio within a round (adjacent runs see similar load on a shared CPU).
Each setting runs `--warmup` untimed steps then `--steps` timed steps (wall clock from the end of the last
warm-up step to the end of the last step, data loading included). Examples/s counts the examples in the
timed batches; the padding fraction is the share of padded positions in them. Nothing here is a test:
times depend on the machine and its load, and only ratios from one run mean anything.

    python benchmarks/train_throughput.py [--data-dir ../shared/data] [--steps 30] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# On a shared CPU, OpenMP threads that spin while waiting make 2-thread torch up to 10x slower whenever
# another process holds a core; passive waiting keeps timings stable (set before torch is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import finish, load_average, machine_info, setup_run, table, target_line, targets_table  # noqa: E402
from benchmarks._data import DEFAULT_DATA_DIR, TASKS, model_dir, task_datasets  # noqa: E402


#: attention implementation used by every model (set from --attn)
ATTN = ["sdpa"]


class BatchLog:
    """Wraps a collator and records, per produced batch, its task, size and real/padded token counts."""

    def __init__(self, collator: Any, task_name: str | None = None):
        self.collator = collator
        self.task_name = task_name
        self.batches: list[dict[str, Any]] = []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        mask = batch["attention_mask"]
        self.batches.append(
            {
                "task": batch.get("task_name", self.task_name),
                "size": int(mask.shape[0]),
                "tokens": int(mask.sum()),
                "positions": int(mask.numel()),
            }
        )
        return batch


def _step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    return StepTimer()


def _args(cls, output_dir: str, batch_size: int, max_steps: int, seed: int, **extra: Any):
    return cls(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        max_steps=max_steps,
        learning_rate=5e-5,
        warmup_steps=0,
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=seed,
        dataloader_num_workers=0,
        use_cpu=not _cuda(),
        **extra,
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _summarise(name: str, log: BatchLog, timer: Any, warmup: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    n_steps = len(timer.ends)
    timed = log.batches[warmup:n_steps]
    seconds = timer.ends[-1] - timer.ends[warmup - 1] if warmup > 0 else None
    if seconds is None:
        raise ValueError("--warmup must be >= 1")
    examples = sum(b["size"] for b in timed)
    tokens = sum(b["tokens"] for b in timed)
    positions = sum(b["positions"] for b in timed)
    return {
        "setting": name,
        "steps": len(timed),
        "examples": examples,
        "seconds": seconds,
        "examples_per_s": examples / seconds,
        "padding_fraction": 1 - tokens / positions,
        "positions_per_s": positions / seconds,
        "tokens": tokens,
        "positions": positions,
        "batches_per_task": dict(Counter(b["task"] for b in timed)),
        **(extra or {}),
    }


def run_mtl(model_path, tokenizer, prepared, batch_size, steps, warmup, seed, grouped, tmp) -> dict[str, Any]:
    import torch

    from hf_mtl import MultiTaskDataCollator, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments

    torch.manual_seed(seed)
    model = MultiTaskModel.from_encoder(model_path, tasks=TASKS, attn_implementation=ATTN[0])
    log = BatchLog(MultiTaskDataCollator(tokenizer, TASKS))
    timer = _step_timer()
    args = _args(
        MultiTaskTrainingArguments, tmp, batch_size, warmup + steps, seed,
        task_sampling_strategy="proportional", group_by_length=grouped,
    )
    trainer = MultiTaskTrainer(
        model=model, args=args, train_dataset=prepared, data_collator=log, processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    return _summarise(f"mtl/{'grouped' if grouped else 'random'}", log, timer, warmup)


def run_plain(model_path, tokenizer, prepared, batch_size, steps_per_task, warmup, seed, grouped, tmp) -> dict[str, Any]:
    """One plain Trainer run per task (steps as in the multi-task mix); totals are summed over tasks."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    per_task = {}
    for task in TASKS:
        steps = steps_per_task.get(task.name, 0)
        if steps == 0:
            continue
        torch.manual_seed(seed)
        kwargs = dict(num_labels=task.num_labels, id2label=task.id2label, label2id=task.label2id,
                      attn_implementation=ATTN[0])
        if task.name == "ner":
            model = AutoModelForTokenClassification.from_pretrained(model_path, **kwargs)
            collator = DataCollatorForTokenClassification(tokenizer)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(model_path, **kwargs)
            collator = DataCollatorWithPadding(tokenizer)
        log = BatchLog(collator, task.name)
        timer = _step_timer()
        extra = {"train_sampling_strategy": "group_by_length"} if grouped else {}
        args = _args(TrainingArguments, tmp, batch_size, warmup + steps, seed, **extra)
        trainer = Trainer(
            model=model, args=args, train_dataset=prepared[task.name], data_collator=log,
            processing_class=tokenizer, callbacks=[timer],
        )
        trainer.train()
        per_task[task.name] = _summarise(task.name, log, timer, warmup)
    seconds = sum(r["seconds"] for r in per_task.values())
    examples = sum(r["examples"] for r in per_task.values())
    return {
        "setting": f"plain/{'grouped' if grouped else 'random'}",
        "steps": sum(r["steps"] for r in per_task.values()),
        "examples": examples,
        "seconds": seconds,
        "examples_per_s": examples / seconds,
        "padding_fraction": _pooled_padding(per_task),
        "positions_per_s": sum(r["positions"] for r in per_task.values()) / seconds,
        "tokens": sum(r["tokens"] for r in per_task.values()),
        "positions": sum(r["positions"] for r in per_task.values()),
        "batches_per_task": {k: r["steps"] for k, r in per_task.items()},
        "per_task": per_task,
    }


def _pooled_padding(per_task: dict[str, dict[str, Any]]) -> float:
    positions = sum(r["positions"] for r in per_task.values())
    tokens = sum(r["tokens"] for r in per_task.values())
    return 1 - tokens / positions


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--model", default=None, help="encoder checkpoint (default: the packaged MiniLM-L6)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--examples-per-task", type=int, default=6000, help="seeded train subset per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default="mtl/random,plain/random,mtl/grouped,plain/grouped")
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds over the settings (alternating order); the fastest run of each is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--attn", default="sdpa", help="attention implementation of every model (eager, sdpa)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/train_throughput.json)")
    args = parser.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from hf_mtl import prepare_datasets

    ATTN[0] = args.attn
    setup_run(args.threads)
    model_path = args.model or model_dir()
    info = machine_info()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    sizes = {t.name: args.examples_per_task for t in TASKS}
    raw = task_datasets(args.data_dir, "train", sizes, seed=args.seed)
    prepared = prepare_datasets(raw, TASKS, tokenizer, split="train")
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in settings}
    mix: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for setting in settings if rep % 2 == 0 else list(reversed(settings)):
                kind, batching = setting.split("/")
                grouped = batching == "grouped"
                t0 = time.perf_counter()
                if kind == "mtl":
                    r = run_mtl(model_path, tokenizer, prepared, args.batch_size, args.steps, args.warmup, args.seed,
                                grouped, tmp)
                    mix[batching] = r["batches_per_task"]
                else:
                    # the plain runs replay the multi-task mix of the same batching (or an even split)
                    steps_per_task = mix.get(batching) or mix.get("random") or {
                        t.name: args.steps // len(TASKS) for t in TASKS
                    }
                    r = run_plain(model_path, tokenizer, prepared, args.batch_size, steps_per_task, args.warmup,
                                  args.seed, grouped, tmp)
                r["load_average_after"] = load_average()
                r["wall_seconds_incl_setup"] = time.perf_counter() - t0
                runs[setting].append(r)
                print(f"[{setting} run {rep + 1}] {r['examples_per_s']:.1f} ex/s, padding {r['padding_fraction']:.0%}, "
                      f"load {r['load_average_after']}", flush=True)
    results = {}
    for setting in settings:
        best = max(runs[setting], key=lambda r: r["examples_per_s"])
        results[setting] = {**best, "runs_examples_per_s": [r["examples_per_s"] for r in runs[setting]]}

    base = results.get("plain/random", {}).get("examples_per_s")
    rows = []
    for setting, r in results.items():
        rows.append({**r, "vs_plain_random": r["examples_per_s"] / base if base else None,
                     "mix": ", ".join(f"{k} {v}" for k, v in sorted(r["batches_per_task"].items()))})
        for task, t in r.get("per_task", {}).items():
            rows.append({**t, "setting": f"  {setting} [{task}]",
                         "vs_plain_random": None, "mix": f"{task} {t['steps']}"})
    def round_ratios(a: str, b: str, key: str) -> tuple[float | None, list[float]]:
        """Median over rounds of the ratio within each round (runs close in time see similar load)."""
        if a not in runs or b not in runs:
            return None, []
        per_round = [x[key] / y[key] for x, y in zip(runs[a], runs[b])]
        return float(np.median(per_round)), per_round

    targets = []
    for name, a, b, key, target in (
        ("mtl/random / plain/random, ex/s (routing overhead)", "mtl/random", "plain/random", "examples_per_s", 0.97),
        ("mtl/grouped / plain/grouped, ex/s (routing overhead)", "mtl/grouped", "plain/grouped", "examples_per_s", 0.97),
        ("mtl/grouped / plain/random, ex/s (length grouping)", "mtl/grouped", "plain/random", "examples_per_s", 1.8),
        # padding-independent cross-check of the routing overhead: padded positions processed per second
        ("mtl/random / plain/random, padded positions/s", "mtl/random", "plain/random", "positions_per_s", 0.97),
        ("mtl/grouped / plain/grouped, padded positions/s", "mtl/grouped", "plain/grouped", "positions_per_s", 0.97),
    ):
        value, per_round = round_ratios(a, b, key)
        if value is not None:
            targets.append({**target_line(name, value, target), "per_round": per_round})
    text = table(rows, [
        ("setting", "setting", ""), ("mix", "timed batches per task", ""), ("examples", "examples", "d"),
        ("seconds", "seconds", ".1f"), ("examples_per_s", "examples/s (best)", ".1f"),
        ("padding_fraction", "padding", ".1%"), ("positions_per_s", "padded positions/s", ".0f"),
        ("vs_plain_random", "ex/s vs plain/random", ".2f"),
    ])
    print()
    print(text)
    print()
    print(targets_table(targets))
    payload = {
        "benchmark": "train_throughput",
        "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": info,
        "results": results,
        "targets": targets,
        "table": text,
        "targets_table": targets_table(targets),
    }
    return finish("train_throughput", payload, args.out)


if __name__ == "__main__":
    main()
