"""Trains the tiny multi-task model for a few steps under `torchrun`; each rank writes what it saw.

Launched by tests/test_distributed.py:
    python -m torch.distributed.run --nproc_per_node 2 tests/scripts/ddp_train.py OUT [--no-use-cpu]

Per rank, OUT/rank<r>.json holds the batches it trained on (task, global indices), its local loss per
step, the world size it saw and the checkpoints it wrote; OUT/rank<r>_final.safetensors its final
weights. Rank 0 also writes init.safetensors and step1.safetensors (weights before/after step 1),
step1_batches<r> (each rank's first batch) and the trainer's log history. Plain SGD (no momentum, clipping
or schedule) with weight decay, so step 1 can be recomputed in one process by the test.

With `--loss-balancer learned_scale` the run uses docs/extending.md's learned balancer, and each rank also
records the balancer's parameters after step 1 and at the end. With `--all-tasks-per-step` every optimizer
step accumulates one batch of each task (e.g. with `--loss-balancer famo`).

Resuming (the multi-node test): `--stop-at-step N` ends training after step N (and its checkpoint);
`--resume` continues from the newest checkpoint in OUT/run; `--tag T` names the records rank<r>T.json and
rank<r>T_final.safetensors, so a resumed run does not overwrite the first run's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for docs_examples

import mtl_fixture  # noqa: E402  (sets HF_HUB_OFFLINE before transformers is imported)
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments  # noqa: E402


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


class Recorder(MultiTaskTrainer):
    """Records local losses, fetched batches and the first step's inputs of this rank."""

    def __init__(self, *args, out: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.out = out
        self.rank = self.args.process_index
        self.record = {"losses": [], "batches": [], "writes": [], "card_written": False}
        mtl_fixture.record_batches(self.train_dataset, self.record["batches"])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            self.record["losses"].append(
                {"step": self.state.global_step + 1, "task": inputs["task_name"], "loss": float(loss.detach())}
            )
            if self.state.global_step == 0:
                tensors = {k: v.detach().cpu().contiguous() for k, v in inputs.items() if torch.is_tensor(v)}
                save_file(tensors, os.path.join(self.out, f"step1_batch{self.rank}.safetensors"),
                          metadata={"task_name": inputs["task_name"]})
        return loss



class Step1Weights(TrainerCallback):
    """Rank 0 saves the weights after step 1; every rank records its loss balancer's tensors then."""

    def __init__(self, out: str):
        self.out = out
        self.trainer: Recorder | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == 1 and state.is_world_process_zero:
            save_file(weights(model), os.path.join(self.out, "step1.safetensors"))
        if state.global_step == 1:
            balancer = self.trainer.loss_balancer.state_dict()
            self.trainer.record["balancer_step1"] = {k: v.tolist() for k, v in balancer.items()}


class StopAt(TrainerCallback):
    """Ends training after step `step` (the checkpoint of that step is still written)."""

    def __init__(self, step: int | None):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def audit_writes(root: str, log: list) -> None:
    """Log every file this process opens for writing under `root` (Python-level opens: JSON, configs,
    tokenizer files, the model card; also `save_pretrained` calls, which write the weights)."""
    root = os.path.abspath(root)

    def hook(event, args):
        if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path, mode, flags = os.path.abspath(os.fsdecode(args[0])), args[1], args[2]
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & (os.O_WRONLY | os.O_RDWR))
        if writing and path.startswith(root + os.sep):
            log.append(os.path.relpath(path, root))

    sys.addaudithook(hook)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--no-use-cpu", action="store_true")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--loss-balancer", default="static")
    parser.add_argument("--all-tasks-per-step", action="store_true")
    parser.add_argument("--stop-at-step", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--tag", default="")
    options = parser.parse_args()
    balancer_kwargs = {}
    if options.loss_balancer == "learned_scale":
        from docs_examples import docs_example

        docs_example("A new loss balancer")  # registers it
        balancer_kwargs = {"init": 0.3}
    out = options.out
    os.makedirs(out, exist_ok=True)

    model = mtl_fixture.model(dropout=0.0)
    if int(os.environ.get("RANK", "0")) == 0:
        save_file(weights(model), os.path.join(out, "init.safetensors"))
    args = MultiTaskTrainingArguments(
        output_dir=os.path.join(out, "run"),
        use_cpu=not options.no_use_cpu,
        per_device_train_batch_size=4,
        max_steps=options.max_steps,
        optim="sgd",
        learning_rate=0.5,
        weight_decay=0.01,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        logging_steps=1,
        save_steps=2,
        save_strategy="steps",
        report_to="none",
        seed=7,
        disable_tqdm=True,
        loss_balancer=options.loss_balancer,
        loss_balancer_kwargs=balancer_kwargs,
        all_tasks_per_step=options.all_tasks_per_step,
    )
    step1 = Step1Weights(out)
    trainer = Recorder(
        model=model,
        args=args,
        train_dataset=mtl_fixture.datasets(),
        processing_class=mtl_fixture.tokenizer(),
        callbacks=[step1, StopAt(options.stop_at_step)],
        out=out,
    )
    step1.trainer = trainer
    if trainer.args.process_index == 0:
        sampler = trainer.make_batch_sampler(trainer.train_dataset)
        sampler.set_epoch(0)
        with open(os.path.join(out, "expected_order.json"), "w") as f:
            json.dump([list(map(int, b)) for b in sampler], f)
    audit_writes(args.output_dir, trainer.record["writes"])
    original_save = trainer.model.save_pretrained

    def save_pretrained(directory, *a, **k):
        trainer.record["writes"].append(f"save_pretrained:{os.path.basename(os.path.normpath(directory))}")
        return original_save(directory, *a, **k)

    trainer.model.save_pretrained = save_pretrained
    trainer.train(resume_from_checkpoint=True if options.resume else None)
    trainer.save_model(os.path.join(out, "final"))

    # The model card: every rank asks, only the main process may write it.
    readme = os.path.join(args.output_dir, "README.md")
    for rank in range(trainer.args.world_size):
        if rank == trainer.args.process_index:
            before = os.stat(readme).st_mtime_ns if os.path.exists(readme) else None
            trainer.create_model_card(model_name="ddp-test")
            after = os.stat(readme).st_mtime_ns if os.path.exists(readme) else None
            trainer.record["card_written"] = after != before
        if dist.is_initialized():
            dist.barrier()

    record = trainer.record
    record.update(
        world_size=trainer.args.world_size,
        num_processes=trainer.accelerator.num_processes,
        rank=trainer.args.process_index,
        find_unused_parameters=getattr(trainer.model_wrapped, "find_unused_parameters", None),
        log_history=trainer.state.log_history,
        decay_parameters=trainer.get_decay_parameter_names(trainer.model),
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        balancer_final={k: v.tolist() for k, v in trainer.loss_balancer.state_dict().items()},
    )
    rank = trainer.args.process_index
    with open(os.path.join(out, f"rank{rank}{options.tag}.json"), "w") as f:
        json.dump(record, f)
    save_file(weights(trainer.model), os.path.join(out, f"rank{rank}{options.tag}_final.safetensors"))


if __name__ == "__main__":
    main()
