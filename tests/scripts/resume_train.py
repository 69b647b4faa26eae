"""Trains the tiny multi-task model for 2 epochs, optionally killing itself with SIGKILL or resuming.

Launched by tests/test_resume.py:
    python tests/scripts/resume_train.py OUTPUT_DIR RECORD.jsonl [--kill-at-step N] [--resume] [--stream]

Every training step appends {"step", "task", "indices", "loss"} to RECORD.jsonl (flushed at once, so the
record survives SIGKILL). A run that finishes also evaluates every task and writes RECORD.jsonl.final.json
(eval metrics, log history) and RECORD.jsonl.weights.safetensors (final weights).

With `--stream`, the sentiment and NER training data stream (`datasets.IterableDataset`, topics stays
map-style) and the run is `max_steps` long; "indices" then holds the token ids of the batch's rows.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mtl_fixture  # noqa: E402  (sets HF_HUB_OFFLINE before transformers is imported)
from safetensors.torch import save_file  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments  # noqa: E402
from hf_mtl.sampling import MultiTaskDataset  # noqa: E402

EPOCHS = 2
STREAM_STEPS = 22
SAVE_STEPS = 5
LOGGING_STEPS = 4


class Recorder(MultiTaskTrainer):
    def __init__(self, *args, record_path: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fetched: list[dict] = []
        self.trained = 0
        self.map_style = isinstance(self.train_dataset, MultiTaskDataset)
        if self.map_style:
            mtl_fixture.record_batches(self.train_dataset, self.fetched)
        self.record_file = open(record_path, "a", encoding="utf-8")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training and not self.map_style:  # a stream's batch: its rows' token ids
            batch = {"task": inputs["task_name"], "indices": [
                [i for i, m in zip(ids, mask) if m]
                for ids, mask in zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist())
            ]}
        elif model.training:
            batch = self.fetched[self.trained]  # fetches run ahead of training, in the same order
            self.trained += 1
            assert batch["task"] == inputs["task_name"], (batch, inputs["task_name"])
        if model.training:
            entry = {"step": self.state.global_step + 1, "task": batch["task"], "indices": batch["indices"],
                     "loss": float(loss.detach())}
            self.record_file.write(json.dumps(entry) + "\n")
            self.record_file.flush()
            os.fsync(self.record_file.fileno())
        return loss


class KillAt(TrainerCallback):
    def __init__(self, step: int | None):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("record")
    parser.add_argument("--kill-at-step", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stream", action="store_true")
    options = parser.parse_args()
    train_dataset = mtl_fixture.datasets()
    length = {"num_train_epochs": EPOCHS}
    if options.stream:
        train_dataset = {**train_dataset, "sentiment": train_dataset["sentiment"].to_iterable_dataset(num_shards=2),
                         "ner": train_dataset["ner"].to_iterable_dataset()}
        length = {"max_steps": STREAM_STEPS, "stream_buffer_size": 8, "group_by_length": True}

    args = MultiTaskTrainingArguments(
        output_dir=options.output_dir,
        use_cpu=True,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        **length,
        learning_rate=5e-3,
        weight_decay=0.01,
        warmup_steps=3,
        logging_steps=LOGGING_STEPS,
        save_steps=SAVE_STEPS,
        save_strategy="steps",
        report_to="none",
        seed=11,
        disable_tqdm=True,
    )
    trainer = Recorder(
        model=mtl_fixture.model(dropout=0.1),  # dropout on: the resumed run must also restore the RNG
        args=args,
        train_dataset=train_dataset,
        task_sizes={"sentiment": 20, "ner": 9} if options.stream else None,
        eval_dataset=mtl_fixture.datasets(sizes=(8, 8, 6), offset=1),
        processing_class=mtl_fixture.tokenizer(),
        callbacks=[KillAt(options.kill_at_step)],
        record_path=options.record,
    )
    trainer.train(resume_from_checkpoint=True if options.resume else None)
    metrics = trainer.evaluate()
    final = {
        "eval": {k: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second"))},
        "log_history": trainer.state.log_history,
        "global_step": trainer.state.global_step,
    }
    with open(options.record + ".final.json", "w", encoding="utf-8") as handle:
        json.dump(final, handle)
    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, options.record + ".weights.safetensors")


if __name__ == "__main__":
    main()
