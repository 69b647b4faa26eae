"""Quality of ONNX exports: each task's validation score for PyTorch fp32, ONNX Runtime fp32 and int8 variants.

Input: a trained checkpoint of `recipes/sentiment_topic_ner.yaml` (sentiment = SST-2, topic = AG News,
ner = CoNLL-2003) and its `hf-mtl export ... --quantize int8` folder. Every backend computes the same logits
(`model(input_ids, attention_mask, token_type_ids, tasks=...)`, length-sorted batches) on the validation
splits: SST-2 and AG News accuracy from the argmax, CoNLL-2003 entity F1 (seqeval's default, conlleval rules)
from each word's first sub-word, as training evaluates. The int8 variants are quantized here from the
export's `model.onnx`: per-tensor, per-channel (the default of `--quantize int8`), and per-channel with
chosen layers left in float32. Also reported: how often int8 and fp32 predictions differ, file sizes.
Not a test.

    python benchmarks/onnx_quality.py --model /tmp/ckpt_bench --export /tmp/onnx_bench [--max-examples 1000]
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
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks._common import finish, load_average, machine_info, setup_run, table  # noqa: E402
from benchmarks._data import DEFAULT_DATA_DIR, TASK_DATA, read_ag_news, read_conll, read_sst2, subset  # noqa: E402

READ = {"sst2": read_sst2, "ag_news": read_ag_news, "conll2003": read_conll}
#: int8 variants: name -> (per_channel, node-name substrings kept in float32)
VARIANTS = {
    "int8 per-tensor": (False, ()),
    "int8 per-channel": (True, ()),
    # the FFN output projections (largest activation ranges in BERT-style encoders) and the heads in float32
    "int8 per-channel, FFN out + heads fp32": (True, (r"layer\.\d+[./]output[./]dense", r"model[./]heads[./]")),
    "int8 per-tensor, FFN out + heads fp32": (False, (r"layer\.\d+[./]output[./]dense", r"model[./]heads[./]")),
}


def batches(encoded: list[dict[str, list[int]]], batch_size: int):
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]["input_ids"]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(encoded[i]["input_ids"]) for i in rows)
        arrays = {}
        for key in encoded[rows[0]]:
            if key == "word_ids":
                continue
            array = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                array[r, : len(encoded[i][key])] = encoded[i][key]
            arrays[key] = array
        yield rows, arrays


def predictions(model: Any, data: dict[str, Any], batch_size: int) -> dict[str, list]:
    """Per task, one prediction per example (a label id, or a tag id per word)."""
    import torch

    out: dict[str, list] = {}
    for task, (encoded, _) in data.items():
        preds: list = [None] * len(encoded)
        for rows, arrays in batches(encoded, batch_size):
            with torch.inference_mode():
                logits = model(**{k: torch.from_numpy(v) for k, v in arrays.items()}, tasks=[task]).logits[task]
            logits = logits.float().numpy()
            for r, i in enumerate(rows):
                if task == "ner":
                    word_ids = encoded[i]["word_ids"]
                    seen, tags = set(), []
                    for position, word in enumerate(word_ids):
                        if word is not None and word not in seen:
                            seen.add(word)
                            tags.append(int(logits[r, position].argmax()))
                    preds[i] = tags
                else:
                    preds[i] = int(logits[r].argmax())
        out[task] = preds
    return out


def scores(preds: dict[str, list], data: dict[str, Any], id2label: dict[str, dict[int, str]]) -> dict[str, float]:
    from seqeval.metrics import f1_score

    out = {}
    for task, (encoded, gold) in data.items():
        if task == "ner":
            labels = id2label[task]
            pred_tags = [[labels[t] for t in p] + ["O"] * (len(g) - len(p)) for p, g in zip(preds[task], gold)]
            out[task] = 100 * f1_score(gold, pred_tags)
        else:
            out[task] = 100 * float(np.mean([p == g for p, g in zip(preds[task], gold)]))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained checkpoint (recipes/sentiment_topic_ner.yaml)")
    parser.add_argument("--export", required=True, help="its `hf-mtl export` folder (model.onnx)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--max-examples", type=int, default=None, help="per task (default: whole validation split)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--variants", default=";".join(VARIANTS), help="int8 variants to quantize and score (';'-separated)")
    parser.add_argument("--files", default="", help="more ONNX files of the export folder to score (comma-separated)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from hf_mtl import MultiTaskModel
    from hf_mtl.export import quantize_int8
    from hf_mtl.onnx_backend import OnnxMultiTaskModel

    setup_run(args.threads)
    torch_model = MultiTaskModel.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.export)
    id2label = {t["name"]: {int(k): v for k, v in t["id2label"].items()} for t in torch_model.config.tasks}
    data: dict[str, Any] = {}
    for task, source in TASK_DATA.items():
        rows = subset(READ[source](args.data_dir, "validation"), args.max_examples, 0)
        if task == "ner":
            enc = tokenizer([r["tokens"] for r in rows], is_split_into_words=True, truncation=True)
            encoded = [{**{k: enc[k][i] for k in enc.keys()}, "word_ids": enc.word_ids(i)} for i in range(len(rows))]
            data[task] = (encoded, [r["tags"] for r in rows])
        else:
            label_ids = {v: k for k, v in id2label[task].items()}
            names = ["negative", "positive"] if source == "sst2" else ["World", "Sports", "Business", "Sci/Tech"]
            enc = tokenizer([r["text"] for r in rows], truncation=True)
            encoded = [{k: enc[k][i] for k in enc.keys()} for i in range(len(rows))]
            data[task] = (encoded, [label_ids.get(names[r["label"]], r["label"]) for r in rows])

    export = Path(args.export)
    backends: dict[str, tuple[Any, int | None]] = {
        "PyTorch fp32": (torch_model, None),
        "ORT fp32": (OnnxMultiTaskModel.from_pretrained(export, file="model.onnx"), (export / "model.onnx").stat().st_size),
    }
    for name in args.files.split(",") if args.files else []:  # other files of the export folder, e.g. model.opt.int8.onnx
        backends[f"ORT {name}"] = (OnnxMultiTaskModel.from_pretrained(export, file=name), (export / name).stat().st_size)
    workdir = Path(tempfile.mkdtemp(prefix="onnx_quality_"))
    chosen = [v.strip() for v in args.variants.split(";") if v.strip()]
    quantize_seconds = {}
    for name in chosen:
        per_channel, keep = VARIANTS[name]
        target = workdir / (name.replace(" ", "_").replace(",", "").replace("+", "") + ".onnx")
        t0 = time.perf_counter()
        quantize_int8(export / "model.onnx", target, per_channel=per_channel, keep_fp32=keep)
        quantize_seconds[name] = time.perf_counter() - t0
        config_dir = workdir / "folders" / target.stem  # an export folder whose model.onnx is this variant
        config_dir.mkdir(parents=True)
        for f in export.iterdir():
            if f.suffix != ".onnx":
                (config_dir / f.name).symlink_to(f.resolve())
        (config_dir / "model.onnx").symlink_to(target)
        backends[name] = (OnnxMultiTaskModel.from_pretrained(config_dir, file="model.onnx"), target.stat().st_size)

    results, all_preds = [], {}
    for name, (model, size) in backends.items():
        t0 = time.perf_counter()
        preds = predictions(model, data, args.batch_size)
        seconds = time.perf_counter() - t0
        all_preds[name] = preds
        row = {"backend": name, **scores(preds, data, id2label), "seconds": seconds,
               "size_mb": (size or sum(p.numel() * p.element_size() for p in torch_model.parameters())) / 1e6}
        results.append(row)
        print(f"[{name}] {row}", flush=True)
    reference = results[0]
    for row in results:
        for task in data:
            row[f"{task}_delta"] = row[task] - reference[task]
        ref_preds = all_preds["PyTorch fp32"]
        row["changed"] = {
            task: int(sum(a != b for a, b in zip(all_preds[row["backend"]][task], ref_preds[task]))) for task in data
        }
    columns = [("backend", "backend", "")]
    for task in data:
        columns += [(task, f"{task} ({'F1' if task == 'ner' else 'acc'})", ".2f"), (f"{task}_delta", "Δ", "+.2f")]
    columns += [("size_mb", "MB", ".1f"), ("seconds", "s", ".1f")]
    text = table(results, columns)
    print()
    print(text)
    payload = {
        "benchmark": "onnx_quality",
        "command": "python benchmarks/onnx_quality.py " + " ".join(sys.argv[1:]),
        "config": vars(args),
        "examples": {task: len(d[0]) for task, d in data.items()},
        "machine": machine_info(),
        "load_average": load_average(),
        "results": results,
        "quantize_seconds": quantize_seconds,
        "table": text,
    }
    return finish("onnx_quality", payload, args.out)


if __name__ == "__main__":
    main()
