"""Quality: one multi-task model against three single-task models trained the plain way, over several seeds.

**Single-task baselines** (`single`): what a user would do instead of hf_mtl: one plain `transformers.Trainer`
per task on `AutoModelForSequenceClassification` / `AutoModelForTokenClassification` from the same MiniLM-L6,
the same training rows, the same length limit and learning rate, trained for up to `baseline_epochs` epochs
(linear decay planned over all of them) with an evaluation after every epoch, stopped early after
`baseline_patience` epochs without a gain (`EarlyStoppingCallback`), keeping the epoch best on validation
(`load_best_model_at_end`). Every epoch's validation
score is recorded (the "curve"), so "not under-trained" can be checked. Scores use the SAME metric code as
the multi-task side (`Task.compute_metrics`: accuracy; conlleval entity F1 over words, one prediction per word
from its first sub-word, the alignment transformers' NER example uses and hf_mtl uses). Each seed's models are
saved (`--models-dir`): they are the distillation teachers of the `distill` setup.

**Multi-task setups** (`SETUPS` below, one entry each): one `MultiTaskModel` with three heads trained by
`MultiTaskTrainer` for `epochs` epochs; the score of the last epoch is reported (no selection on validation:
this favours the baselines, which keep their best epoch).

**Seeds**: every setup runs at each seed (default 0, 1, 2); the seed sets model initialisation and data order.
The training subsets (and the held-out `dev` rows used by the `searched` setup) are drawn once with data seed 0
and are the same for every seed and setup. Per task, the report gives mean ± std over seeds and the 95%
t-interval of the difference to the baselines, paired by seed.

Every (setup, seed) result is cached as `<results-dir>/<budget>/<setup>-seed<k>.json` (a run found there with
the same configuration is not run again), and the report is assembled from all cached runs:

    python benchmarks/quality.py --budget cpu                       # all setups, seeds 0,1,2
    python benchmarks/quality.py --budget cpu --setups single,proportional --seeds 0
    python benchmarks/quality.py --budget cpu --report-only         # table from the cached runs
    python benchmarks/quality.py --budget full                      # full training sets: for a GPU
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
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

from benchmarks._common import RESULTS_DIR, load_average, machine_info, setup_run, table, write_json  # noqa: E402
from benchmarks._data import DEFAULT_DATA_DIR, READERS, TASKS, model_dir  # noqa: E402

# ---------------------------------------------------------------------------------------------- setups
#: The multi-task setups. Each is a small dict:
#:   args:     MultiTaskTrainingArguments overrides (on top of the budget's)
#:   model:    a function returning extra `MultiTaskModel.from_encoder` keyword arguments
#:   trainer:  a function `(seed, context) -> extra MultiTaskTrainer keyword arguments`
#:   needs:    names that must import (`module:attr`) for the setup to run; otherwise it is skipped
#:   search:   run `trainer.hyperparameter_search` at seed 0 first, then train the best settings at every seed
#:   epochs:   the budget's key giving the epochs (default "epochs"; "baseline_epochs": the baselines' maximum)
#:   note:     one line for the report
SETUPS: dict[str, dict[str, Any]] = {
    "proportional": {"args": {"task_sampling_strategy": "proportional"},
                     "note": "batches in proportion to task size"},
    "temperature": {"args": {"task_sampling_strategy": "temperature", "sampling_temperature": 2.0},
                    "note": "p ~ n^(1/T), T=2"},
    "proportional_long": {"args": {"task_sampling_strategy": "proportional"}, "epochs": "baseline_epochs",
                          "note": "proportional, as many epochs as the baselines' maximum"},
    "annealed": {"args": {"task_sampling_strategy": "annealed"},
                 "note": "sampling annealed from proportional towards uniform"},
    "uncertainty": {"args": {"loss_balancer": "uncertainty"}, "note": "uncertainty weighting (Kendall et al.)"},
    "famo": {"args": {"loss_balancer": "famo", "all_tasks_per_step": True},
             "note": "FAMO, every task in every step"},
    "lora": {"args": {"learning_rate": 5e-4},
             "model": lambda: {"peft_config": _lora_config(r=16, lora_alpha=32, lora_dropout=0.1)},
             "needs": ["peft:LoraConfig", "hf_mtl.lora:add_lora"], "note": "LoRA r=16, alpha=32, dropout 0.1, lr 5e-4"},
    "distill": {"trainer": lambda seed, ctx: _distillation(seed, ctx),
                "needs": ["hf_mtl.distillation:DistillationConfig"],
                "note": "BAM: that seed's single-task models as teachers, linear schedule, temperature 1"},
    "searched": {"search": True,
                 "needs": ["hf_mtl.search:default_search_space", "hf_mtl.search:trial_arguments",
                           "hf_mtl.search:worst_task_objective", "optuna"],
                 "note": "optuna search at seed 0 (worst-task objective on held-out train rows), best at every seed"},
}
BASELINE = "single"

#: training rows per task (drawn once, data seed 0), epochs, learning rate, ...; sizes are deliberately
#: unequal (as real task mixes are), so that the sampling strategies differ.
BUDGETS: dict[str, dict[str, Any]] = {
    "cpu": {  # sized for a 2-core CPU shared with 8 other processes (about 1/5 of a core each)
        "train_sizes": {"sentiment": 600, "topic": 300, "ner": 250},
        "dev_size": 200,  # held-out training rows per task (hyperparameter search objective)
        "eval_cap": 500,  # rows per evaluation split, the same cap for every split and setup
        "epochs": 3,  # multi-task epochs: every training row seen 3 times (proportional sampling)
        "baseline_epochs": 6,  # at most; early stopping after `baseline_patience` epochs without a gain
        "baseline_patience": 2,
        "learning_rate": 1e-4,
        "max_length": 160,  # above every CoNLL-2003 sentence: both sides score every word, no windows
        "batch_size": 16,
        "trials": 4,
        "trial_epochs": 2,
    },
    "full": {
        "train_sizes": {"sentiment": None, "topic": None, "ner": None},
        "dev_size": 1000,
        "eval_cap": None,
        "epochs": 3,
        "baseline_epochs": 6,
        "baseline_patience": 2,
        "learning_rate": 5e-5,
        "max_length": 128,
        "batch_size": 32,
        "trials": 12,
        "trial_epochs": 1,
    },
}
MAIN_METRIC = {"sentiment": "accuracy", "topic": "accuracy", "ner": "f1"}
TASK_BY_NAME = {t.name: t for t in TASKS}
COLUMNS = [("sentiment", "val"), ("topic", "val"), ("ner", "val"), ("ner", "test")]
VAL_KEYS = [f"{t.name}/val" for t in TASKS]
DATA_SEED = 0


def _lora_config(**kwargs: Any) -> Any:
    import peft

    return peft.LoraConfig(**kwargs)


def _distillation(seed: int, ctx: dict[str, Any]) -> dict[str, Any]:
    from hf_mtl.distillation import DistillationConfig

    teachers = {t.name: str(_teacher_dir(ctx, seed, t.name)) for t in TASKS}
    missing = [d for d in teachers.values() if not Path(d, "config.json").is_file()]
    if missing:
        raise SetupUnavailable(f"no single-task model at {missing} (run the `single` setup at seed {seed} first)")
    return {"distillation": DistillationConfig(teachers=teachers, schedule="linear", temperature=1.0)}


class SetupUnavailable(RuntimeError):
    """A setup whose feature (or input) is not there yet: skipped with its message."""


def unavailable_reason(name: str) -> str | None:
    """Why `name` cannot run in this checkout (None when it can): a missing import, or training arguments
    (a strategy, a balancer, an argument) this version of hf_mtl does not know."""
    import importlib

    setup = SETUPS[name]
    for need in setup.get("needs", []):
        module, _, attr = need.partition(":")
        try:
            obj = importlib.import_module(module)
            if attr:
                getattr(obj, attr)
        except (ImportError, AttributeError) as err:
            return f"needs {need}: {type(err).__name__}: {err}"
    if setup.get("args"):
        from hf_mtl import MultiTaskTrainingArguments

        try:
            with tempfile.TemporaryDirectory() as tmp:
                MultiTaskTrainingArguments(output_dir=tmp, report_to=[], **setup["args"])
        except (TypeError, ValueError, KeyError) as err:
            return f"training arguments {setup['args']} not supported: {err}"
    return None


# ---------------------------------------------------------------------------------------------- data
def _subsets(data_dir: str, budget: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows per split and task: `train` (the budget's sizes), `dev` (held-out training rows, disjoint from
    `train`), `val` and `test` (NER only), each capped at `eval_cap`; all drawn with data seed 0."""
    import numpy as np
    from datasets import Dataset

    out: dict[str, dict[str, Any]] = {"train": {}, "dev": {}, "val": {}, "test": {}}
    cap = budget["eval_cap"]
    for name, size in budget["train_sizes"].items():
        rows = READERS[name](data_dir, "train")
        order = np.random.default_rng(DATA_SEED).permutation(len(rows))
        n_dev = min(budget["dev_size"], len(rows) // 10)
        dev_idx, rest = order[:n_dev], order[n_dev:]
        train_idx = rest if size is None else rest[:size]
        out["train"][name] = Dataset.from_list([rows[i] for i in sorted(train_idx)])
        out["dev"][name] = Dataset.from_list([rows[i] for i in sorted(dev_idx)])
        out["val"][name] = Dataset.from_list(_capped(READERS[name](data_dir, "validation"), cap))
    out["test"]["ner"] = Dataset.from_list(_capped(READERS["ner"](data_dir, "test"), cap))
    return out


def _capped(rows: list, cap: int | None) -> list:
    import numpy as np

    if cap is None or cap >= len(rows):
        return rows
    return [rows[i] for i in sorted(np.random.default_rng(DATA_SEED).permutation(len(rows))[:cap])]


# ---------------------------------------------------------------------------------------------- single-task
def tokenize_for_plain_trainer(task: Any, rows: Any, tokenizer: Any, max_length: int) -> Any:
    """A task's rows as a plain Trainer user prepares them (transformers' text/token classification examples):
    texts truncated to `max_length`; for tagging, each word's tag on its first sub-word and -100 elsewhere."""
    if not task.token_level:
        def encode(batch):
            enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
            enc["labels"] = batch["label"]
            return enc
    else:
        label2id = task.label2id

        def encode(batch):
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            labels = []
            for i, tags in enumerate(batch["tags"]):
                previous, row = None, []
                for word in enc.word_ids(i):
                    row.append(-100 if word is None or word == previous else label2id[tags[word]])
                    previous = word
                labels.append(row)
            enc["labels"] = labels
            return enc
    return rows.map(encode, batched=True, remove_columns=rows.column_names)


def _words_scored(prepared: Any) -> int:
    return sum(sum(1 for x in row if x != -100) for row in prepared["labels"])


def _train_args(budget: dict[str, Any], out_dir: str, seed: int, epochs: int, **overrides: Any) -> dict[str, Any]:
    import torch

    return {
        "output_dir": out_dir, "per_device_train_batch_size": budget["batch_size"], "per_device_eval_batch_size": 64,
        "num_train_epochs": epochs, "learning_rate": budget["learning_rate"], "warmup_steps": 0.06,
        "weight_decay": 0.01, "logging_steps": 25, "report_to": [], "disable_tqdm": True, "seed": seed,
        "use_cpu": not torch.cuda.is_available(), **overrides,
    }


def run_single(seed: int, ctx: dict[str, Any]) -> dict[str, Any]:
    """The three plain-Trainer baselines at one seed; saves each (best epoch) model as a teacher."""
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification,
                              DataCollatorForTokenClassification, DataCollatorWithPadding, EarlyStoppingCallback,
                              Trainer,
                              TrainingArguments, set_seed)

    budget, tok = ctx["budget"], ctx["tokenizer"]
    result: dict[str, Any] = {"scores": {}, "dev_scores": {}, "curves": {}, "best_epoch": {}, "train_seconds": {},
                              "cpu_seconds": {}, "params": 0, "words_scored": {}}
    for task in TASKS:
        name, metric = task.name, MAIN_METRIC[task.name]
        prepared = {split: tokenize_for_plain_trainer(task, ctx["data"][split][name], tok, budget["max_length"])
                    for split in ("train", "dev", "val", "test") if name in ctx["data"][split]}
        if task.token_level:
            # the plain pipeline must score every word of the evaluation sentences, as hf_mtl does (windows)
            result["words_scored"] = {split: _words_scored(prepared[split]) for split in ("val", "test")}
            expected = {split: sum(len(r) for r in ctx["data"][split][name]["tokens"]) for split in ("val", "test")}
            if result["words_scored"] != expected:
                print(f"  warning: the plain baseline scores {result['words_scored']} words, hf_mtl {expected} "
                      f"(sentences longer than max_length {budget['max_length']} are truncated)", flush=True)
        set_seed(seed)
        auto = AutoModelForTokenClassification if task.token_level else AutoModelForSequenceClassification
        model = auto.from_pretrained(ctx["model_path"], num_labels=task.num_labels, id2label=task.id2label,
                                     label2id=task.label2id)
        collator = (DataCollatorForTokenClassification(tok) if task.token_level else DataCollatorWithPadding(tok))
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(**_train_args(
                budget, tmp, seed, budget["baseline_epochs"], eval_strategy="epoch", save_strategy="epoch",
                save_only_model=True, save_total_limit=1, load_best_model_at_end=True,
                metric_for_best_model=metric, greater_is_better=True, train_sampling_strategy="group_by_length",
            ))
            trainer = Trainer(
                model=model, args=args, train_dataset=prepared["train"], eval_dataset=prepared["val"],
                data_collator=collator, processing_class=tok,
                compute_metrics=lambda p, task=task: task.compute_metrics(p.predictions, p.label_ids),
                callbacks=[EarlyStoppingCallback(early_stopping_patience=budget["baseline_patience"])],
            )
            _quiet(trainer)
            t0, c0 = time.perf_counter(), time.process_time()
            trainer.train()
            result["train_seconds"][name] = time.perf_counter() - t0
            result["cpu_seconds"][name] = time.process_time() - c0
            curve = [{"epoch": round(h["epoch"], 2), metric: 100 * h[f"eval_{metric}"]}
                     for h in trainer.state.log_history if f"eval_{metric}" in h]
            result["curves"][name] = curve
            best = max(range(len(curve)), key=lambda i: curve[i][metric])
            result["best_epoch"][name] = curve[best]["epoch"]
            # the best epoch's model is loaded back (load_best_model_at_end): its validation score is the curve's
            result["scores"][f"{name}/val"] = curve[best][metric]
            if "test" in prepared:
                result["scores"][f"{name}/test"] = 100 * trainer.evaluate(
                    prepared["test"], metric_key_prefix="test")[f"test_{metric}"]
            if seed == 0:  # the search's reference (held-out training rows), searched at seed 0 only
                result["dev_scores"][name] = 100 * trainer.evaluate(
                    prepared["dev"], metric_key_prefix="dev")[f"dev_{metric}"]
        teacher = _teacher_dir(ctx, seed, name)
        if teacher.exists():
            shutil.rmtree(teacher)
        model.save_pretrained(teacher)
        tok.save_pretrained(teacher)
        result["params"] += sum(p.numel() for p in model.parameters())
        print(f"  [single seed {seed}] {name}: curve {[round(c[metric], 2) for c in curve]} "
              f"-> {result['scores'][f'{name}/val']:.2f} ({result['train_seconds'][name]:.0f}s)", flush=True)
        del trainer, model
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    result.update(train_seconds_total=sum(result["train_seconds"].values()),
                  cpu_seconds_total=sum(result["cpu_seconds"].values()), encoder_passes_per_text=len(TASKS),
                  trainable_params=result["params"],
                  teachers={t.name: str(_teacher_dir(ctx, seed, t.name)) for t in TASKS})
    return result


