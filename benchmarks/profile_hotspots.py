"""Where the time goes: profiles of the pipeline, the training step and the collator (issue 5, part 4).

- `pipeline`  : cProfile of `MultiTaskPipeline` (three heads) on the mixed texts: share of model compute vs
                tokenization and postprocessing;
- `attention` : training step (forward + backward + AdamW) and inference forward of a `MultiTaskModel` built
                with `from_encoder`, eager attention (what `from_encoder` silently gave before the fix) against
                sdpa (what it gives now, like `AutoModelFor*`), interleaved in one process;
- `collator`  : ms per batch of `MultiTaskDataset.__getitems__` + `MultiTaskDataCollator` against the step
                time, and against transformers' own collators on the same features.

    python benchmarks/profile_hotspots.py [pipeline|attention|collator ...] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import finish, machine_info, setup_run  # noqa: E402
from benchmarks._data import DEFAULT_DATA_DIR, TASKS, mixed_texts, model_dir, task_datasets  # noqa: E402


def profile_pipeline(args) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from hf_mtl import MultiTaskModel
    from hf_mtl.pipeline import MultiTaskPipeline

    model = MultiTaskModel.from_encoder(model_dir(), tasks=TASKS).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    texts = mixed_texts(args.data_dir, args.n_texts)
    pipe = MultiTaskPipeline(model=model, tokenizer=tokenizer, batch_size=32)
    pipe(texts[:64])
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    pipe(texts)
    profiler.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    by_name = {}
    for (filename, _, name), (_, _, tottime, cumtime, _) in stats.stats.items():
        by_name.setdefault((Path(filename).name, name), [0.0, 0.0])
        by_name[(Path(filename).name, name)][0] += tottime
        by_name[(Path(filename).name, name)][1] = max(by_name[(Path(filename).name, name)][1], cumtime)

    def cum(file: str, name: str) -> float:
        return by_name.get((file, name), [0.0, 0.0])[1]

    parts = {
        "_run_batches (padding + model calls)": cum("pipeline.py", "_run_batches"),
        "tokenization (preprocess)": cum("pipeline.py", "preprocess"),
        "postprocess (labels, entity grouping)": cum("pipeline.py", "postprocess"),
        "encoder (torch module calls)": cum("module.py", "_wrapped_call_impl"),
    }
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    print(f"pipeline, {len(texts)} texts: {total:.2f}s under cProfile")
    for k, v in parts.items():
        print(f"  {k}: {v:.2f}s ({v / total:.0%})")
    return {"texts": len(texts), "seconds_under_cprofile": total, "parts_seconds": parts,
            "top_tottime": out.getvalue().splitlines()[-20:]}


def _batches(tokenizer, data_dir: str, n: int, grouped: bool) -> list[dict[str, Any]]:
    from hf_mtl import MultiTaskDataCollator, MultiTaskDataset, prepare_datasets
    from hf_mtl.sampling import ProportionalBatchSampler

    raw = task_datasets(data_dir, "train", {t.name: 1000 for t in TASKS})
    dataset = MultiTaskDataset(prepare_datasets(raw, TASKS, tokenizer))
    sampler = ProportionalBatchSampler(dataset, 32, group_by_length=grouped, seed=0)
    collator = MultiTaskDataCollator(tokenizer, TASKS)
    return [collator(dataset.__getitems__(b)) for b in list(sampler)[:n]]


def profile_attention(args) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from hf_mtl import MultiTaskModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    out: dict[str, Any] = {}
    for grouped in (False, True):
        batches = _batches(tokenizer, args.data_dir, args.steps, grouped)
        models = {}
        for impl in ("eager", "sdpa"):
            torch.manual_seed(0)
            model = MultiTaskModel.from_encoder(model_dir(), tasks=TASKS, attn_implementation=impl)
            models[impl] = (model, torch.optim.AdamW(model.parameters(), lr=1e-5))
        times = {impl: {"train": [], "infer": []} for impl in models}
        for rep in range(args.repeats):
            for impl in (("eager", "sdpa") if rep % 2 == 0 else ("sdpa", "eager")):
                model, opt = models[impl]
                model.train()
                t0 = time.perf_counter()
                for batch in batches:
                    batch = dict(batch)
                    loss = model(**batch).loss
                    loss.backward()
                    opt.step()
                    opt.zero_grad()
                times[impl]["train"].append(time.perf_counter() - t0)
                model.eval()
                t0 = time.perf_counter()
                with torch.inference_mode():
                    for batch in batches:
                        model(**{k: v for k, v in batch.items() if k not in ("labels", "task_name")})
                times[impl]["infer"].append(time.perf_counter() - t0)
        examples = sum(len(b["input_ids"]) for b in batches)
        key = "grouped" if grouped else "random"
        out[key] = {
            impl: {kind: examples / min(v) for kind, v in t.items()} for impl, t in times.items()
        }
        for kind in ("train", "infer"):
            ratio = out[key]["sdpa"][kind] / out[key]["eager"][kind]
            out[key][f"{kind}_sdpa_vs_eager"] = ratio
            print(f"{key} batches, {kind}: eager {out[key]['eager'][kind]:.1f} ex/s, "
                  f"sdpa {out[key]['sdpa'][kind]:.1f} ex/s ({ratio:.2f}x)", flush=True)
    return out


def profile_collator(args) -> dict[str, Any]:
    from transformers import AutoTokenizer, DataCollatorForTokenClassification, DataCollatorWithPadding

    from hf_mtl import MultiTaskDataCollator, MultiTaskDataset, prepare_datasets
    from hf_mtl.sampling import ProportionalBatchSampler

    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    raw = task_datasets(args.data_dir, "train", {t.name: 2000 for t in TASKS})
    dataset = MultiTaskDataset(prepare_datasets(raw, TASKS, tokenizer))
    batches = list(ProportionalBatchSampler(dataset, 32, seed=0))[:150]
    collator = MultiTaskDataCollator(tokenizer, TASKS)
    t0 = time.perf_counter()
    features = [dataset.__getitems__(b) for b in batches]
    t1 = time.perf_counter()
    for f in features:
        collator(f)
    t2 = time.perf_counter()
    plain = {"sentiment": DataCollatorWithPadding(tokenizer), "topic": DataCollatorWithPadding(tokenizer),
             "ner": DataCollatorForTokenClassification(tokenizer)}
    keep = ("input_ids", "attention_mask", "token_type_ids", "labels")
    stripped = [[{k: v for k, v in x.items() if k in keep} for x in f] for f in features]
    t3 = time.perf_counter()
    for f, s in zip(features, stripped):
        plain[f[0]["task_name"]](s)
    t4 = time.perf_counter()
    n = len(batches)
    out = {"fetch_ms_per_batch": 1000 * (t1 - t0) / n, "collate_ms_per_batch": 1000 * (t2 - t1) / n,
           "transformers_collators_ms_per_batch": 1000 * (t4 - t3) / n}
    print(", ".join(f"{k} {v:.2f}" for k, v in out.items()))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="*", default=["collator", "attention", "pipeline"])
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--n-texts", type=int, default=600)
    parser.add_argument("--steps", type=int, default=8, help="batches per attention measurement")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    setup_run()
    payload: dict[str, Any] = {"benchmark": "profile_hotspots", "machine": machine_info(),
                               "command": "python benchmarks/profile_hotspots.py " + " ".join(sys.argv[1:])}
    fns = {"pipeline": profile_pipeline, "attention": profile_attention, "collator": profile_collator}
    for what in args.what:
        payload[what] = fns[what](args)
    return finish("profile_hotspots", payload, args.out)


if __name__ == "__main__":
    main()
