"""Predicts with the tiny multi-task model under `torchrun`; rank 0 writes what `predict()` returned.

Launched by tests/test_evaluation.py:
    python -m torch.distributed.run --nproc_per_node 2 tests/scripts/ddp_predict.py OUT

The data has row counts that do not split evenly into batches over the processes (accelerate pads the last
batches and drops the duplicates when gathering) and a NER sentence split into windows. OUT/predict.npz
holds `<task>_predictions` and `<task>_label_ids`, OUT/metrics.json the merged metrics.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mtl_fixture  # noqa: E402  (sets HF_HUB_OFFLINE before transformers is imported)
import numpy as np  # noqa: E402
from datasets import Dataset, concatenate_datasets  # noqa: E402

from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments  # noqa: E402

#: the NER data's extra sentence, longer than MAX_LENGTH tokens
LONG_WORDS = "alpha the cat sat on a john smith in the big old house by the sea".split()
LONG_TAGS = ["O"] * 6 + ["B-PER", "I-PER"] + ["O"] * 8
MAX_LENGTH = 10


def data() -> dict[str, Dataset]:
    datasets = mtl_fixture.datasets(sizes=(11, 7, 9))
    long = Dataset.from_dict({"tokens": [LONG_WORDS], "tags": [LONG_TAGS]}).cast(datasets["ner"].features)
    datasets["ner"] = concatenate_datasets([datasets["ner"].select(range(4)), long, datasets["ner"].select(range(4, 9))])
    return datasets


def trainer(output_dir: str) -> MultiTaskTrainer:
    args = MultiTaskTrainingArguments(
        output_dir=output_dir, per_device_eval_batch_size=2, max_length=MAX_LENGTH, report_to=[], use_cpu=True,
        disable_tqdm=True,
    )
    return MultiTaskTrainer(model=mtl_fixture.model(), args=args, processing_class=mtl_fixture.tokenizer())


def main() -> None:
    out = sys.argv[1]
    run = trainer(os.path.join(out, "run"))
    output = run.predict(data())
    if run.args.process_index == 0:
        arrays = {}
        for name, task_output in output.items():
            arrays[f"{name}_predictions"] = task_output.predictions
            arrays[f"{name}_label_ids"] = task_output.label_ids
        np.savez(os.path.join(out, "predict.npz"), **arrays)
        with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as handle:
            json.dump({"world_size": run.args.world_size, **output.metrics}, handle)


if __name__ == "__main__":
    main()
