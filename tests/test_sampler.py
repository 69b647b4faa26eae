"""MultiTaskBatchSampler and MultiTaskDataset: purity, coverage, proportions, determinism, caps, lengths."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_mtl import MultiTaskBatchSampler, MultiTaskDataset
from hf_mtl.sampling import STRATEGIES, task_probabilities


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
    sampler = MultiTaskBatchSampler(
        sizes, batch_size, strategy=strategy, seed=seed, max_examples_per_task=cap, drop_last=drop_last
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
    sampler = MultiTaskBatchSampler(sizes, batch_size, strategy=strategy, seed=seed)
    seen = [i for batch in sampler for i in batch]
    assert sorted(seen) == list(range(sum(sizes)))


@settings(max_examples=30, deadline=None)
@given(sizes=sizes_st, batch_size=st.integers(1, 9), cap=st.integers(1, 30), seed=st.integers(0, 1000))
def test_cap_limits_examples_per_task_and_changes_subset_per_epoch(sizes, batch_size, cap, seed):
    sampler = MultiTaskBatchSampler(sizes, batch_size, max_examples_per_task=cap, seed=seed)
    counts = Counter(_task_of(i, sizes) for batch in sampler for i in batch)
    for task, size in enumerate(sizes):
        assert counts[task] == min(size, cap)


def test_cap_draws_a_fresh_subset_each_epoch():
    sampler = MultiTaskBatchSampler([1000], 10, max_examples_per_task=50, seed=3)
    first = {i for b in sampler for i in b}
    sampler.set_epoch(1)
    second = {i for b in sampler for i in b}
    assert len(first) == len(second) == 50 and first != second


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_order_is_a_pure_function_of_seed_and_epoch(strategy):
    a = MultiTaskBatchSampler([30, 7, 19], 4, strategy=strategy, seed=11)
    b = MultiTaskBatchSampler([30, 7, 19], 4, strategy=strategy, seed=11)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating twice gives the same epoch
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    c = MultiTaskBatchSampler([30, 7, 19], 4, strategy=strategy, seed=12)
    assert list(c) != list(MultiTaskBatchSampler([30, 7, 19], 4, strategy=strategy, seed=11))


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
    sampler = MultiTaskBatchSampler(sizes, 8, strategy=strategy, temperature=temperature, seed=0)
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
    sampler = MultiTaskBatchSampler(sizes, 2, strategy="round_robin")
    tasks = [_task_of(b[0], sizes) for b in sampler]
    assert tasks == [0, 1, 2, 0, 1, 0, 1]


def test_small_tasks_repeat_under_uniform_sampling():
    sizes = [100, 3]
    sampler = MultiTaskBatchSampler(sizes, 1, strategy="uniform", seed=0)
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

    grouped = MultiTaskBatchSampler(sizes, 16, lengths=lengths, group_by_length=True, seed=0)
    plain = MultiTaskBatchSampler(sizes, 16, seed=0)
    assert padding(grouped) < 0.1 < padding(plain)
    assert sorted(i for b in grouped for i in b) == list(range(800))
    assert all(len({_task_of(i, sizes) for i in b}) == 1 for b in grouped)


def test_no_batch_size_attribute_for_accelerate():
    sampler = MultiTaskBatchSampler([10, 10], 4)
    assert not hasattr(sampler, "batch_size")


def test_argument_errors():
    with pytest.raises(ValueError, match="no training examples"):
        MultiTaskBatchSampler([10, 0], 4, task_names=["a", "b"])
    with pytest.raises(ValueError, match="strategy"):
        MultiTaskBatchSampler([10], 4, strategy="random")
    with pytest.raises(ValueError, match="lengths"):
        MultiTaskBatchSampler([10], 4, group_by_length=True)
    with pytest.raises(ValueError, match="batch_size"):
        MultiTaskBatchSampler([10], 0)


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
    sampler = MultiTaskBatchSampler(data, 2, group_by_length=True)
    assert sampler.task_names == ["a", "b"]
