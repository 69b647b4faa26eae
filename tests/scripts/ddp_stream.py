"""Streaming training under `torchrun`: each rank reads its own shard of the streams; then a run resumed from
the middle checkpoint. Each rank writes what it saw.

Launched by tests/test_streaming.py:
    python -m torch.distributed.run --nproc_per_node 2 tests/scripts/ddp_stream.py OUT

OUT/rank<r>.json: {"full": [[step, task, rows]...], "resumed": [...], "weights_sum": float} where `rows` are the
(unpadded) token ids of the batch's rows; "full" is a 6-step run saving checkpoint-3, "resumed" the same run
resumed from checkpoint-3.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mtl_fixture  # noqa: E402  (sets HF_HUB_OFFLINE before transformers is imported)
import torch.distributed as dist  # noqa: E402

from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments  # noqa: E402

MAX_STEPS, SAVE_STEPS = 6, 3


class Recorder(MultiTaskTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            rows = [[int(i) for i, m in zip(ids, mask) if m] for ids, mask in zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist())]
            self.seen.append([self.state.global_step + 1, inputs["task_name"], rows])
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def run(output_dir: str, resume: str | None) -> Recorder:
    raw = mtl_fixture.datasets(sizes=(24, 12, 18))
    data = {
        "sentiment": raw["sentiment"].to_iterable_dataset(num_shards=2),  # one shard per rank
        "topics": raw["topics"],  # map-style: each rank takes its half
        "ner": raw["ner"].to_iterable_dataset(),  # one shard: ranks take every other example
    }
    args = MultiTaskTrainingArguments(
        output_dir=output_dir, use_cpu=True, per_device_train_batch_size=2, max_steps=MAX_STEPS,
        save_strategy="steps", save_steps=SAVE_STEPS, stream_buffer_size=4, task_sampling_strategy="uniform",
        learning_rate=1e-3, report_to=[], disable_tqdm=True, logging_steps=2,
    )
    trainer = Recorder(model=mtl_fixture.model(dropout=0.0), args=args, train_dataset=data,
                       processing_class=mtl_fixture.tokenizer())
    trainer.seen = []
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def main() -> None:
    out = sys.argv[1]
    full = run(os.path.join(out, "run"), None)
    rank = full.args.process_index
    if rank == 0:
        shutil.rmtree(os.path.join(out, "run", f"checkpoint-{MAX_STEPS}"))
    dist.barrier()
    resumed = run(os.path.join(out, "run"), os.path.join(out, "run", f"checkpoint-{SAVE_STEPS}"))
    weights_sum = float(sum(p.detach().double().sum() for p in resumed.model.parameters()))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
        json.dump({"full": full.seen, "resumed": resumed.seen, "weights_sum": weights_sum,
                   "world_size": full.args.world_size}, handle)


if __name__ == "__main__":
    main()