def _teacher_dir(ctx: dict[str, Any], seed: int, task: str) -> Path:
    return Path(ctx["models_dir"], ctx["budget_name"], f"single-seed{seed}", task)


# ---------------------------------------------------------------------------------------------- multi-task
def _mtl_trainer(setup: dict[str, Any], seed: int, ctx: dict[str, Any], out_dir: str, overrides: dict[str, Any],
                 epochs: int, eval_sets: dict[str, Any] | None, model_init: bool = False) -> Any:
    import torch

    from hf_mtl import MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments

    budget = ctx["budget"]
    model_kwargs = setup["model"]() if "model" in setup else {}

    def make_model(trial: Any = None) -> Any:
        torch.manual_seed(seed)
        return MultiTaskModel.from_encoder(ctx["model_path"], tasks=TASKS, **model_kwargs)

    args = MultiTaskTrainingArguments(**_train_args(
        budget, out_dir, seed, epochs, save_strategy="no", group_by_length=True, max_length=budget["max_length"],
        eval_strategy="epoch" if eval_sets else "no", **{**setup.get("args", {}), **overrides},
    ))
    extra = setup["trainer"](seed, ctx) if "trainer" in setup else {}
    model_arg = {"model_init": make_model} if model_init else {"model": make_model()}
    return _quiet(MultiTaskTrainer(**model_arg, args=args, train_dataset=ctx["data"]["train"], eval_dataset=eval_sets,
                                   processing_class=ctx["tokenizer"], **extra))


