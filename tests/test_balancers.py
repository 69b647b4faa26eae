"""Loss balancers: the static weights of hf_mtl 0.1 as the first balancer, and the interface exercised by a
learned balancer (docs/extending.md's example): optimizer, logs, checkpoints, resume, evaluation, run record."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

from hf_mtl import LossBalancer, MultiTaskTrainer, MultiTaskTrainingArguments, StaticWeights, register_loss_balancer
from hf_mtl.balancers import loss_balancer_class, loss_balancers
from hf_mtl.trainer import LOSS_BALANCER_STATE_NAME, MULTITASK_STATE_NAME

from conftest import make_model, raw_datasets
from docs_examples import docs_example


@pytest.fixture(scope="module")
def learned_scale():
    return docs_example("A new loss balancer")["LearnedScale"]


def _args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=0.05,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=7,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return MultiTaskTrainingArguments(**kwargs)


def _trainer(tmp_path, tasks, tokenizer, **overrides):
    return MultiTaskTrainer(
        model=make_model(tasks), args=_args(tmp_path, **overrides), train_dataset=raw_datasets(),
        eval_dataset=raw_datasets(8), processing_class=tokenizer,
    )


# ---------------------------------------------------------------------------- static weights
def test_static_weights_are_the_losses_of_hf_mtl_0_1_bit_for_bit():
    balancer = StaticWeights(["a", "b", "c"], task_weights={"a": 2.5, "b": 0.0})
    loss = torch.tensor(0.7310585975646973, requires_grad=True)
    # a weight of 1 returns the head's loss itself: not even a multiplication by 1.0 is added
    assert balancer({"c": loss}) is loss
    assert torch.equal(balancer({"a": loss}), loss * 2.5) and balancer({"b": loss}).item() == 0.0
    assert torch.equal(balancer({"a": loss, "c": loss}), loss * 2.5 + loss)
    assert balancer.current_weights() == {"a": 2.5, "b": 0.0, "c": 1.0}
    assert balancer.log_values() == {}  # constant: on the card, not repeated in every log
    assert balancer.describe() == {
        "name": "static",
        "settings": {"task_weights": {"a": 2.5, "b": 0.0, "c": 1.0}},
        "weights": {"a": 2.5, "b": 0.0, "c": 1.0},
        "description": "Each batch's loss is its task's loss times the task's loss weight.",
    }
    assert not list(balancer.parameters()) and not balancer.state_dict()
    with pytest.raises(KeyError, match=r"task_weights has key\(s\) \['x'\] that are not tasks of the model"):
        StaticWeights(["a"], task_weights={"x": 1.0})
    with pytest.raises(ValueError, match=r"task_weights\['a'\] = -1; expected a number >= 0"):
        StaticWeights(["a"], task_weights={"a": -1})


def test_the_default_balancer_is_static_fed_by_task_weights(tmp_path, three_tasks, tokenizer):
    trainer = _trainer(tmp_path, three_tasks, tokenizer, task_weights={"topic": 3.0})
    assert type(trainer.loss_balancer) is StaticWeights and trainer.args.loss_balancer == "static"
    assert trainer.task_weights == {"sentiment": 1.0, "topic": 3.0, "ner": 1.0}
    assert trainer.run_record.loss_balancer["weights"] == trainer.task_weights
    # nothing added to the optimizer, nothing to checkpoint
    optimizer = trainer.create_optimizer()
    model_params = {id(p) for p in trainer.model.parameters()}
    assert all(id(p) in model_params for group in optimizer.param_groups for p in group["params"])


def test_plain_training_arguments_get_the_multitask_defaults_of_the_arguments_class(tmp_path, three_tasks, tokenizer):
    defaults = MultiTaskTrainingArguments.multitask_defaults()
    plain_fields = set(TrainingArguments.__dataclass_fields__)
    assert set(defaults) == set(MultiTaskTrainingArguments.__dataclass_fields__) - plain_fields
    assert defaults["loss_balancer"] == "static" and defaults["task_sampling_strategy"] == "proportional"
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1)
    trainer = MultiTaskTrainer(model=make_model(three_tasks), args=args, train_dataset=raw_datasets(),
                               processing_class=tokenizer)
    assert {name: getattr(trainer.args, name) for name in defaults} == defaults
    assert type(trainer.loss_balancer) is StaticWeights


# ---------------------------------------------------------------------------- arguments and registry
def test_balancer_arguments_take_names_classes_and_json_settings(tmp_path, learned_scale):
    assert "learned_scale" in loss_balancers() and loss_balancer_class("learned_scale") is learned_scale
    by_class = _args(tmp_path, loss_balancer=learned_scale, loss_balancer_kwargs='{"init": 0.5}')
    assert by_class.loss_balancer == "learned_scale" and by_class.loss_balancer_kwargs == {"init": 0.5}
    json.dumps(by_class.to_dict())  # the arguments stay serialisable

    class Unregistered(learned_scale):
        pass

    args = _args(tmp_path, loss_balancer=Unregistered)
    assert args.loss_balancer == f"{__name__}:{Unregistered.__qualname__}"
    assert loss_balancer_class(args.loss_balancer) is Unregistered
    with pytest.raises(ValueError, match=r"loss_balancer='uncertain' is not one of \['static', .*register_loss_balancer"):
        _args(tmp_path, loss_balancer="uncertain")
    with pytest.raises(ValueError, match="loss_balancer_kwargs must be a JSON object"):
        _args(tmp_path, loss_balancer_kwargs="{init: 1}")
    with pytest.raises(ValueError, match="already registered"):
        register_loss_balancer("static", learned_scale)
    with pytest.raises(TypeError, match="subclass of LossBalancer"):
        register_loss_balancer("module", torch.nn.Linear)


def test_task_weights_are_refused_by_a_balancer_that_does_not_use_them(tmp_path, three_tasks, tokenizer, learned_scale):
    with pytest.raises(ValueError, match=r"task_weights \{'ner': 2.0\} are the weights of the 'static' loss balancer"):
        _trainer(tmp_path, three_tasks, tokenizer, loss_balancer="learned_scale", task_weights={"ner": 2.0})
    # weights of 1 (what a recipe passes for tasks without a weight) are no weighting at all
    trainer = _trainer(tmp_path, three_tasks, tokenizer, loss_balancer="learned_scale", task_weights={"ner": 1.0})
    assert isinstance(trainer.loss_balancer, learned_scale)


def test_an_optimizer_passed_in_must_hold_the_balancer_parameters(tmp_path, three_tasks, tokenizer, learned_scale):
    model = make_model(three_tasks)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer passed in `optimizers` does not hold them"):
        MultiTaskTrainer(model=model, args=_args(tmp_path, loss_balancer="learned_scale"), train_dataset=raw_datasets(),
                         processing_class=tokenizer, optimizers=(optimizer, None))


# ---------------------------------------------------------------------------- a learned balancer
def test_learned_balancer_joins_the_optimizer_and_its_weights_are_logged(tmp_path, three_tasks, tokenizer):
    trainer = _trainer(tmp_path, three_tasks, tokenizer, loss_balancer="learned_scale",
                       loss_balancer_kwargs={"init": 0.5})
    trainer.train()
    scale = trainer.loss_balancer.log_scale
    groups = [g for g in trainer.optimizer.param_groups if any(p is scale for p in g["params"])]
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0
    assert not torch.allclose(scale.detach(), torch.full_like(scale, 0.5)), "the learned scale did not move"
    train_logs = [e for e in trainer.state.log_history if "loss" in e and "train_runtime" not in e]
    assert len(train_logs) == 4
    final = trainer.loss_balancer.current_weights()
    assert {k: train_logs[-1][f"{k}_loss_weight"] for k in final} == pytest.approx(final, abs=1e-6)
    assert train_logs[0]["sentiment_loss_weight"] != train_logs[-1]["sentiment_loss_weight"]
    record = trainer.run_record.loss_balancer
    assert record["name"] == "learned_scale" and record["settings"] == {"init": 0.5}
    assert record["weights"] == final and "learned with the model" in record["description"]


def test_learned_balancer_is_checkpointed_without_pickles_and_resumed(tmp_path, three_tasks, tokenizer):
    overrides = dict(loss_balancer="learned_scale", loss_balancer_kwargs={"init": 0.5}, save_strategy="steps",
                     save_steps=2)
    full = _trainer(tmp_path / "full", three_tasks, tokenizer, **overrides)
    full.train()
    checkpoint = tmp_path / "full" / "out" / "checkpoint-2"
    saved = load_file(checkpoint / LOSS_BALANCER_STATE_NAME)
    assert set(saved) == {"log_scale"}
    assert not torch.allclose(saved["log_scale"], torch.full((3,), 0.5)), "step 2's scale equals the initial one"
    state = json.loads((checkpoint / MULTITASK_STATE_NAME).read_text())
    assert state["loss_balancer"]["name"] == "learned_scale"
    assert state["loss_balancer"]["weights"] == pytest.approx(
        dict(zip(["sentiment", "topic", "ner"], torch.exp(-saved["log_scale"]).tolist()))
    )

    resumed = _trainer(tmp_path / "resumed", three_tasks, tokenizer, **overrides)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 4
    torch.testing.assert_close(resumed.loss_balancer.log_scale.detach(), full.loss_balancer.log_scale.detach())
    full_weights, resumed_weights = full.model.state_dict(), resumed.model.state_dict()
    for name, value in full_weights.items():
        torch.testing.assert_close(resumed_weights[name], value, msg=name)


def test_resume_with_another_balancer_is_refused(tmp_path, three_tasks, tokenizer):
    source = _trainer(tmp_path / "a", three_tasks, tokenizer, loss_balancer="learned_scale", save_strategy="steps",
                      save_steps=2, max_steps=2)
    source.train()
    checkpoint = str(tmp_path / "a" / "out" / "checkpoint-2")
    with pytest.raises(ValueError, match=r"trained with loss balancer 'learned_scale' and this run uses 'static'\. "
                                         r"Resume with loss_balancer='learned_scale'"):
        _trainer(tmp_path / "b", three_tasks, tokenizer, max_steps=3).train(resume_from_checkpoint=checkpoint)
    # its settings may change
    resumed = _trainer(tmp_path / "b", three_tasks, tokenizer, max_steps=3, loss_balancer="learned_scale",
                       loss_balancer_kwargs={"init": 2.0})
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.state.global_step == 3


def test_evaluation_losses_do_not_go_through_the_balancer(tmp_path, three_tasks, tokenizer, learned_scale):
    learned = _trainer(tmp_path, three_tasks, tokenizer, loss_balancer="learned_scale",
                       loss_balancer_kwargs={"init": 1.0})
    static = _trainer(tmp_path, three_tasks, tokenizer)
    for name in ("sentiment", "topic", "ner"):
        assert learned.evaluate()[f"eval_{name}_loss"] == static.evaluate()[f"eval_{name}_loss"]
    # while training, the balancer's loss is what is backpropagated
    batch = next(iter(learned.get_train_dataloader()))
    model = learned.model.eval()
    raw = model(**{k: v for k, v in batch.items() if k != "task_name"}, task_name=batch["task_name"]).loss
    torch.testing.assert_close(learned.compute_loss(model, batch), torch.exp(torch.tensor(-1.0)) * raw + 1.0)


# ---------------------------------------------------------------------------- the run record
def test_run_record_holds_the_batch_mix_sampling_and_balancer(tmp_path, three_tasks, tokenizer):
    trainer = _trainer(tmp_path, three_tasks, tokenizer, task_sampling_strategy="temperature",
                       sampling_temperature=3.0, task_weights={"ner": 2.0})
    record = trainer.run_record
    assert record.train_sizes == {"sentiment": 24, "topic": 24, "ner": 24}
    assert record.eval_sizes == {"sentiment": 8, "topic": 8, "ner": 8}
    assert record.batch_shares == {} and record.sampling == {}  # known once the batch sampler is built
    trainer.get_train_dataloader()
    sampler = trainer._train_batch_sampler
    assert record.batch_shares == dict(zip(sampler.task_names, sampler.probabilities().tolist()))
    assert record.sampling == sampler.describe() and record.sampling["settings"]["temperature"] == 3.0
    assert record.loss_balancer["weights"] == {"sentiment": 1.0, "topic": 1.0, "ner": 2.0}


def test_a_balancer_with_non_tensor_state_cannot_be_checkpointed(tmp_path, three_tasks, tokenizer):
    class Pickly(StaticWeights):
        def get_extra_state(self):
            return {"history": [1.0]}

        def set_extra_state(self, state):
            pass

    register_loss_balancer("pickly_test_only", Pickly)
    trainer = _trainer(tmp_path, three_tasks, tokenizer, loss_balancer="pickly_test_only", save_strategy="steps",
                       save_steps=1, max_steps=1)
    with pytest.raises(TypeError, match=r"non-tensor state \['_extra_state'\].*safetensors only"):
        trainer.train()
    assert isinstance(trainer.loss_balancer, LossBalancer)
