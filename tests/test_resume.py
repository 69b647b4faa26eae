"""Crash-safe resume: SIGKILL mid-epoch, restart with `resume_from_checkpoint`, same result as one run.

The slow test runs tests/scripts/resume_train.py three times in subprocesses (uninterrupted; killed at
step 17 of 22, after checkpoint-15; resumed) and compares what they recorded. The fast tests cover what a
resume must refuse.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_isolated
import torch
from safetensors.torch import load_file
from transformers import TrainerState

SCRIPTS = Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import mtl_fixture  # noqa: E402

from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments  # noqa: E402
from hf_mtl.trainer import MULTITASK_STATE_NAME  # noqa: E402

KILL_AT = 17
TOTAL_STEPS = 22  # 2 epochs of 11 batches (20, 12 and 9 examples, batch size 4)


def run_script(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, str(SCRIPTS / "resume_train.py"), *args]
    return run_isolated(command, env, timeout)


def read_steps(path: Path) -> dict[int, dict]:
    return {entry["step"]: entry for entry in map(json.loads, path.read_text().splitlines())}


@pytest.mark.slow
def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path):
    full = run_script(str(tmp_path / "full"), str(tmp_path / "full.jsonl"))
    assert full.returncode == 0, full.stderr[-5000:]

    killed = run_script(str(tmp_path / "run"), str(tmp_path / "killed.jsonl"), "--kill-at-step", str(KILL_AT))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-5000:]
    checkpoints = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert checkpoints == ["checkpoint-10", "checkpoint-15", "checkpoint-5"]
    state = json.loads((tmp_path / "run" / "checkpoint-15" / MULTITASK_STATE_NAME).read_text())
    assert state["sampler"]["epoch"] == 1  # checkpoint-15 is 4 batches into the second epoch
    assert state["last_logged_step"] == 12 and sum(n for _, n in state["task_loss_since_log"].values()) == 3
    # A newer checkpoint cut short while it was written (no trainer_state.json, truncated weights) is skipped.
    partial = tmp_path / "run" / "checkpoint-16"
    shutil.copytree(tmp_path / "run" / "checkpoint-15", partial)
    (partial / "trainer_state.json").unlink()
    weights = (partial / "model.safetensors").read_bytes()
    (partial / "model.safetensors").write_bytes(weights[: len(weights) // 3])

    resumed = run_script(str(tmp_path / "run"), str(tmp_path / "resumed.jsonl"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    assert "Skipping incomplete checkpoint" in resumed.stderr

    full_steps = read_steps(tmp_path / "full.jsonl")
    killed_steps = read_steps(tmp_path / "killed.jsonl")
    resumed_steps = read_steps(tmp_path / "resumed.jsonl")
    assert sorted(full_steps) == list(range(1, TOTAL_STEPS + 1))
    assert sorted(killed_steps) == list(range(1, KILL_AT + 1))
    assert sorted(resumed_steps) == list(range(16, TOTAL_STEPS + 1))  # from checkpoint-15 on
    for steps in (killed_steps, resumed_steps):
        for step, entry in steps.items():
            # same task and examples in every batch, and (dropout RNG restored) the same loss
            assert (entry["task"], entry["indices"]) == (full_steps[step]["task"], full_steps[step]["indices"]), step
            assert entry["loss"] == pytest.approx(full_steps[step]["loss"], rel=1e-5, abs=1e-6), step

    full_weights = load_file(tmp_path / "full.jsonl.weights.safetensors")
    resumed_weights = load_file(tmp_path / "resumed.jsonl.weights.safetensors")
    assert full_weights.keys() == resumed_weights.keys()
    for name in full_weights:
        torch.testing.assert_close(resumed_weights[name], full_weights[name], atol=1e-6, rtol=1e-5, msg=name)

    full_final = json.loads((tmp_path / "full.jsonl.final.json").read_text())
    resumed_final = json.loads((tmp_path / "resumed.jsonl.final.json").read_text())
    assert resumed_final["global_step"] == TOTAL_STEPS
    assert resumed_final["eval"].keys() == full_final["eval"].keys()
    for key, value in full_final["eval"].items():
        assert resumed_final["eval"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert any(k.startswith("eval_ner_") for k in full_final["eval"])

    # Loss history: every logged training loss, per task too, matches; the log at step 16 spans the kill.
    def train_logs(final):
        return {e["step"]: e for e in final["log_history"] if "loss" in e and "train_runtime" not in e}

    full_logs, resumed_logs = train_logs(full_final), train_logs(resumed_final)
    assert sorted(resumed_logs) == sorted(full_logs) == [4, 8, 12, 16, 20]
    for step, entry in full_logs.items():
        for key, value in entry.items():
            if key == "loss" or key.endswith("_loss"):
                assert resumed_logs[step].get(key) == pytest.approx(value, rel=1e-5), (step, key)


@pytest.mark.slow
def test_sigkill_and_resume_with_streaming_tasks(tmp_path):
    """Two tasks stream (one map-style): killed after checkpoint-15 and resumed, the run trains on exactly the
    rows, tasks and losses of the uninterrupted run, and ends with the same weights (streams continue from
    the position each checkpoint recorded, not from their start)."""
    full = run_script(str(tmp_path / "full"), str(tmp_path / "full.jsonl"), "--stream")
    assert full.returncode == 0, full.stderr[-5000:]
    killed = run_script(str(tmp_path / "run"), str(tmp_path / "killed.jsonl"), "--stream", "--kill-at-step", str(KILL_AT))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-5000:]
    resumed = run_script(str(tmp_path / "run"), str(tmp_path / "resumed.jsonl"), "--stream", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-5000:]

    full_steps, resumed_steps = read_steps(tmp_path / "full.jsonl"), read_steps(tmp_path / "resumed.jsonl")
    assert sorted(full_steps) == list(range(1, TOTAL_STEPS + 1))
    assert sorted(resumed_steps) == list(range(16, TOTAL_STEPS + 1))  # from checkpoint-15 on
    assert {e["task"] for e in resumed_steps.values()} == {"sentiment", "topics", "ner"}
    for step, entry in resumed_steps.items():
        assert (entry["task"], entry["indices"]) == (full_steps[step]["task"], full_steps[step]["indices"]), step
        assert entry["loss"] == pytest.approx(full_steps[step]["loss"], rel=1e-5, abs=1e-6), step
    full_weights = load_file(tmp_path / "full.jsonl.weights.safetensors")
    resumed_weights = load_file(tmp_path / "resumed.jsonl.weights.safetensors")
    for name in full_weights:
        torch.testing.assert_close(resumed_weights[name], full_weights[name], atol=1e-6, rtol=1e-5, msg=name)


# ---------------------------------------------------------------------------- what a resume refuses
def make_trainer(output_dir, sizes=(20, 12, 9), **overrides) -> MultiTaskTrainer:
    kwargs = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        per_device_train_batch_size=4,
        max_steps=2,
        save_steps=2,
        report_to="none",
        seed=3,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return MultiTaskTrainer(
        model=mtl_fixture.model(),
        args=MultiTaskTrainingArguments(**kwargs),
        train_dataset=mtl_fixture.datasets(sizes=sizes),
        processing_class=mtl_fixture.tokenizer(),
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("resume-src")
    make_trainer(output_dir).train()
    return output_dir / "checkpoint-2"


def copy_checkpoint(checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "out" / checkpoint.name
    shutil.copytree(checkpoint, target)
    return target


def test_resume_with_different_training_data_is_refused(checkpoint, tmp_path):
    target = copy_checkpoint(checkpoint, tmp_path)
    trainer = make_trainer(tmp_path / "out", sizes=(20, 12, 8), max_steps=3)
    with pytest.raises(ValueError, match=r"task_sizes: checkpoint \[20, 12, 9\], now \[20, 12, 8\].*ignore_data_skip"):
        trainer.train(resume_from_checkpoint=str(target))


def test_resume_with_different_seed_is_refused_unless_data_skip_is_ignored(checkpoint, tmp_path):
    target = copy_checkpoint(checkpoint, tmp_path)
    with pytest.raises(ValueError, match="seed: checkpoint 3, now 4"):
        make_trainer(tmp_path / "out", seed=4, max_steps=3).train(resume_from_checkpoint=str(target))
    trainer = make_trainer(tmp_path / "out", seed=4, max_steps=3, ignore_data_skip=True)
    trainer.train(resume_from_checkpoint=str(target))
    assert trainer.state.global_step == 3


def test_resume_from_incomplete_checkpoint_is_refused(checkpoint, tmp_path):
    target = copy_checkpoint(checkpoint, tmp_path)
    (target / "trainer_state.json").unlink()
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        make_trainer(tmp_path / "out", max_steps=3).train(resume_from_checkpoint=str(target))
    with pytest.raises(ValueError, match="No complete checkpoint"):
        make_trainer(tmp_path / "out", max_steps=3).train(resume_from_checkpoint=True)


def test_resume_from_pickle_weights_is_refused(checkpoint, tmp_path):
    target = copy_checkpoint(checkpoint, tmp_path)
    state_dict = load_file(target / "model.safetensors")
    (target / "model.safetensors").unlink()
    torch.save(state_dict, target / "pytorch_model.bin")
    with pytest.raises(ValueError, match="safetensors only"):
        make_trainer(tmp_path / "out", max_steps=3).train(resume_from_checkpoint=str(target))


def test_last_complete_checkpoint_skips_partial_ones(tmp_path):
    for step, complete in ((5, True), (10, True), (15, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert MultiTaskTrainer.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert MultiTaskTrainer.last_complete_checkpoint(tmp_path / "missing") is None


def test_epoch_reaches_the_sampler_itself(tmp_path):
    # accelerate's set_epoch cannot reach the sampler through SkipBatchSampler(BatchSamplerShard(...)),
    # as on a multi-process resume; the trainer sets it on the sampler at every epoch start.
    trainer = make_trainer(tmp_path)
    trainer.get_train_dataloader()
    trainer.callback_handler.on_epoch_begin(trainer.args, TrainerState(epoch=2.4), trainer.control)
    assert trainer._train_batch_sampler.epoch == 2


def test_checkpoint_of_hf_mtl_0_1_resumes(checkpoint, tmp_path):
    # hf_mtl 0.1 wrote every sampler setting, the temperature even for other strategies, and no loss balancer
    target = copy_checkpoint(checkpoint, tmp_path)
    state = json.loads((target / MULTITASK_STATE_NAME).read_text())
    del state["loss_balancer"]
    state["sampler"]["temperature"] = 2.0
    (target / MULTITASK_STATE_NAME).write_text(json.dumps(state))
    trainer = make_trainer(tmp_path / "out", max_steps=3, sampling_temperature=4.0)
    trainer.train(resume_from_checkpoint=str(target))
    assert trainer.state.global_step == 3
    # its balancer was the static one: a run with another balancer cannot take over its optimizer state
    from docs_examples import docs_example

    docs_example("A new loss balancer")
    with pytest.raises(ValueError, match="trained with loss balancer 'static'"):
        make_trainer(tmp_path / "out", max_steps=3, loss_balancer="learned_scale").train(
            resume_from_checkpoint=str(target)
        )
