"""MultiTaskTrainer on a tiny encoder: routing, weights, logs, per-task evaluation, best-model selection."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import TrainingArguments

from hf_mtl import MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments

from conftest import make_model, raw_datasets


def _args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=3e-3,
        num_train_epochs=2,
        logging_steps=3,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=7,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return MultiTaskTrainingArguments(**kwargs)


def test_train_routes_batches_and_logs_per_task_loss(tmp_path, three_tasks, tokenizer):
    model = make_model(three_tasks)
    routed = []
    original_forward = model.forward

    def spy(*args, task_name=None, **kwargs):
        if model.training:
            routed.append((task_name, tuple(kwargs["labels"].shape)))
        return original_forward(*args, task_name=task_name, **kwargs)

    model.forward = spy
    trainer = MultiTaskTrainer(
        model=model, args=_args(tmp_path), train_dataset=raw_datasets(), processing_class=tokenizer
    )
    trainer.train()
    tasks_seen = {name for name, _ in routed}
    assert tasks_seen == {"sentiment", "topic", "ner"}
    for name, shape in routed:
        assert len(shape) == (2 if name == "ner" else 1)  # token labels for the token head only
    # 24 examples per task, batch 4 -> 18 batches per epoch
    assert trainer.state.global_step == 36
    train_logs = [log for log in trainer.state.log_history if "loss" in log and "eval_average" not in log]
    assert train_logs and all({"sentiment_loss", "topic_loss", "ner_loss"} & set(log) for log in train_logs)
    first, last = train_logs[0], train_logs[-1]
    for key in ("sentiment_loss", "topic_loss", "ner_loss"):
        if key in first and key in last:
            assert last[key] < first[key], key


def test_evaluate_returns_every_task_metric_and_the_average(tmp_path, three_tasks, tokenizer):
    data = raw_datasets()
    trainer = MultiTaskTrainer(
        model=make_model(three_tasks), args=_args(tmp_path), train_dataset=data, eval_dataset=data,
        processing_class=tokenizer,
    )
    trainer.train()
    metrics = trainer.evaluate()
    for key in (
        "eval_sentiment_accuracy", "eval_sentiment_macro_f1", "eval_sentiment_loss",
        "eval_topic_accuracy", "eval_topic_macro_f1",
        "eval_ner_precision", "eval_ner_recall", "eval_ner_f1", "eval_ner_accuracy", "eval_ner_loss",
        "eval_average", "eval_loss",
    ):
        assert key in metrics, key
    mains = [metrics["eval_sentiment_accuracy"], metrics["eval_topic_accuracy"], metrics["eval_ner_f1"]]
    assert metrics["eval_average"] == pytest.approx(sum(mains) / 3)
    assert metrics["eval_sentiment_accuracy"] == 1.0 and metrics["eval_topic_accuracy"] == 1.0
    # an explicit dataset dict evaluates only those tasks
    only = trainer.evaluate({"topic": data["topic"]}, metric_key_prefix="test")
    assert "test_topic_accuracy" in only and "test_ner_f1" not in only
    assert only["test_average"] == only["test_topic_accuracy"]


def test_load_best_model_on_average(tmp_path, three_tasks, tokenizer):
    data = raw_datasets()
    args = _args(
        tmp_path, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="average", save_total_limit=2,
    )
    trainer = MultiTaskTrainer(
        model=make_model(three_tasks), args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer
    )
    trainer.train()
    evals = [log["eval_average"] for log in trainer.state.log_history if "eval_average" in log]
    assert len(evals) == 2
    assert trainer.state.best_metric == pytest.approx(max(evals))
    assert trainer.state.best_model_checkpoint is not None
    trainer.save_model(tmp_path / "final")
    reloaded = MultiTaskModel.from_pretrained(tmp_path / "final")
    assert reloaded.config.task_names == ["sentiment", "topic", "ner"]
    assert (tmp_path / "final" / "tokenizer.json").exists()


def test_task_weights_scale_the_optimised_loss(tmp_path, three_tasks, tokenizer):
    data = raw_datasets()
    weights = {"sentiment": 0.0, "topic": 2.5}
    trainer = MultiTaskTrainer(
        model=make_model(three_tasks), args=_args(tmp_path, task_weights=json.dumps(weights)),
        train_dataset=data, processing_class=tokenizer,
    )
    assert trainer.task_weights == {"sentiment": 0.0, "topic": 2.5, "ner": 1.0}
    loader = trainer.get_train_dataloader()
    model = trainer.model.eval()  # no dropout: the two forward passes must match
    for batch in loader:
        name = batch["task_name"]
        raw = model(**{k: v for k, v in batch.items() if k != "task_name"}, task_name=name).loss
        weighted = trainer.compute_loss(model, batch)
        torch.testing.assert_close(weighted, raw * trainer.task_weights[name])


def test_sampler_arguments_reach_the_batch_sampler(tmp_path, three_tasks, tokenizer):
    args = _args(
        tmp_path, task_sampling_strategy="temperature", sampling_temperature=3.0, max_examples_per_task=8,
        train_sampling_strategy="group_by_length", data_seed=5,
    )
    trainer = MultiTaskTrainer(
        model=make_model(three_tasks), args=args, train_dataset=raw_datasets(), processing_class=tokenizer
    )
    sampler = trainer.make_batch_sampler(trainer.train_dataset)
    assert (sampler.strategy, sampler.temperature, sampler.max_examples_per_task) == ("temperature", 3.0, 8)
    assert sampler.group_by_length and sampler.seed == 5
    loader = trainer.get_train_dataloader()
    batches = list(loader)
    assert len(batches) == 6  # 3 tasks x 8 capped examples / batch 4
    assert all(isinstance(b["task_name"], str) for b in batches)


def test_plain_training_arguments_get_multitask_defaults(tmp_path, three_tasks, tokenizer):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=2)
    trainer = MultiTaskTrainer(
        model=make_model(three_tasks), args=args, train_dataset=raw_datasets(), processing_class=tokenizer
    )
    assert trainer.make_batch_sampler(trainer.train_dataset).strategy == "proportional"
    trainer.train()
    assert trainer.state.global_step == 2


def test_errors_name_what_is_wrong(tmp_path, three_tasks, tokenizer):
    model = make_model(three_tasks)
    data = raw_datasets()
    with pytest.raises(KeyError, match=r"\['pos'\].*its tasks are \['sentiment', 'topic', 'ner'\]"):
        MultiTaskTrainer(model=model, args=_args(tmp_path), train_dataset={"pos": data["sentiment"]},
                         processing_class=tokenizer)
    with pytest.raises(KeyError, match=r"task_weights has key\(s\) \['nope'\]"):
        MultiTaskTrainer(model=model, args=_args(tmp_path, task_weights={"nope": 1.0}), train_dataset=data,
                         processing_class=tokenizer)
    with pytest.raises(TypeError, match="dict keyed by task name"):
        MultiTaskTrainer(model=model, args=_args(tmp_path), train_dataset=data["sentiment"], processing_class=tokenizer)
    with pytest.raises(ValueError, match="task_sampling_strategy"):
        _args(tmp_path, task_sampling_strategy="random")
    with pytest.raises(ValueError, match="task_weights"):
        _args(tmp_path, task_weights="{not json")


def test_model_without_recorded_source_needs_a_tokenizer(tmp_path, three_tasks):
    with pytest.raises(ValueError, match="processing_class"):
        MultiTaskTrainer(model=make_model(three_tasks), args=_args(tmp_path), train_dataset=raw_datasets())


def test_class_label_columns_reach_the_model_as_the_tasks_ids(tmp_path, tokenizer):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    from hf_mtl import SequenceClassificationTask, TokenClassificationTask
    from hf_mtl.modeling_multitask import IGNORE_INDEX

    from conftest import NER_LABELS

    tasks = [SequenceClassificationTask("sentiment", ["negative", "positive"]), TokenClassificationTask("ner", NER_LABELS)]
    # both columns name their classes in another order than the tasks
    sentiment_names, ner_names = ["positive", "negative"], list(reversed(NER_LABELS))
    texts = {"good": "positive", "bad": "negative", "great": "positive", "awful": "negative"}
    sentiment = Dataset.from_dict(
        {"text": list(texts), "label": [sentiment_names.index(v) for v in texts.values()]},
        features=Features({"text": Value("string"), "label": ClassLabel(names=sentiment_names)}),
    )
    words, tags = ["John", "lives", "in", "Paris"], ["B-PER", "O", "O", "B-LOC"]
    ner = Dataset.from_dict(
        {"tokens": [words] * 4, "tags": [[ner_names.index(t) for t in tags]] * 4},
        features=Features({"tokens": Sequence(Value("string")), "tags": Sequence(ClassLabel(names=ner_names))}),
    )
    data = {"sentiment": sentiment, "ner": ner}
    model = make_model(tasks)
    seen = []
    original_forward = model.forward

    def spy(*args, task_name=None, **kwargs):
        seen.append((task_name, kwargs["input_ids"].tolist(), kwargs["labels"].tolist()))
        return original_forward(*args, task_name=task_name, **kwargs)

    model.forward = spy
    trainer = MultiTaskTrainer(
        model=model, args=_args(tmp_path, num_train_epochs=1), train_dataset=data, eval_dataset=data,
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.evaluate()
    assert {name for name, _, _ in seen} == {"sentiment", "ner"}
    for name, input_ids, labels in seen:  # training and evaluation batches
        for ids, label in zip(input_ids, labels):
            if name == "sentiment":
                text = tokenizer.decode(ids, skip_special_tokens=True)
                assert tasks[0].id2label[label] == texts[text], text
            else:
                assert [NER_LABELS[l] for l in label if l != IGNORE_INDEX] == tags


def test_roberta_family_encoder_reads_inputs_longer_than_its_positions(tmp_path, minilm_dir):
    """RoBERTa-style encoders number positions from pad_token_id + 1, so 34 position embeddings hold 32 tokens;
    with a tokenizer that sets no length limit, training must still cut inputs there (not crash with an
    IndexError in the position embeddings), and agree with the pipeline on the limit."""
    from datasets import Dataset
    from transformers import AutoTokenizer, RobertaConfig

    from hf_mtl import MultiTaskConfig, MultiTaskPipeline, SequenceClassificationTask, TokenClassificationTask

    from conftest import NER_LABELS

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir, model_max_length=int(1e30))
    tasks = [SequenceClassificationTask("sentiment", ["negative", "positive"]), TokenClassificationTask("ner", NER_LABELS)]
    encoder = RobertaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=34,
    )
    torch.manual_seed(0)
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=[t.to_config_dict() for t in tasks]))
    words = ["word"] * 60
    data = {
        "sentiment": Dataset.from_dict({"text": [" ".join(words), "short"], "label": [0, 1]}),
        "ner": Dataset.from_dict({"tokens": [words, ["short"]], "tags": [["O"] * 60, ["O"]]}),
    }
    trainer = MultiTaskTrainer(
        model=model, args=_args(tmp_path, max_steps=2, per_device_train_batch_size=2), train_dataset=data,
        eval_dataset=data, processing_class=tokenizer,
    )
    assert trainer.tokenizer_max_length == 32
    assert max(max(ds["length"]) for ds in trainer.train_datasets.values()) == 32
    trainer.train()
    assert "eval_sentiment_accuracy" in trainer.evaluate()
    assert MultiTaskPipeline(model=model, tokenizer=tokenizer).max_length == trainer.tokenizer_max_length