def _quiet(trainer: Any) -> Any:
    """No metrics dict printed at every log step (`disable_tqdm` swaps the progress bar for a printer)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def _examples_seen(trainer: Any, epochs: int) -> dict[str, int] | None:
    """Examples of each task the sampler yielded over the run (replays its deterministic order after training:
    the trainer's own sampler then knows the run's length, which annealed sampling follows)."""
    try:
        dataset = trainer.train_dataset
        sampler = getattr(trainer, "_train_batch_sampler", None) or trainer.make_batch_sampler(dataset)
        seen = {name: 0 for name in dataset.task_names}
        offsets = dataset.offsets
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            for batch in sampler:
                task = max(i for i, o in enumerate(offsets[:-1]) if batch[0] >= o)
                seen[dataset.task_names[task]] += len(batch)
        return seen
    except Exception as err:  # a strategy whose order depends on training (annealed, adaptive) may not replay
        print(f"  (examples seen not replayable: {type(err).__name__}: {err})", flush=True)
        return None


def _scores(trainer: Any, ctx: dict[str, Any]) -> dict[str, float]:
    scores = {}
    metrics = trainer.evaluate(ctx["data"]["val"])
    for name in ctx["data"]["val"]:
        scores[f"{name}/val"] = 100 * metrics[f"eval_{name}_{MAIN_METRIC[name]}"]
    metrics = trainer.evaluate(ctx["data"]["test"], metric_key_prefix="test")
    for name in ctx["data"]["test"]:
        scores[f"{name}/test"] = 100 * metrics[f"test_{name}_{MAIN_METRIC[name]}"]
    return scores


def _search(name: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """Seed 0's hyperparameter search (cached as `<setup>-search.json`): short trials scored on held-out
    training rows by the worst task's difference to that seed's single-task models."""
    from hf_mtl.search import default_search_space, trial_arguments, worst_task_objective

    path = ctx["cache_dir"] / f"{name}-search.json"
    cached = _load(path, ctx)
    if cached:
        return cached
    single = _load(ctx["cache_dir"] / f"{BASELINE}-seed0.json", ctx)
    if not single:
        raise SetupUnavailable("needs the single-task results at seed 0 (their dev scores are the reference)")
    budget = ctx["budget"]
    reference = {task: score / 100 for task, score in single["dev_scores"].items()}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _mtl_trainer(SETUPS[name], 0, ctx, tmp, {}, budget["trial_epochs"], ctx["data"]["dev"],
                               model_init=True)
        t0, c0 = time.perf_counter(), time.process_time()
        best = trainer.hyperparameter_search(
            backend="optuna", direction="maximize", hp_space=default_search_space([t.name for t in TASKS]),
            n_trials=budget["trials"],
            compute_objective=worst_task_objective(reference=reference),
        )
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    payload = {"setup": name, "config": ctx["fingerprint"], "best_hyperparameters": dict(best.hyperparameters),
               "best_arguments": trial_arguments(best.hyperparameters),
               "best_objective": best.objective, "trials": budget["trials"], "trial_epochs": budget["trial_epochs"],
               "search_seconds": seconds, "search_cpu_seconds": cpu, "reference_dev_scores": reference,
               "load_average_after": load_average()}
    write_json("", payload, str(path))
    return payload


def run_mtl(name: str, seed: int, ctx: dict[str, Any]) -> dict[str, Any]:
    setup = SETUPS[name]
    budget = ctx["budget"]
    overrides: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if setup.get("search"):
        search = _search(name, ctx)
        overrides = dict(search["best_arguments"])
        extra = {"search_seconds": search["search_seconds"], "hyperparameters": overrides, "trials": search["trials"]}
    with tempfile.TemporaryDirectory() as tmp:
        # evaluated once, after the last epoch (no selection on validation)
        trainer = _mtl_trainer(setup, seed, ctx, tmp, overrides, budget[setup.get("epochs", "epochs")], None)
        epochs = int(trainer.args.num_train_epochs)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        seen = _examples_seen(trainer, epochs)
        scores = _scores(trainer, ctx)
        model = trainer.model
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        losses = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
        if ctx.get("save_model") and not Path(ctx["save_model"], "config.json").exists():
            model.save_pretrained(ctx["save_model"])
            ctx["tokenizer"].save_pretrained(ctx["save_model"])
    return {"scores": scores, "epochs": epochs, "train_seconds_total": seconds, "cpu_seconds_total": cpu,
            "params": params, "trainable_params": trainable, "encoder_passes_per_text": 1, "examples_seen": seen,
            "loss_log": losses, **extra}


# ---------------------------------------------------------------------------------------------- cache + driver
def _fingerprint(args: argparse.Namespace, budget: dict[str, Any]) -> dict[str, Any]:
    """What a cached result must match to be reused."""
    config = {"budget": args.budget, **budget, "model": args.model_path, "data_seed": DATA_SEED}
    config["hash"] = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return config


def _load(path: Path, ctx: dict[str, Any]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    if payload.get("config", {}).get("hash") != ctx["fingerprint"]["hash"]:
        print(f"  ignoring {path}: made with another configuration", flush=True)
        return None
    return payload


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--setups", default=",".join([BASELINE, *SETUPS]),
                        help=f"comma-separated, from {BASELINE},{','.join(SETUPS)} (default: all)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--report-only", action="store_true", help="no training: the report of the cached runs")
    parser.add_argument("--force", action="store_true", help="rerun (setup, seed) pairs that are cached")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--model", default=None, help="encoder checkpoint (default: the packaged MiniLM-L6)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR / "quality"),
                        help="cache of per-(setup, seed) results; <results-dir>/<budget>/")
    parser.add_argument("--models-dir", default=os.path.join(tempfile.gettempdir(), "hf_mtl_quality_models"),
                        help="where the single-task models (distillation teachers) are saved")
    parser.add_argument("--train-sizes", default=None, help="override, e.g. sentiment=200,topic=100,ner=100")
    parser.add_argument("--eval-size", type=int, default=None, help="override the evaluation cap (smoke runs)")
    parser.add_argument("--epochs", type=int, default=None, help="override the multi-task epochs")
    parser.add_argument("--baseline-epochs", type=int, default=None, help="override the single-task epochs")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None, help="override the search's trial count")
    parser.add_argument("--save-model", default=None,
                        help="save the first multi-task model trained (and tokenizer) here, "
                        "e.g. for predict_throughput --model")
    parser.add_argument("--out", default=None, help="report JSON (default benchmarks/results/quality_<budget>.json)")
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    setup_run(args.threads)
    budget = json.loads(json.dumps(BUDGETS[args.budget]))
    if args.train_sizes:
        budget["train_sizes"] = {k: int(v) for k, v in (kv.split("=") for kv in args.train_sizes.split(","))}
        budget["dev_size"] = min(budget["dev_size"], max(budget["train_sizes"].values()))
    for key, value in (("eval_cap", args.eval_size), ("epochs", args.epochs), ("baseline_epochs", args.baseline_epochs),
                       ("batch_size", args.batch_size), ("trials", args.trials)):
        if value is not None:
            budget[key] = value
    args.model_path = args.model or model_dir()
    fingerprint = _fingerprint(args, budget)
    cache_dir = Path(args.results_dir, args.budget)
    cache_dir.mkdir(parents=True, exist_ok=True)
    ctx: dict[str, Any] = {"budget": budget, "budget_name": args.budget, "fingerprint": fingerprint,
                           "cache_dir": cache_dir, "models_dir": args.models_dir, "model_path": args.model_path,
                           "save_model": args.save_model}
    names = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = [n for n in names if n != BASELINE and n not in SETUPS]
    if unknown:
        raise SystemExit(f"unknown setups {unknown}; known: {BASELINE}, {', '.join(SETUPS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    skipped: dict[str, str] = {}
    if not args.report_only:
        ctx["tokenizer"] = AutoTokenizer.from_pretrained(args.model_path)
        ctx["data"] = _subsets(args.data_dir, budget)
        info = machine_info()
        for name in names:
            reason = None if name == BASELINE else unavailable_reason(name)
            if reason:
                skipped[name] = reason
                print(f"[{name}] skipped: {reason}", flush=True)
                continue
            for seed in seeds:
                path = cache_dir / f"{name}-seed{seed}.json"
                if not args.force and _load(path, ctx):
                    print(f"[{name} seed {seed}] cached: {path}", flush=True)
                    continue
                print(f"[{name} seed {seed}] start {time.strftime('%H:%M:%S')} load {load_average()}", flush=True)
                load_before, t0 = load_average(), time.perf_counter()
                try:
                    result = run_single(seed, ctx) if name == BASELINE else run_mtl(name, seed, ctx)
                except SetupUnavailable as err:
                    skipped[name] = str(err)
                    print(f"[{name} seed {seed}] skipped: {err}", flush=True)
                    break
                result.update(setup=name, seed=seed, config=fingerprint, machine=info, code=_code_version(),
                              load_average_before=load_before,
                              load_average_after=load_average(), wall_seconds=time.perf_counter() - t0)
                write_json("", result, str(path))
                print(f"[{name} seed {seed}] {_fmt(result['scores'])} ({result['wall_seconds']:.0f}s, "
                      f"load {result['load_average_after']})", flush=True)
    report = assemble(cache_dir, fingerprint, skipped)
    print()
    print(report["table"])
    print()
    print(report["targets_table"])
    print()
    print(report["baseline_curves_table"])
    out = write_json(f"quality_{args.budget}", report, args.out)
    print(f"\nwrote {out}")
    return report


def _code_version() -> str | None:
    """The commit of the hf_mtl checkout that ran (results of different code versions may be mixed in a cache)."""
    import subprocess

    import hf_mtl

    try:
        return subprocess.run(["git", "-C", str(Path(hf_mtl.__file__).parent), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _fmt(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in scores.items())


# ---------------------------------------------------------------------------------------------- report
def _mean_std(xs: list[float]) -> tuple[float, float | None]:
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def paired_interval(deltas: list[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean of paired differences and its two-sided t-interval (None with fewer than 2 pairs)."""
    from scipy import stats

    mean, std = _mean_std(deltas)
    if std is None:
        return mean, None, None
    half = stats.t.ppf(0.5 + level / 2, len(deltas) - 1) * std / math.sqrt(len(deltas))
    return mean, mean - half, mean + half


