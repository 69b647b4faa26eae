"""The task batch samplers and MultiTaskDataset: purity, coverage, proportions, determinism, caps, lengths,
the same batch order as hf_mtl 0.1's single sampler, and strategies as an extension point."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_mtl import MultiTaskBatchSampler, MultiTaskDataset
from hf_mtl.sampling import (
    RunLength,
    TemperatureBatchSampler,
    UniformBatchSampler,
    register_sampling_strategy,
    sampling_strategies,
    sampling_strategy,
)

STRATEGIES = ("proportional", "temperature", "uniform", "round_robin")


def make_sampler(sizes, batch_size, strategy="proportional", **kwargs) -> MultiTaskBatchSampler:
    return sampling_strategy(strategy)(sizes, batch_size, **kwargs)


def task_probabilities(sizes, strategy, temperature=2.0):
    """The per-batch task probabilities of a drawing strategy for tasks of `sizes` examples."""
    kwargs = {"temperature": temperature} if strategy == "temperature" else {}
    return make_sampler(sizes, 1, strategy, **kwargs).probabilities()


def _task_of(index: int, sizes: list[int]) -> int:
    return int(np.searchsorted(np.cumsum(sizes), index, side="right"))


sizes_st = st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None)
@given(
    sizes=sizes_st,
    batch_size=st.integers(1, 9),
    strategy=st.sampled_from(STRATEGIES),
    seed=st.integers(0, 10_000),
    epoch=st.integers(0, 5),
    cap=st.one_of(st.none(), st.integers(1, 40)),
    drop_last=st.booleans(),
)
def test_batches_are_pure_sized_and_counted(sizes, batch_size, strategy, seed, epoch, cap, drop_last):
    sampler = make_sampler(
        sizes, batch_size, strategy, seed=seed, max_examples_per_task=cap, drop_last=drop_last
    )
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    total = sum(sizes)
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        assert len(set(batch)) == len(batch)
        assert all(0 <= i < total for i in batch)
        assert len({_task_of(i, sizes) for i in batch}) == 1  # one task per batch


@settings(max_examples=40, deadline=None)
@given(sizes=sizes_st, batch_size=st.integers(1, 9), seed=st.integers(0, 1000),
       strategy=st.sampled_from(["proportional", "round_robin"]))
def test_exhaustive_strategies_cover_every_example_once_per_epoch(sizes, batch_size, seed, strategy):
    sampler = make_sampler(sizes, batch_size, strategy, seed=seed)
    seen = [i for batch in sampler for i in batch]
    assert sorted(seen) == list(range(sum(sizes)))


@settings(max_examples=30, deadline=None)
@given(sizes=sizes_st, batch_size=st.integers(1, 9), cap=st.integers(1, 30), seed=st.integers(0, 1000))
def test_cap_limits_examples_per_task_and_changes_subset_per_epoch(sizes, batch_size, cap, seed):
    sampler = make_sampler(sizes, batch_size, max_examples_per_task=cap, seed=seed)
    counts = Counter(_task_of(i, sizes) for batch in sampler for i in batch)
    for task, size in enumerate(sizes):
        assert counts[task] == min(size, cap)


def test_cap_draws_a_fresh_subset_each_epoch():
    sampler = make_sampler([1000], 10, max_examples_per_task=50, seed=3)
    first = {i for b in sampler for i in b}
    sampler.set_epoch(1)
    second = {i for b in sampler for i in b}
    assert len(first) == len(second) == 50 and first != second


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_order_is_a_pure_function_of_seed_and_epoch(strategy):
    a = make_sampler([30, 7, 19], 4, strategy, seed=11)
    b = make_sampler([30, 7, 19], 4, strategy, seed=11)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating twice gives the same epoch
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    c = make_sampler([30, 7, 19], 4, strategy, seed=12)
    assert list(c) != list(make_sampler([30, 7, 19], 4, strategy, seed=11))


def test_temperature_math():
    sizes = [1000, 100, 10]
    np.testing.assert_allclose(task_probabilities(sizes, "temperature", 1.0), np.array(sizes) / 1110)
    p2 = task_probabilities(sizes, "temperature", 2.0)
    expected = np.sqrt(sizes) / np.sqrt(sizes).sum()
    np.testing.assert_allclose(p2, expected)
    np.testing.assert_allclose(task_probabilities(sizes, "temperature", 1e6), [1 / 3] * 3, atol=1e-4)
    np.testing.assert_allclose(task_probabilities(sizes, "uniform"), [1 / 3] * 3)
    with pytest.raises(ValueError, match="temperature"):
        task_probabilities(sizes, "temperature", 0)


@pytest.mark.parametrize(
    "strategy,temperature",
    [("proportional", 1.0), ("temperature", 2.0), ("temperature", 5.0), ("uniform", 1.0)],
)
def test_batch_mix_converges_to_the_strategy_probabilities(strategy, temperature):
    sizes = [800, 200, 40]
    settings = {"temperature": temperature} if strategy == "temperature" else {}
    sampler = make_sampler(sizes, 8, strategy, seed=0, **settings)
    counts = Counter()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        counts.update(_task_of(b[0], sizes) for b in sampler)
    observed = np.array([counts[t] for t in range(3)]) / sum(counts.values())
    expected = sampler.probabilities()
    if strategy != "proportional":
        np.testing.assert_allclose(expected, task_probabilities(sizes, strategy, temperature))
    np.testing.assert_allclose(observed, expected, atol=0.02)


def test_round_robin_alternates_tasks():
    sizes = [6, 6, 2]
    sampler = make_sampler(sizes, 2, "round_robin")
    tasks = [_task_of(b[0], sizes) for b in sampler]
    assert tasks == [0, 1, 2, 0, 1, 0, 1]


def test_small_tasks_repeat_under_uniform_sampling():
    sizes = [100, 3]
    sampler = make_sampler(sizes, 1, "uniform", seed=0)
    small = [b[0] for b in sampler if b[0] >= 100]
    assert len(small) > 3  # drawn about half the time, so re-shuffled and repeated
    assert set(small) == {100, 101, 102}


def test_length_grouping_cuts_padding():
    rng = np.random.default_rng(0)
    lengths = [rng.integers(5, 200, size=500).tolist(), rng.integers(5, 50, size=300).tolist()]
    sizes = [500, 300]
    flat = np.concatenate(lengths)

    def padding(sampler):
        waste = total = 0
        for batch in sampler:
            lens = flat[batch]
            waste += (lens.max() - lens).sum()
            total += lens.max() * len(lens)
        return waste / total

    grouped = make_sampler(sizes, 16, lengths=lengths, group_by_length=True, seed=0)
    plain = make_sampler(sizes, 16, seed=0)
    assert padding(grouped) < 0.1 < padding(plain)
    assert sorted(i for b in grouped for i in b) == list(range(800))
    assert all(len({_task_of(i, sizes) for i in b}) == 1 for b in grouped)


def test_no_batch_size_attribute_for_accelerate():
    sampler = make_sampler([10, 10], 4)
    assert not hasattr(sampler, "batch_size")


def test_argument_errors():
    with pytest.raises(ValueError, match="no training examples"):
        make_sampler([10, 0], 4, task_names=["a", "b"])
    with pytest.raises(ValueError, match="strategy"):
        make_sampler([10], 4, strategy="random")
    with pytest.raises(ValueError, match="lengths"):
        make_sampler([10], 4, group_by_length=True)
    with pytest.raises(ValueError, match="batch_size"):
        make_sampler([10], 0)


def test_multitask_dataset_indexing_and_batch_fetch():
    data = MultiTaskDataset(
        {
            "a": Dataset.from_dict({"input_ids": [[1], [2], [3]], "labels": [0, 1, 0], "length": [1, 1, 1]}),
            "b": Dataset.from_dict({"input_ids": [[4, 5], [6, 7]], "labels": [[1, 2], [0, 0]], "length": [2, 2]}),
        }
    )
    assert len(data) == 5
    assert data[3] == {"input_ids": [4, 5], "labels": [1, 2], "length": 2, "task_name": "b"}
    assert data.__getitems__([4, 3]) == [data[4], data[3]]
    assert data.lengths() == {"a": [1, 1, 1], "b": [2, 2]}
    with pytest.raises(IndexError):
        data[5]
    sampler = make_sampler(data, 2, group_by_length=True)
    assert sampler.task_names == ["a", "b"]


# ---------------------------------------------------------------------------- same order as hf_mtl 0.1
def frozen_order(sizes, batch_size, strategy, *, temperature=2.0, cap=None, lengths=None, drop_last=False,
                 seed=0, epoch=0):
    """A frozen copy of the batch order of hf_mtl 0.1's `MultiTaskBatchSampler` (one class, the strategy an
    if/elif string; commit 0816e1d): the strategy classes must reproduce it bit for bit, so training runs
    and resumed checkpoints keep their batch order."""
    n_tasks, offsets = len(sizes), np.concatenate(([0], np.cumsum(sizes)))[:-1].tolist()
    examples = [min(n, cap) if cap else n for n in sizes]
    rounding = math.floor if drop_last else math.ceil
    counts = [max(1, rounding(n / batch_size)) for n in examples]

    def rng(*keys):
        return np.random.default_rng([seed, epoch, *keys])

    def task_pass(task, repeat):
        r = rng(1, task, repeat)
        order = r.permutation(sizes[task])[: examples[task]]
        if lengths is not None:
            mega = batch_size * 50
            chunks = [order[i : i + mega] for i in range(0, len(order), mega)]
            order = np.concatenate([c[np.argsort(-np.asarray(lengths[task])[c], kind="stable")] for c in chunks])
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
            batches = batches[:-1]
        if lengths is not None:
            batches = [batches[i] for i in r.permutation(len(batches))]
        return [b + offsets[task] for b in batches]

    if strategy == "proportional":
        passes = [task_pass(t, 0) for t in range(n_tasks)]
        owners = rng(2).permutation(np.concatenate([np.full(len(p), t) for t, p in enumerate(passes)]))
        cursors = [0] * n_tasks
        out = []
        for t in owners:
            out.append(passes[t][cursors[t]].tolist())
            cursors[t] += 1
        return out
    if strategy == "round_robin":
        passes = [task_pass(t, 0) for t in range(n_tasks)]
        return [passes[t][i].tolist() for i in range(max(map(len, passes))) for t in range(n_tasks) if i < len(passes[t])]
    weights = np.asarray(examples, dtype=np.float64)
    weights = weights ** (1.0 / temperature) if strategy == "temperature" else np.ones_like(weights)
    probabilities = weights / weights.sum()
    owners = rng(3).choice(n_tasks, size=sum(counts), p=probabilities)

    def stream(t):
        repeat = 0
        while True:
            yield from task_pass(t, repeat)
            repeat += 1

    streams = [stream(t) for t in range(n_tasks)]
    return [next(streams[t]).tolist() for t in owners]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    "sizes,batch_size,extra",
    [
        ([30, 7, 19], 4, {}),
        ([100, 3], 8, {"drop_last": True}),
        ([57, 200, 12, 9], 5, {"cap": 40}),
        ([64, 33], 4, {"lengths": True, "temperature": 3.0}),
        ([5], 2, {"temperature": 0.5}),
    ],
)
def test_batch_order_is_bit_identical_to_hf_mtl_0_1(strategy, sizes, batch_size, extra):
    extra = dict(extra)
    lengths = None
    if extra.pop("lengths", False):
        rng = np.random.default_rng(1)
        lengths = [rng.integers(3, 60, size=n).tolist() for n in sizes]
    kwargs = {"temperature": extra["temperature"]} if strategy == "temperature" and "temperature" in extra else {}
    for seed in (0, 7, 12345):
        sampler = make_sampler(
            sizes, batch_size, strategy, seed=seed, max_examples_per_task=extra.get("cap"),
            drop_last=extra.get("drop_last", False), lengths=lengths, group_by_length=lengths is not None, **kwargs,
        )
        for epoch in (0, 1, 4):
            sampler.set_epoch(epoch)
            expected = frozen_order(
                sizes, batch_size, strategy, temperature=kwargs.get("temperature", 2.0), cap=extra.get("cap"),
                lengths=lengths, drop_last=extra.get("drop_last", False), seed=seed, epoch=epoch,
            )
            assert list(sampler) == expected, (seed, epoch)


# ---------------------------------------------------------------------------- strategies as an extension point
class LargestTaskFirst(MultiTaskBatchSampler):
    """A strategy of the test's own: every batch once per epoch, the largest task's batches first."""

    def task_order(self):
        counts = self.batches_per_task()
        return [t for t in sorted(range(len(counts)), key=lambda t: -counts[t]) for _ in range(counts[t])]

    def probabilities(self):
        counts = np.asarray(self.batches_per_task(), dtype=np.float64)
        return counts / counts.sum()


def test_a_new_strategy_is_one_subclass_and_one_registration():
    register_sampling_strategy("largest_first", LargestTaskFirst)
    assert "largest_first" in sampling_strategies()
    assert sampling_strategy("largest_first") is LargestTaskFirst
    sampler = make_sampler([4, 12, 8], 4, "largest_first", task_names=["a", "b", "c"])
    assert [_task_of(b[0], [4, 12, 8]) for b in sampler] == [1, 1, 1, 2, 2, 0]
    assert sampler.strategy == "largest_first" and sampler.settings()["strategy"] == "largest_first"
    assert sampler.describe() == {
        "name": "largest_first",
        "settings": {"max_examples_per_task": None, "group_by_length": False, "drop_last": False},
        "description": "Batches are spread over tasks by the `largest_first` strategy.",
    }
    with pytest.raises(ValueError, match="already registered"):
        register_sampling_strategy("largest_first", UniformBatchSampler)
    with pytest.raises(TypeError, match="subclass of MultiTaskBatchSampler"):
        register_sampling_strategy("not_a_sampler", dict)


def test_an_unregistered_strategy_class_is_recorded_by_its_import_path():
    class Local(LargestTaskFirst):
        pass

    name = f"{__name__}:test_an_unregistered_strategy_class_is_recorded_by_its_import_path.<locals>.Local"
    assert Local([3], 1).strategy == name
    assert sampling_strategy(name) is Local  # registered under its path in this process
    assert sampling_strategy(f"{__name__}:LargestTaskFirst") is LargestTaskFirst  # imported
    with pytest.raises(ValueError, match="cannot import"):
        sampling_strategy("no_such_module_xyz:Strategy")
    with pytest.raises(ValueError, match="not a subclass of MultiTaskBatchSampler"):
        sampling_strategy("collections:OrderedDict")


def test_a_strategy_must_order_exactly_one_epoch():
    class TooShort(LargestTaskFirst):
        def task_order(self):
            return list(super().task_order())[:-1]

    class WrongTask(LargestTaskFirst):
        def task_order(self):
            return [5] * len(self)

    with pytest.raises(ValueError, match=r"ordered 5 batches for epoch 0; expected len\(sampler\) = 6"):
        list(TooShort([4, 12, 8], 4))
    with pytest.raises(ValueError, match="chose task 5 for batch 0 of epoch 0; expected a task position 0..2"):
        list(WrongTask([4, 12, 8], 4))


def test_describe_gives_the_strategy_settings_and_the_card_sentence():
    sampler = make_sampler([10, 20], 4, "temperature", temperature=2.0, max_examples_per_task=1000)
    described = sampler.describe()
    assert described["name"] == "temperature"
    assert described["settings"] == {
        "temperature": 2.0, "max_examples_per_task": 1000, "group_by_length": False, "drop_last": False,
    }
    assert "T = 2 (`temperature` sampling)" in described["description"]
    assert described["description"].endswith("Each task contributes at most 1000 examples per epoch.")
    assert sampler.settings()["temperature"] == 2.0
    # a strategy's own settings only: changing the temperature of a proportional run does not block a resume
    assert "temperature" not in make_sampler([10, 20], 4, "proportional").settings()


def test_progress_tells_a_strategy_where_the_run_is():
    sampler = make_sampler([8, 8], 4)  # 4 batches per epoch
    assert sampler.progress() is None  # run length unknown
    sampler.set_run_length(RunLength(num_epochs=3))
    sampler.set_epoch(1)
    assert sampler.progress(2) == pytest.approx(6 / 12)
    sampler.set_run_length(RunLength(num_epochs=3, max_steps=2, batches_per_step=2))  # steps end it first
    assert sampler.progress(0) == 1.0
    assert RunLength(max_steps=5, batches_per_step=3).total_batches(100) == 15


# ---------------------------------------------------------------------------- through the trainer
def test_the_docs_strategy_drives_training_by_name_or_class(tmp_path, three_tasks, tokenizer):
    from conftest import make_model, raw_datasets
    from docs_examples import docs_example

    from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments

    task_blocks = docs_example("A new task sampling strategy")["TaskBlocks"]
    for strategy in ("task_blocks", task_blocks):
        args = MultiTaskTrainingArguments(
            output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=2, save_strategy="no",
            report_to=[], use_cpu=True, seed=3, disable_tqdm=True, task_sampling_strategy=strategy,
        )
        assert args.task_sampling_strategy == "task_blocks"
        model = make_model(three_tasks)
        routed = []
        forward = model.forward

        def spy(*a, task_name=None, **k):
            if model.training:
                routed.append(task_name)
            return forward(*a, task_name=task_name, **k)

        model.forward = spy
        trainer = MultiTaskTrainer(model=model, args=args, train_dataset=raw_datasets(), processing_class=tokenizer)
        trainer.train()
        assert len(routed) == 36  # 2 epochs of 3 tasks x 6 batches
        for epoch in (routed[:18], routed[18:]):
            blocks = [epoch[i] for i in range(18) if i == 0 or epoch[i] != epoch[i - 1]]
            assert sorted(blocks) == ["ner", "sentiment", "topic"]  # each task's batches in one block
        sampler = trainer._train_batch_sampler
        assert sampler.run_length == RunLength(num_epochs=2, max_steps=36, batches_per_step=1)
        assert trainer.run_record.sampling["name"] == "task_blocks"
        assert trainer.run_record.sampling["description"].startswith("Each epoch takes the tasks one after another")
        assert trainer.run_record.batch_shares == {"sentiment": 1 / 3, "topic": 1 / 3, "ner": 1 / 3}


def test_task_sampling_kwargs_reach_the_strategy(tmp_path, three_tasks, tokenizer):
    from conftest import make_model, raw_datasets

    from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments

    args = MultiTaskTrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, task_sampling_strategy="temperature",
        sampling_temperature=5.0, task_sampling_kwargs='{"temperature": 1.5}',
    )
    trainer = MultiTaskTrainer(model=make_model(three_tasks), args=args, train_dataset=raw_datasets(),
                               processing_class=tokenizer)
    assert trainer.make_batch_sampler(trainer.train_dataset).temperature == 1.5
    args.task_sampling_kwargs = None  # the temperature strategy's T otherwise comes from sampling_temperature
    assert trainer.make_batch_sampler(trainer.train_dataset).temperature == 5.0
    with pytest.raises(ValueError, match="task_sampling_kwargs must be a JSON object"):
        MultiTaskTrainingArguments(output_dir=str(tmp_path), task_sampling_kwargs="[1, 2")


# ---------------------------------------------------------------------------- all tasks per optimizer step
@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=4),
    batch_size=st.integers(1, 6),
    processes=st.integers(1, 3),
    rounds=st.integers(1, 3),
    strategy=st.sampled_from(["proportional", "round_robin"]),
    seed=st.integers(0, 1000),
)
def test_all_tasks_per_step_gives_every_process_one_batch_of_each_task_per_round(
    sizes, batch_size, processes, rounds, strategy, seed
):
    sampler = make_sampler(sizes, batch_size, strategy, seed=seed, all_tasks_per_step=True,
                           num_processes=processes, rounds_per_step=rounds)
    n = len(sizes)
    batches = list(sampler)
    assert len(batches) == len(sampler) and len(sampler) % (n * processes * rounds) == 0
    assert len(sampler) >= sum(make_sampler(sizes, batch_size).batches_per_task())  # no batch of an epoch lost
    for process in range(processes):  # accelerate deals batch i to process i % processes
        mine = batches[process::processes]
        tasks = [{_task_of(i, sizes) for i in batch} for batch in mine]
        assert all(len(t) == 1 for t in tasks)  # still one task per batch
        order = [t.pop() for t in tasks]
        assert order == list(range(n)) * (len(mine) // n)  # every task once per round, same order everywhere
    assert list(sampler) == batches  # a pure function of seed and epoch
    assert np.allclose(sampler.batch_shares(), 1 / n)
    assert sampler.settings()["all_tasks_per_step"] is True


def test_all_tasks_per_step_refuses_strategies_whose_order_it_would_replace():
    with pytest.raises(ValueError, match=r"replaces the task order of task_sampling_strategy='temperature'"):
        make_sampler([4, 4], 2, "temperature", all_tasks_per_step=True)
    with pytest.raises(ValueError, match=r"'annealed'"):
        make_sampler([4, 4], 2, "annealed", all_tasks_per_step=True)
    # off, the settings are those of checkpoints written before the option existed
    assert "all_tasks_per_step" not in make_sampler([4, 4], 2).settings()


# ---------------------------------------------------------------------------- annealed sampling
def test_annealed_probabilities_move_from_proportional_towards_uniform():
    sizes = [400, 100, 25]
    sampler = make_sampler(sizes, 1, "annealed")
    assert "annealed" in sampling_strategies()
    np.testing.assert_allclose(sampler.probabilities_at(1.0), np.array(sizes) / sum(sizes))
    end = sampler.probabilities_at(0.2)
    np.testing.assert_allclose(end, np.array(sizes) ** 0.2 / (np.array(sizes) ** 0.2).sum())
    assert sampler.alpha(None) == 1.0 and sampler.alpha(0.5) == pytest.approx(0.6) and sampler.alpha(1.0) == pytest.approx(0.2)
    shares = sampler.probabilities()  # the mix over the whole run: between the two
    assert shares[2] > sizes[2] / sum(sizes) and shares[2] < end[2] and shares.sum() == pytest.approx(1.0)
    custom = make_sampler(sizes, 1, "annealed", alpha_start=0.5, alpha_end=0.0)
    np.testing.assert_allclose(custom.probabilities_at(custom.alpha(1.0)), [1 / 3] * 3)
    with pytest.raises(ValueError, match=r"task_sampling_kwargs\['alpha_end'\] = -1"):
        make_sampler(sizes, 1, "annealed", alpha_end=-1)


def test_annealed_draws_follow_the_schedule_over_the_run_and_replay_per_seed_and_epoch():
    sizes = [600, 60]
    sampler = make_sampler(sizes, 2, "annealed", seed=3)
    epochs = 4
    sampler.set_run_length(RunLength(num_epochs=epochs))
    small_share = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        tasks = [{_task_of(i, sizes) for i in b} for b in batches]
        assert all(len(t) == 1 for t in tasks)
        small_share.append(np.mean([t == {1} for t in tasks]))
        assert list(sampler) == batches
    # proportional (60/660 = 9%) at the start, n^0.2 (38%) near the end
    assert small_share[0] < 0.2 and small_share[-1] > 0.28 and small_share == sorted(small_share)
    other = make_sampler(sizes, 2, "annealed", seed=4)
    other.set_run_length(RunLength(num_epochs=epochs))
    other.set_epoch(epochs - 1)
    assert list(other) != batches
    # the run's length is part of the settings a resumed run is checked against, and of the card sentence
    assert sampler.settings()["total_batches"] == epochs * len(sampler)
    assert f"over the run's {epochs * len(sampler)} batches" in sampler.describe()["description"]
    # with max_steps: the same schedule, ending where the steps end
    steps = make_sampler(sizes, 2, "annealed", seed=3)
    steps.set_run_length(RunLength(max_steps=len(sampler), batches_per_step=1))
    assert steps.progress(len(sampler) // 2) == pytest.approx(0.5, abs=0.01)
