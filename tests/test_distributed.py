"""Multi-process training: `torchrun --nproc_per_node 2` on CPU (gloo) with the task batch sampler, and the same
on two "nodes" (two torchrun agents meeting at a c10d rendezvous), stopped after a checkpoint and resumed.

The ranks run tests/scripts/ddp_train.py and write what they saw; the checks here read those files.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_isolated, run_isolated_together
import torch
from safetensors.torch import load_file

SCRIPTS = Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import mtl_fixture  # noqa: E402

pytestmark = pytest.mark.slow

MAX_STEPS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def train_command(out: Path, *extra: str) -> list[str]:
    return [str(SCRIPTS / "ddp_train.py"), str(out), "--max-steps", str(MAX_STEPS), *extra]


def launch(out: Path, *extra: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """Two processes on one machine."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), *train_command(out, *extra),
    ]
    return run_isolated(command, {**os.environ, **ENV}, timeout)


def launch_two_nodes(out: Path, *extra: str, timeout: int = 240) -> list[subprocess.CompletedProcess]:
    """Two "nodes" of one process each: one torchrun agent per node, meeting at a c10d rendezvous, as on a
    cluster (`--nnodes 2 --node_rank R --rdzv-backend c10d --rdzv-endpoint HOST:PORT` on every machine)."""
    endpoint = f"127.0.0.1:{free_port()}"
    commands = [
        [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
            "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "mtl-test",
            *train_command(out, *extra),
        ]
        for node in range(2)
    ]
    return run_isolated_together(commands, {**os.environ, **ENV}, timeout)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    result = launch(out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return out, ranks


def task_of(index: int) -> str:
    sizes = [len(d) for d in mtl_fixture.datasets().values()]
    names = [t.name for t in mtl_fixture.tasks()]
    start = 0
    for name, size in zip(names, sizes):
        if start <= index < start + size:
            return name
        start += size
    raise AssertionError(f"index {index} is outside the dataset")


def trained_batches(rank: dict, steps: int = MAX_STEPS) -> list[dict]:
    # accelerate prefetches one batch ahead: the first `steps` fetches are the trained ones
    batches = rank["batches"][:steps]
    assert [b["task"] for b in batches] == [x["task"] for x in rank["losses"]]
    return batches


def check_batches(out: Path, ranks: list[dict], steps: int = MAX_STEPS) -> None:
    """Every step: different examples on the two ranks, one task per batch, whole batches of the sampler's
    order dealt to the ranks in turn."""
    expected = json.loads((out / "expected_order.json").read_text())
    per_rank = [trained_batches(rank, steps) for rank in ranks]
    for step in range(steps):
        seen = [set(batches[step]["indices"]) for batches in per_rank]
        assert not seen[0] & seen[1], f"step {step + 1}: both ranks trained on {seen[0] & seen[1]}"
        for r, batches in enumerate(per_rank):
            batch = batches[step]
            assert {task_of(i) for i in batch["indices"]} == {batch["task"]}
            assert batch["indices"] == expected[2 * step + r]


def check_logged_losses(ranks: list[dict], steps) -> None:
    """The logged loss of each of `steps` is the mean of the ranks' batch losses (not their sum); `<task>_loss`
    per task too. The history has every step up to the last (a resumed run's starts with the checkpoint's)."""
    logs = {e["step"]: e for e in ranks[0]["log_history"] if "loss" in e and "train_runtime" not in e}
    assert sorted(logs) == list(range(1, max(steps) + 1))
    for step in steps:
        entry = logs[step]
        local = [next(x for x in r["losses"] if x["step"] == step) for r in ranks]
        assert entry["loss"] == pytest.approx(sum(x["loss"] for x in local) / 2, rel=1e-5)
        for task in {x["task"] for x in local}:
            task_losses = [x["loss"] for x in local if x["task"] == task]
            assert entry[f"{task}_loss"] == pytest.approx(sum(task_losses) / len(task_losses), rel=1e-4)


def final_weights(out: Path, tag: str = "") -> dict[str, torch.Tensor]:
    """Rank 0's final weights, after checking that rank 1's are identical."""
    first, second = (load_file(out / f"rank{r}{tag}_final.safetensors") for r in range(2))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    return first


def test_ranks_form_one_group_without_graph_scan(ddp_run):
    _, ranks = ddp_run
    for rank in ranks:
        assert rank["world_size"] == 2 and rank["num_processes"] == 2
        # unused heads are handled without DDP's per-step unused-parameter scan
        assert rank["find_unused_parameters"] is False
        assert len(rank["losses"]) == MAX_STEPS


def test_every_rank_gets_different_single_task_batches(ddp_run):
    out, ranks = ddp_run
    check_batches(out, ranks)


def test_parameters_identical_across_ranks(ddp_run):
    out, _ = ddp_run
    first = final_weights(out)
    init = load_file(out / "init.safetensors")
    assert any(not torch.equal(first[n], init[n]) for n in first), "training did not change the model"


def test_logged_loss_is_the_mean_over_ranks_not_the_sum(ddp_run):
    _, ranks = ddp_run
    check_logged_losses(ranks, range(1, MAX_STEPS + 1))


def test_optimised_loss_is_the_mean_over_ranks_and_unused_heads_stay_put(ddp_run):
    """Recompute step 1 in one process: SGD on the mean of the two ranks' batch losses, weight decay only
    on parameters with a gradient. DDP must give the same weights; a head no rank used must not move."""
    out, ranks = ddp_run
    init = load_file(out / "init.safetensors")
    model = mtl_fixture.model(dropout=0.0)
    model.load_state_dict(init)
    model.train()
    losses, used = [], set()
    for r in range(2):
        path = out / f"step1_batch{r}.safetensors"
        from safetensors import safe_open

        with safe_open(path, "pt") as handle:
            task_name = handle.metadata()["task_name"]
        batch = load_file(path)
        used.add(task_name)
        losses.append(model(**batch, task_name=task_name).loss)
    (sum(losses) / 2).backward()
    lr, wd = ranks[0]["learning_rate"], ranks[0]["weight_decay"]
    decay = set(ranks[0]["decay_parameters"])
    after = load_file(out / "step1.safetensors")
    params = dict(model.named_parameters())
    for name, value in after.items():
        if name not in params:
            continue
        param = params[name].detach()
        grad = params[name].grad
        if grad is None:
            expected = param
        else:
            expected = param - lr * (grad + (wd * param if name in decay else 0))
        torch.testing.assert_close(value, expected, atol=2e-6, rtol=1e-5, msg=name)
    unused = [t.name for t in mtl_fixture.tasks() if t.name not in used]
    assert unused
    for task in unused:
        for name in after:
            if name.startswith(f"heads.{task}."):
                assert torch.equal(after[name], init[name]), f"{name} moved although no rank used head {task!r}"


def check_one_writer(ranks: list[dict]) -> None:
    main, other = ranks
    assert other["writes"] == [], f"rank 1 wrote {other['writes']}"
    assert main["card_written"] and not other["card_written"]


def test_checkpoints_and_model_card_written_by_main_process_only(ddp_run):
    out, ranks = ddp_run
    run = out / "run"
    for step in (2, 4):
        checkpoint = run / f"checkpoint-{step}"
        for name in ("model.safetensors", "config.json", "trainer_state.json", "multitask_state.json"):
            assert (checkpoint / name).is_file(), f"{checkpoint}/{name}"
        assert not list(checkpoint.glob("pytorch_model*.bin"))  # weights only as safetensors
        state = json.loads((checkpoint / "multitask_state.json").read_text())
        assert state["world_size"] == 2 and state["sampler"]["task_names"] == ["sentiment", "topics", "ner"]
    check_one_writer(ranks)
    assert "checkpoint-2/trainer_state.json" in ranks[0]["writes"]
    assert "save_pretrained:checkpoint-4" in ranks[0]["writes"]
    assert (run / "README.md").is_file()


# ---------------------------------------------------------------------------- two nodes, stopped and resumed
def test_two_nodes_train_stop_after_a_checkpoint_and_resume_to_the_single_node_result(ddp_run, tmp_path):
    """Two torchrun agents (one process each) meeting at a c10d rendezvous train steps 1-2 and stop after
    checkpoint-2; both are restarted with resume_from_checkpoint=True and train steps 3-4. Both legs keep the
    invariants of the one-machine run (single-task batches dealt in turn, the logged loss a mean over ranks,
    identical weights, one writer), and the resumed run ends with the one-machine run's weights and losses."""
    stopped = launch_two_nodes(tmp_path, "--stop-at-step", "2", "--tag", "_first")
    for node, result in enumerate(stopped):
        assert result.returncode == 0, f"node {node}: " + result.stdout[-2000:] + result.stderr[-4000:]
    first = [json.loads((tmp_path / f"rank{r}_first.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in first] == [2, 2] and [r["rank"] for r in first] == [0, 1]
    assert [len(r["losses"]) for r in first] == [2, 2]
    check_batches(tmp_path, first, steps=2)
    check_logged_losses(first, range(1, 3))
    check_one_writer(first)
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-2"]
    final_weights(tmp_path, "_first")

    resumed = launch_two_nodes(tmp_path, "--resume", "--tag", "_resumed")
    for node, result in enumerate(resumed):
        assert result.returncode == 0, f"node {node}: " + result.stdout[-2000:] + result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}_resumed.json").read_text()) for r in range(2)]
    assert [[x["step"] for x in r["losses"]] for r in ranks] == [[3, 4], [3, 4]]
    check_logged_losses(ranks, range(3, MAX_STEPS + 1))
    check_one_writer(ranks)
    assert "save_pretrained:checkpoint-4" in ranks[0]["writes"]
    reference_out, reference = ddp_run
    for r in range(2):  # the same batches and losses as the uninterrupted one-machine run
        assert [x["task"] for x in ranks[r]["losses"]] == [x["task"] for x in reference[r]["losses"][2:]]
        assert [x["loss"] for x in ranks[r]["losses"]] == pytest.approx([x["loss"] for x in reference[r]["losses"][2:]], rel=1e-5)
    expected = final_weights(reference_out)
    for name, value in final_weights(tmp_path, "_resumed").items():
        torch.testing.assert_close(value, expected[name], msg=name)


def test_launch_without_use_cpu_fails_clearly(tmp_path):
    result = launch(tmp_path, "--no-use-cpu")
    assert result.returncode != 0
    assert "use_cpu=True" in result.stderr and "every process would train its own copy" in result.stderr
    assert not (tmp_path / "rank0.json").exists()


# ---------------------------------------------------------------------------- a learned loss balancer
@pytest.fixture(scope="module")
def ddp_learned_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_learned")
    result = launch(out, "--loss-balancer", "learned_scale")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_learned_balancer_gradients_are_averaged_over_ranks(ddp_learned_run):
    """docs/extending.md's balancer: loss exp(-s) L + s per batch, s a parameter outside the DDP-wrapped model.
    Step 1 recomputed from each rank's balanced loss b (d/ds = 1 - (b - s)): SGD on the mean over ranks, the
    same on both ranks, a task no rank used untouched."""
    out, ranks = ddp_learned_run
    init = 0.3
    step1 = [rank["balancer_step1"]["log_scale"] for rank in ranks]
    assert step1[0] == step1[1], "the ranks' balancers diverged after step 1"
    names = [t.name for t in mtl_fixture.tasks()]
    grads = dict.fromkeys(names, 0.0)
    for rank in ranks:
        first = rank["losses"][0]
        grads[first["task"]] += (1.0 - (first["loss"] - init)) / 2
    lr = ranks[0]["learning_rate"]
    assert step1[0] == pytest.approx([init - lr * grads[name] for name in names], abs=1e-5)
    assert any(g == 0.0 for g in grads.values())  # two ranks, three tasks: one task unused at step 1
    assert ranks[0]["balancer_final"] == ranks[1]["balancer_final"]
    first, second = (load_file(out / f"rank{r}_final.safetensors") for r in range(2))
    for name in first:
        assert torch.equal(first[name], second[name]), name
    checkpoint = out / "run" / "checkpoint-4"
    saved = load_file(checkpoint / "loss_balancer.safetensors")["log_scale"].tolist()
    assert saved == pytest.approx(ranks[0]["balancer_final"]["log_scale"])


@pytest.fixture(scope="module")
def ddp_all_tasks_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_all_tasks")
    result = launch(out, "--loss-balancer", "famo", "--all-tasks-per-step")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_all_tasks_per_step_under_ddp_every_rank_every_task_one_famo_state(ddp_all_tasks_run):
    """all_tasks_per_step with FAMO on 2 ranks: each rank trains one batch of every task per step, in the same
    task order, on different examples; the logged loss is the mean over ranks and batches (not a sum); FAMO's
    state (updated from losses summed over ranks) and the weights stay identical on both ranks."""
    out, ranks = ddp_all_tasks_run
    names = [t.name for t in mtl_fixture.tasks()]
    for rank in ranks:
        assert [x["task"] for x in rank["losses"]] == names * MAX_STEPS
        assert [x["step"] for x in rank["losses"]] == [s for s in range(1, MAX_STEPS + 1) for _ in names]
    first, second = (rank["batches"][: MAX_STEPS * len(names)] for rank in ranks)
    assert [b["task"] for b in first] == [b["task"] for b in second]
    assert all(a["indices"] != b["indices"] for a, b in zip(first, second))
    logged = {e["step"]: e for e in ranks[0]["log_history"] if "loss" in e and "train_runtime" not in e}
    for step in range(1, MAX_STEPS + 1):
        losses = [x["loss"] for rank in ranks for x in rank["losses"] if x["step"] == step]
        assert logged[step]["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-4), step
    assert ranks[0]["balancer_final"] == ranks[1]["balancer_final"]
    assert ranks[0]["balancer_final"]["logits"] != [0.0] * len(names), "FAMO's logits never moved"
    final = [load_file(out / f"rank{r}_final.safetensors") for r in range(2)]
    for name in final[0]:
        assert torch.equal(final[0][name], final[1][name]), name