def assemble(cache_dir: Path, fingerprint: dict[str, Any], skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """The report of every cached run in `cache_dir` made with this configuration."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    searches: dict[str, dict[str, Any]] = {}
    for path in sorted(cache_dir.glob("*.json")):
        payload = json.loads(path.read_text())
        if payload.get("config", {}).get("hash") != fingerprint["hash"]:
            continue
        if path.stem.endswith("-search"):
            searches[payload["setup"]] = payload
        else:
            runs.setdefault(payload["setup"], {})[payload["seed"]] = payload
    base = runs.get(BASELINE, {})
    keys = [f"{t}/{s}" for t, s in COLUMNS]
    summary: dict[str, dict[str, Any]] = {}
    for name in [BASELINE, *SETUPS]:
        if name not in runs:
            continue
        seeds = sorted(runs[name])
        entry: dict[str, Any] = {"setup": name, "seeds": seeds, "tasks": {}}
        for key in keys:
            values = [runs[name][s]["scores"][key] for s in seeds if key in runs[name][s]["scores"]]
            mean, std = _mean_std(values)
            task_entry = {"values": values, "mean": mean, "std": std}
            paired = [runs[name][s]["scores"][key] - base[s]["scores"][key] for s in seeds if s in base]
            if name != BASELINE and paired:
                d, lo, hi = paired_interval(paired)
                task_entry.update(delta=d, delta_ci95=[lo, hi], paired_seeds=len(paired))
            entry["tasks"][key] = task_entry
        means = [sum(runs[name][s]["scores"][k] for k in VAL_KEYS) / len(VAL_KEYS) for s in seeds]
        entry["mean_val"], entry["mean_val_std"] = _mean_std(means)
        if name != BASELINE and base:
            paired = [means[i] - sum(base[s]["scores"][k] for k in VAL_KEYS) / len(VAL_KEYS)
                      for i, s in enumerate(seeds) if s in base]
            if paired:
                d, lo, hi = paired_interval(paired)
                entry.update(mean_delta=d, mean_delta_ci95=[lo, hi])
                task_deltas = {k: entry["tasks"][k]["delta"] for k in VAL_KEYS}
                worst = min(task_deltas, key=task_deltas.get)
                entry.update(worst_task=worst, worst_task_delta=task_deltas[worst])
                entry["goal_issue12"] = _goal(task_deltas, d, task_floor=-0.5, mean_floor=0.0)
                entry["goal_issue14"] = _goal(task_deltas, d, task_floor=0.0, mean_floor=0.5)
        first = runs[name][seeds[0]]
        entry["params"] = first["params"]
        entry["trainable_params"] = first.get("trainable_params", first["params"])
        entry["encoder_passes_per_text"] = first["encoder_passes_per_text"]
        entry["train_seconds"] = _mean_std([runs[name][s]["train_seconds_total"] for s in seeds])[0]
        entry["cpu_seconds"] = _mean_std([runs[name][s].get("cpu_seconds_total", float("nan")) for s in seeds])[0]
        loads = [x for s in seeds for x in (runs[name][s].get("load_average_before"),
                                            runs[name][s].get("load_average_after")) if x]
        entry["load_1min_range"] = [min(x[0] for x in loads), max(x[0] for x in loads)] if loads else None
        cost = entry["train_seconds"]
        if name == "distill" and base:
            cost += _mean_std([base[s]["train_seconds_total"] for s in seeds if s in base])[0]
            entry["cost_note"] = "teachers (the single-task runs) + student"
        if name in searches:
            entry["search"] = {k: searches[name][k] for k in ("best_hyperparameters", "best_objective", "trials",
                                                               "trial_epochs", "search_seconds")}
            cost += searches[name]["search_seconds"] / len(seeds)
            entry["cost_note"] = f"search ({searches[name]['trials']} trials, seed 0) spread over the seeds + training"
        entry["total_cost_seconds"] = cost
        if name == BASELINE:
            entry["curves"] = {s: runs[name][s]["curves"] for s in seeds}
            entry["best_epoch"] = {s: runs[name][s]["best_epoch"] for s in seeds}
        entry["note"] = SETUPS[name]["note"] if name in SETUPS else "3 plain Trainer models, best epoch on validation"
        summary[name] = entry

    rows = []
    for name, e in summary.items():
        row = {"setup": f"{name} (n={len(e['seeds'])})", "mean": _pm(e["mean_val"], e["mean_val_std"]),
               "params": e["params"] / 1e6, "trainable": e["trainable_params"] / 1e6,
               "passes": e["encoder_passes_per_text"], "train": e["train_seconds"], "cost": e["total_cost_seconds"],
               "worst": (f"{e['worst_task_delta']:+.2f} ({e['worst_task'].split('/')[0]})"
                         if "worst_task_delta" in e else None),
               "load": None if not e["load_1min_range"] else "{:.1f}-{:.1f}".format(*e["load_1min_range"])}
        for key in keys:
            t = e["tasks"][key]
            row[key] = _pm(t["mean"], t["std"])
            if "delta" in t:
                row[key] += " " + _ci(t["delta"], *t["delta_ci95"])
        if "mean_delta" in e:
            row["mean"] += " " + _ci(e["mean_delta"], *e["mean_delta_ci95"])
        rows.append(row)
    text = table(rows, [
        ("setup", "setup", ""), ("sentiment/val", "SST-2 acc (Δ, 95% CI)", ""), ("topic/val", "AG News acc", ""),
        ("ner/val", "CoNLL F1 val", ""), ("ner/test", "CoNLL F1 test", ""), ("mean", "mean of val", ""),
        ("worst", "worst val Δ", ""), ("params", "params (M)", ".1f"), ("trainable", "trained (M)", ".1f"),
        ("passes", "encoder passes/text", "d"), ("train", "train s/seed", ".0f"),
        ("cost", "total cost s/seed", ".0f"), ("load", "load (1 min)", ""),
    ])
    targets = []
    for name, e in summary.items():
        if "goal_issue12" in e:
            targets.append({"setup": name, "worst": e["worst_task_delta"], "mean": e["mean_delta"],
                            "g12": _verdict(e["goal_issue12"]), "g14": _verdict(e["goal_issue14"])})
    target_text = table(targets, [
        ("setup", "setup", ""), ("worst", "worst task Δ (val, pts)", "+.2f"), ("mean", "mean Δ (pts)", "+.2f"),
        ("g12", "issue 12: every task ≥ -0.5, mean ≥ 0", ""),
        ("g14", "issue 14: every task ≥ 0, mean ≥ +0.5", ""),
    ])
    curve_rows = [
        {"seed": seed, "task": task, "best": f"{single['best_epoch'][seed][task]:g}",
         "curve": " → ".join(f"{point[MAIN_METRIC[task]]:.1f}" for point in curve)}
        for seed, curves in (summary[BASELINE]["curves"].items() if BASELINE in summary else [])
        for task, curve in curves.items()
        for single in [summary[BASELINE]]
    ]
    curves_text = table(curve_rows, [("seed", "seed", ""), ("task", "task", ""),
                                     ("curve", "validation score after each epoch", ""), ("best", "epoch kept", "")])
    return {"benchmark": "quality", "config": fingerprint, "summary": summary, "skipped": skipped or {},
            "table": text, "targets_table": target_text, "baseline_curves_table": curves_text,
            "load_average_at_report": load_average()}


def _goal(task_deltas: dict[str, float], mean_delta: float, task_floor: float, mean_floor: float) -> dict[str, Any]:
    """Met or not (on the means over seeds), and the shortfall in points: the largest gap to a floor."""
    gaps = {k: task_floor - d for k, d in task_deltas.items() if d < task_floor}
    if mean_delta < mean_floor:
        gaps["mean"] = mean_floor - mean_delta
    return {"met": not gaps, "shortfall": max(gaps.values()) if gaps else 0.0, "gaps": gaps}


def _verdict(goal: dict[str, Any]) -> str:
    if goal["met"]:
        return "met"
    worst = max(goal["gaps"], key=goal["gaps"].get)
    return f"**no**: short by {goal['shortfall']:.2f} ({worst.split('/')[0]})"


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _ci(delta: float, lo: float | None, hi: float | None) -> str:
    return f"({delta:+.2f})" if lo is None else f"({delta:+.2f} [{lo:+.2f}, {hi:+.2f}])"


if __name__ == "__main__":
    main()
