"""Streaming training data (`hf_mtl.streaming`): `datasets.IterableDataset` tasks, alone or mixed with map-style
ones; lazy preparation, bounded buffers, the strategy's task mix, exact resume, recipe `streaming: true`."""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from collections import Counter

import pytest
from conftest import make_model, raw_datasets
from datasets import Dataset, IterableDataset, SplitDict, SplitInfo

from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments
from hf_mtl.data.sources import load_task_data
from hf_mtl.recipe import RecipeError, parse_recipe
from hf_mtl.sampling import RoundRobinBatchSampler, TemperatureBatchSampler
from hf_mtl.streaming import STREAM_STATE_NAME, StreamTaskBatches, stream_num_rows


class Recorder(MultiTaskTrainer):
    """Records the task and token ids of every training batch."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.seen.append((inputs["task_name"], inputs["input_ids"].tolist()))
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def mixed_data(n: int = 30) -> dict:
    raw = raw_datasets(n)
    return {
        "sentiment": raw["sentiment"].to_iterable_dataset(num_shards=2),
        "topic": raw["topic"],  # map-style, in the same run
        "ner": raw["ner"].to_iterable_dataset(),
    }


def make_trainer(tmp_path, three_tasks, tokenizer, data=None, task_sizes=None, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=4, use_cpu=True, report_to=[],
        stream_buffer_size=8, disable_tqdm=True, save_strategy="no",
    )
    kwargs.update(overrides)
    trainer = Recorder(
        model=make_model(three_tasks), args=MultiTaskTrainingArguments(**kwargs),
        train_dataset=data if data is not None else mixed_data(), processing_class=tokenizer,
        task_sizes=task_sizes if task_sizes is not None else {"sentiment": 30, "ner": 30},
    )
    trainer.seen = []
    return trainer


def test_mixed_streaming_and_map_tasks_train_one_task_per_batch(tmp_path, three_tasks, tokenizer):
    trainer = make_trainer(tmp_path, three_tasks, tokenizer, max_steps=16, task_sampling_strategy="round_robin")
    trainer.train()
    tasks = [task for task, _ in trainer.seen]
    assert tasks == ["sentiment", "topic", "ner"] * 5 + ["sentiment"]  # round robin takes turns, streams too
    prepared = trainer.train_datasets["topic"]
    topic_ids = {tuple(ids) for ids in prepared["input_ids"]}
    for task, batch in trainer.seen:
        assert len(batch) == 4
        if task == "topic":  # the map-style task's batches hold its own rows
            assert all(tuple(i for i in ids if i != tokenizer.pad_token_id) in topic_ids for ids in batch)


def test_streaming_needs_max_steps(tmp_path, three_tasks, tokenizer):
    with pytest.raises(ValueError, match=r"task\(s\) \['sentiment', 'ner'\] streams.*set max_steps"):
        make_trainer(tmp_path, three_tasks, tokenizer, max_steps=-1, num_train_epochs=1)


def test_streaming_refuses_distillation_and_all_tasks_per_step(tmp_path, three_tasks, tokenizer):
    from hf_mtl.distillation import DistillationConfig

    with pytest.raises(ValueError, match=r"distillation needs map-style training data.*\['sentiment', 'ner'\]"):
        Recorder(
            model=make_model(three_tasks), args=MultiTaskTrainingArguments(output_dir=str(tmp_path), max_steps=2),
            train_dataset=mixed_data(), processing_class=tokenizer, task_sizes={"sentiment": 30, "ner": 30},
            distillation=DistillationConfig(teachers={"topic": make_model(three_tasks)}),
        )
    with pytest.raises(ValueError, match="all_tasks_per_step is not supported with streaming"):
        make_trainer(tmp_path, three_tasks, tokenizer, all_tasks_per_step=True)


def test_size_needed_by_proportional_strategy(tmp_path, three_tasks, tokenizer):
    trainer = make_trainer(tmp_path, three_tasks, tokenizer, task_sizes={"sentiment": 30})
    with pytest.raises(ValueError, match=r"size of streaming task\(s\) \['ner'\] is unknown.*num_rows"):
        trainer.train()
    # uniform needs no sizes
    trainer = make_trainer(tmp_path, three_tasks, tokenizer, task_sizes={}, task_sampling_strategy="uniform", max_steps=3)
    trainer.train()
    assert len(trainer.seen) == 3


def test_size_from_dataset_info():
    stream = Dataset.from_dict({"text": ["a"] * 5}).to_iterable_dataset()
    assert stream_num_rows(stream) is None
    stream.info.splits = SplitDict({"train": SplitInfo("train", num_examples=1234)})
    stream._split = "train"
    assert stream_num_rows(stream) == 1234
    assert stream_num_rows(stream, given=7) == 7


def test_stream_task_order_follows_strategy_probabilities():
    sampler = TemperatureBatchSampler([900, 100], 4, temperature=2.0, task_names=["a", "b"], seed=3)
    order = list(zip(range(6000), sampler.stream_task_order()))
    share = Counter(t for _, t in order)[1] / len(order)
    assert abs(share - sampler.probabilities()[1]) < 0.03  # p_b = 10 / (30 + 10) = 0.25
    # a pure function of the position: a resumed run continues the same order
    tail = list(zip(range(100), sampler.stream_task_order(2000)))
    assert [t for _, t in tail] == [t for _, t in order[2000:2100]]
    robin = RoundRobinBatchSampler([5, 50], 4)
    assert list(zip(range(5), robin.stream_task_order(1))) == [(0, 1), (1, 0), (2, 1), (3, 0), (4, 1)]


def test_buffer_is_bounded_and_groups_by_length():
    read = []

    def rows():
        for i in range(1000):
            read.append(i)
            yield {"length": (i * 7) % 13, "i": i}

    stream = IterableDataset.from_generator(rows)
    source = StreamTaskBatches("t", 0, stream, 2, buffer_size=7, group_by_length=True, seed=1)
    first = source.next_batch()
    assert len(read) <= 8 + 1  # one buffer (7 rounded up to 4 batches of 2), not a pass over the stream
    batches = [first] + [source.next_batch() for _ in range(3)]
    rows_seen = [r for b in batches for r in b]
    assert sorted(r["i"] for r in rows_seen) == list(range(8))  # the first buffer, each row once
    # within the buffer, every batch holds neighbours in length order
    lengths = sorted((r["length"] for r in rows_seen), reverse=True)
    pairs = {tuple(lengths[i : i + 2]) for i in range(0, 8, 2)}
    assert {tuple(sorted((r["length"] for r in b), reverse=True)) for b in batches} == pairs


def test_label_errors_name_task_split_row_and_value(tmp_path, three_tasks, tokenizer):
    raw = raw_datasets(12)
    labels = list(raw["sentiment"]["label"])
    labels[7] = "great"
    bad = Dataset.from_dict({"text": list(raw["sentiment"]["text"]), "label": labels}).to_iterable_dataset()
    trainer = make_trainer(tmp_path, three_tasks, tokenizer, data={"sentiment": bad}, task_sizes={"sentiment": 12})
    with pytest.raises(ValueError, match=r"Task 'sentiment', split 'train', row 7: label 'great' is not in"):
        trainer.train()


def test_eval_data_cannot_stream(tmp_path, three_tasks, tokenizer):
    trainer = make_trainer(tmp_path, three_tasks, tokenizer)
    with pytest.raises(ValueError, match=r"only training data can stream"):
        trainer.evaluate({"ner": raw_datasets(6)["ner"].to_iterable_dataset()})


def test_resume_continues_the_streams_exactly(tmp_path, three_tasks, tokenizer):
    """A run resumed from a checkpoint (a new trainer, fresh streams) trains on exactly the batches the
    uninterrupted run did: the streams continue from the saved position, across buffers and passes."""
    settings = dict(max_steps=24, save_strategy="steps", save_steps=11, group_by_length=True, max_examples_per_task=18)
    full = make_trainer(tmp_path / "full", three_tasks, tokenizer, **settings)
    full.train()
    run = make_trainer(tmp_path / "run", three_tasks, tokenizer, **settings)
    run.train()
    assert run.seen == full.seen
    state = json.loads((tmp_path / "run" / "checkpoint-11" / STREAM_STATE_NAME.format(rank=0)).read_text())
    assert state["drawn"] == 11
    # the checkpoint is past a stream's first buffer: resuming reloads a saved `datasets` position
    assert any(t.get("buffer_state") is not None for t in state["tasks"].values())
    for later in ("checkpoint-22", "checkpoint-24"):
        shutil.rmtree(tmp_path / "run" / later, ignore_errors=True)
    resumed = make_trainer(tmp_path / "run", three_tasks, tokenizer, **settings)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.seen == full.seen[11:]
    assert {task for task, _ in resumed.seen} == {"sentiment", "topic", "ner"}


# ---------------------------------------------------------------------------- recipes
RECIPE = {
    "encoder": "some/encoder",
    "output_dir": "out",
    "tasks": [
        {"name": "sentiment", "type": "sequence_classification", "labels": ["negative", "positive"],
         "data": {"files": {"train": "s.jsonl", "validation": "s_dev.jsonl"}, "streaming": True, "num_rows": 50,
                  "label_map": {"0": "negative", "1": "positive"}, "rename": {"sentence": "text"}}},
        {"name": "ner", "type": "token_classification", "labels": ["O", "B-PER"],
         "data": {"files": {"train": "n.conll"}, "streaming": True}},
    ],
    "training": {"max_steps": 10},
}


def test_recipe_streaming_sources(tmp_path):
    lines = [json.dumps({"sentence": f"text {i}", "label": i % 2, "extra": i}) + "\n" for i in range(6)]
    (tmp_path / "s_dev.jsonl").write_text("".join(lines))
    (tmp_path / "s.jsonl").write_text("".join(lines) + json.dumps({"sentence": "bad", "label": 7}) + "\n")
    (tmp_path / "n.conll").write_text("John B-PER\nruns O\n\nMary B-PER\n")
    recipe = parse_recipe(copy.deepcopy(RECIPE), base_dir=tmp_path)
    source = recipe.source_of("sentiment")
    assert source.streaming and source.num_rows == 50
    data = load_task_data(source, recipe.tasks[0].task)
    train, validation = data["train"], data["validation"]
    assert isinstance(train, IterableDataset) and isinstance(validation, Dataset)  # evaluation data is read whole
    rows = []
    with pytest.raises(ValueError, match=r"s.jsonl \(task 'sentiment', train\), row 6: not a key of label_map"):
        for row in train:
            rows.append(row)
    assert rows == validation.to_list()[:6] == [{"text": f"text {i}", "label": ["negative", "positive"][i % 2]} for i in range(6)]
    ner = load_task_data(recipe.source_of("ner"), recipe.tasks[1].task, splits=("train",))["train"]
    assert list(ner) == [{"tokens": ["John", "runs"], "tags": ["B-PER", "O"]}, {"tokens": ["Mary"], "tags": ["B-PER"]}]

    bad = copy.deepcopy(RECIPE)
    bad["tasks"][1]["data"]["num_rows"] = 5
    bad["tasks"][1]["data"]["streaming"] = False
    with pytest.raises(RecipeError, match=r"tasks\[1\]\.data\.num_rows: only applies with `streaming: true`"):
        parse_recipe(bad, base_dir=tmp_path)


def test_cli_train_with_streaming_sources(tmp_path, tiny_encoder, capsys):
    from test_cli import one_line_error, write_recipe

    from hf_mtl.cli import main

    recipe = str(write_recipe(tmp_path, tiny_encoder))
    streaming = ["--set", "tasks[0].data.streaming=true", "--set", "tasks[0].data.num_rows=12",
                 "--set", "tasks[2].data.streaming=true", "--set", "tasks[2].data.num_rows=12"]
    assert main(["train", recipe, *streaming, "--set", "training.max_steps=-1"]) == 2
    assert "training.max_steps: required when a task's data streams (tasks ['sentiment', 'ner']" in one_line_error(
        capsys, "train")
    assert main(["train", recipe, *streaming]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "task 'sentiment': streamed train, 12 validation examples" in out
    assert "Evaluation on validation:" in out and (tmp_path / "model" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------- DDP
@pytest.mark.slow
def test_ddp_ranks_read_their_own_shards_and_agree_on_the_task(tmp_path):
    """2 CPU processes: every step both ranks train the same task on different rows (their own shards); a run
    resumed from a checkpoint continues every rank's streams where they were."""
    from test_distributed import free_port

    from conftest import run_isolated

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    script = os.path.join(os.path.dirname(__file__), "scripts", "ddp_stream.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), script, str(tmp_path)]
    result = run_isolated(command, env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world_size"] == 2 for r in ranks)
    full0, full1 = ranks[0]["full"], ranks[1]["full"]
    assert [s[:2] for s in full0] == [s[:2] for s in full1]  # same step, same task on both ranks
    assert len(full0) == 6 and {task for _, task, _ in full0} == {"sentiment", "topics", "ner"}
    for (_, task, rows0), (_, _, rows1) in zip(full0, full1):
        if task == "sentiment":  # two shards, one per rank: the ranks never see the same sentence
            assert not {tuple(r) for r in rows0} & {tuple(r) for r in rows1}
    for rank in ranks:
        assert rank["resumed"] == rank["full"][3:]  # each rank continues its own streams
    assert ranks[0]["weights_sum"] == pytest.approx(ranks[1]["weights_sum"], rel=0, abs=0)
