"""Quality: three single-task models against one multi-task model, same data and training budget.

Setups (all MiniLM-L6, same seeded training subsets, epochs, learning rate, batch size, length grouping):

- `single`: three models, one per task (`MultiTaskModel` with that one head, trained alone: the same
  architecture as a single-task model, so only the sharing differs);
- `mtl/proportional`: one model, three heads, batches drawn in proportion to task size (every task's
  examples seen exactly as often as in `single`);
- `mtl/temperature`: the same, batches drawn with p ~ n^(1/T) (same number of batches in total; small
  tasks are seen more, large ones less; the examples seen per task are reported).

Each task's headline metric on its validation split (SST-2 accuracy, AG News accuracy, CoNLL-2003 entity F1
on validation and test), the parameter count of each setup and its inference cost (encoder passes per text
for all three outputs, and measured seconds for a fixed mix of texts) are reported side by side.

    python benchmarks/quality.py --budget small   # ~30 min on 2 CPU cores
    python benchmarks/quality.py --budget full    # full training sets, 3 epochs: for a GPU
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# On a shared CPU, OpenMP threads that spin while waiting make 2-thread torch up to 10x slower whenever
# another process holds a core; passive waiting keeps timings stable (set before torch is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import finish, load_average, machine_info, setup_run, table  # noqa: E402
from benchmarks._data import DEFAULT_DATA_DIR, TASKS, model_dir, mixed_texts, task_datasets  # noqa: E402

#: training subsets (rows per task), epochs, learning rate. Sizes are deliberately unequal (as real task
#: mixes are), so that temperature sampling differs from proportional sampling.
BUDGETS: dict[str, dict[str, Any]] = {
    "small": {
        "train_sizes": {"sentiment": 6000, "topic": 3000, "ner": 2000},
        "epochs": 1,
        "learning_rate": 1e-4,
        "eval_sizes": {"sentiment": None, "topic": None, "ner": None},
        "inference_texts": 300,
    },
    "full": {
        "train_sizes": {"sentiment": None, "topic": None, "ner": None},
        "epochs": 3,
        "learning_rate": 5e-5,
        "eval_sizes": {"sentiment": None, "topic": None, "ner": None},
        "inference_texts": 1800,
    },
}
MAIN_METRIC = {"sentiment": "accuracy", "topic": "accuracy", "ner": "f1"}
COLUMNS = [("sentiment", "val"), ("topic", "val"), ("ner", "val"), ("ner", "test")]


def _train(tasks, train_sets, budget, args, tmp, strategy="proportional"):
    import torch

    from hf_mtl import MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments

    torch.manual_seed(args.seed)
    model = MultiTaskModel.from_encoder(args.model_path, tasks=tasks)
    targs = MultiTaskTrainingArguments(
        output_dir=tmp,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        num_train_epochs=budget["epochs"],
        learning_rate=budget["learning_rate"],
        warmup_steps=0.06,
        weight_decay=0.01,
        logging_steps=50,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=args.seed,
        group_by_length=True,
        task_sampling_strategy=strategy,
        sampling_temperature=args.temperature,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = MultiTaskTrainer(
        model=model, args=targs, train_dataset=train_sets, processing_class=args.tokenizer
    )
    sampler = trainer.make_batch_sampler(trainer.train_dataset)
    seen = _examples_seen(sampler, trainer.train_dataset, budget["epochs"])
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    return model, trainer, train_seconds, seen


def _examples_seen(sampler, dataset, epochs: int) -> dict[str, int]:
    """Examples of each task the sampler yields over the run (replays its deterministic order)."""
    seen = {name: 0 for name in dataset.task_names}
    offsets = dataset.offsets
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in sampler:
            task = max(i for i, o in enumerate(offsets[:-1]) if batch[0] >= o)
            seen[dataset.task_names[task]] += len(batch)
    sampler.set_epoch(0)
    return seen


def _evaluate(trainer, eval_sets, test_sets) -> dict[str, float]:
    scores = {}
    metrics = trainer.evaluate(eval_sets)
    for name in eval_sets:
        scores[f"{name}/val"] = 100 * metrics[f"eval_{name}_{MAIN_METRIC[name]}"]
    if test_sets:
        metrics = trainer.evaluate(test_sets, metric_key_prefix="test")
        for name in test_sets:
            scores[f"{name}/test"] = 100 * metrics[f"test_{name}_{MAIN_METRIC[name]}"]
    return scores


def _inference_seconds(models_and_tasks, tokenizer, texts, batch_size=32) -> float:
    """Seconds to get every task's output for `texts` (length-sorted batches, inference mode): one encoder
    pass per model, all of that model's heads from it."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for model, _ in models_and_tasks:
            model.eval()
            for start in range(0, len(order), batch_size):
                chunk = [texts[i] for i in order[start : start + batch_size]]
                enc = tokenizer(chunk, padding=True, truncation=True, return_tensors="pt").to(model.device)
                model(**enc)
    return time.perf_counter() - t0


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--model", default=None, help="encoder checkpoint (default: the packaged MiniLM-L6)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--setups", default="single,mtl/proportional,mtl/temperature")
    parser.add_argument("--train-sizes", default=None, help="override, e.g. sentiment=200,topic=100,ner=100")
    parser.add_argument("--eval-size", type=int, default=None, help="cap evaluation rows per split (smoke runs)")
    parser.add_argument("--save-model", default=None,
                        help="save the first multi-task model (and tokenizer) here, e.g. for predict_throughput --model")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/quality_<budget>.json)")
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    setup_run(args.threads)
    started = time.perf_counter()
    budget = dict(BUDGETS[args.budget])
    if args.train_sizes:
        budget["train_sizes"] = {k: int(v) for k, v in (kv.split("=") for kv in args.train_sizes.split(","))}
    if args.eval_size:
        budget["eval_sizes"] = {k: args.eval_size for k in budget["eval_sizes"]}
        budget["inference_texts"] = min(budget["inference_texts"], 3 * args.eval_size)
    args.model_path = args.model or model_dir()
    args.tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    info = machine_info()
    train_sets = task_datasets(args.data_dir, "train", budget["train_sizes"], seed=args.seed)
    eval_sets = task_datasets(args.data_dir, "validation", budget["eval_sizes"], seed=args.seed)
    test_sets = task_datasets(args.data_dir, "test", {"ner": budget["eval_sizes"]["ner"]}, seed=args.seed)
    texts = mixed_texts(args.data_dir, budget["inference_texts"], seed=args.seed)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setup in setups:
            t0 = time.perf_counter()
            if setup == "single":
                scores, seen, params, train_seconds, models = {}, {}, 0, 0.0, []
                for task in TASKS:
                    model, trainer, secs, task_seen = _train(
                        [task], {task.name: train_sets[task.name]}, budget, args, tmp
                    )
                    scores.update(_evaluate(
                        trainer, {task.name: eval_sets[task.name]},
                        {"ner": test_sets["ner"]} if task.name == "ner" else None,
                    ))
                    seen.update(task_seen)
                    params += _params(model)
                    train_seconds += secs
                    models.append((model, [task.name]))
                    print(f"[single/{task.name}] {scores} ({secs:.0f}s training)", flush=True)
                passes = len(TASKS)
            else:
                strategy = setup.split("/", 1)[1]
                model, trainer, train_seconds, seen = _train(TASKS, train_sets, budget, args, tmp, strategy)
                scores = _evaluate(trainer, eval_sets, test_sets)
                params = _params(model)
                models = [(model, [t.name for t in TASKS])]
                if args.save_model and not Path(args.save_model, "config.json").exists():
                    model.save_pretrained(args.save_model)
                    args.tokenizer.save_pretrained(args.save_model)
                passes = 1
            infer = _inference_seconds(models, args.tokenizer, texts, args.batch_size)
            val = [scores[f"{t.name}/val"] for t in TASKS]
            results[setup] = {
                "setup": setup,
                "scores": scores,
                "mean_val": sum(val) / len(val),
                "params": params,
                "encoder_passes_per_text": passes,
                "inference_seconds": infer,
                "inference_texts": len(texts),
                "train_seconds": train_seconds,
                "examples_seen": seen,
                "load_average_after": load_average(),
                "wall_seconds": time.perf_counter() - t0,
            }
            del models
            print(f"[{setup}] {scores} mean {results[setup]['mean_val']:.2f}", flush=True)

    base = results.get("single")
    rows = []
    for setup, r in results.items():
        row = {"setup": setup, "params": r["params"] / 1e6, "passes": r["encoder_passes_per_text"],
               "infer": r["inference_seconds"], "mean": r["mean_val"], "train": r["train_seconds"],
               "seen": ", ".join(f"{k} {v}" for k, v in r["examples_seen"].items())}
        for task, split in COLUMNS:
            key = f"{task}/{split}"
            value = r["scores"].get(key)
            row[key] = None if value is None else (
                f"{value:.2f}" if not base or setup == "single" else f"{value:.2f} ({value - base['scores'][key]:+.2f})"
            )
        if base and setup != "single":
            row["params_ratio"] = r["params"] / base["params"]
            row["infer_ratio"] = r["inference_seconds"] / base["inference_seconds"]
        rows.append(row)
    text = table(rows, [
        ("setup", "setup", ""), ("sentiment/val", "SST-2 acc", ""), ("topic/val", "AG News acc", ""),
        ("ner/val", "CoNLL F1 val", ""), ("ner/test", "CoNLL F1 test", ""), ("mean", "mean (val)", ".2f"),
        ("params", "params (M)", ".1f"), ("params_ratio", "params vs single", ".2f"),
        ("passes", "encoder passes/text", "d"), ("infer", f"inference s ({len(texts)} texts)", ".1f"),
        ("infer_ratio", "inference vs single", ".2f"), ("train", "train s", ".0f"), ("seen", "examples seen", ""),
    ])
    targets = []
    if base:
        for setup, r in results.items():
            if setup == "single":
                continue
            worst = min(r["scores"][f"{t.name}/val"] - base["scores"][f"{t.name}/val"] for t in TASKS)
            targets.append({
                "setup": setup,
                "worst_task_delta": worst,
                "every_task_within_0.5": worst >= -0.5,
                "mean_delta": r["mean_val"] - base["mean_val"],
                "mean_at_least_equal": r["mean_val"] >= base["mean_val"],
                "params_ratio": r["params"] / base["params"],
                "inference_ratio": r["inference_seconds"] / base["inference_seconds"],
            })
    target_text = table(
        [{**t, "within": "yes" if t["every_task_within_0.5"] else "**no**",
          "mean_ok": "yes" if t["mean_at_least_equal"] else "**no**"} for t in targets],
        [("setup", "setup", ""), ("worst_task_delta", "worst task delta (pts)", "+.2f"),
         ("within", "every task within 0.5", ""), ("mean_delta", "mean delta (pts)", "+.2f"),
         ("mean_ok", "mean >= single", ""), ("params_ratio", "params ratio (target ~0.33)", ".2f"),
         ("inference_ratio", "inference ratio (target ~0.33)", ".2f")],
    )
    print()
    print(text)
    print()
    print(target_text)
    payload = {
        "benchmark": "quality",
        "command": "python benchmarks/quality.py " + " ".join(sys.argv[1:]),
        "config": {
            "budget": args.budget, **{k: v for k, v in budget.items()}, "batch_size": args.batch_size,
            "seed": args.seed, "temperature": args.temperature, "length_grouping": True, "setups": setups,
        },
        "machine": info,
        "total_seconds": time.perf_counter() - started,
        "results": results,
        "targets": targets,
        "table": text,
        "targets_table": target_text,
    }
    return finish(f"quality_{args.budget}", payload, args.out)


if __name__ == "__main__":
    main()
