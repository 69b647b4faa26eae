"""Loss balancers: the static weights of hf_mtl 0.1 as the first balancer, and the interface exercised by a
learned balancer (docs/extending.md's example): optimizer, logs, checkpoints, resume, evaluation, run record."""

from __future__ import annotations

import json
import math

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


# ---------------------------------------------------------------------------- uncertainty, dwa, famo
from hf_mtl.balancers_adaptive import FAMO, DynamicWeightAverage, UncertaintyWeighting  # noqa: E402

TASKS = ["sentiment", "topic", "ner"]


def _identity(tensor):
    return tensor


def test_uncertainty_is_kendall_s_simplified_form_in_its_own_param_group():
    balancer = UncertaintyWeighting(["a", "b"], init=0.5, lr=0.02)
    loss = torch.tensor(2.0, requires_grad=True)
    torch.testing.assert_close(balancer({"b": loss}), torch.exp(torch.tensor(-0.5)) * 2.0 + 0.5)
    (group,) = balancer.param_groups()
    assert group["lr"] == 0.02 and group["weight_decay"] == 0.0 and group["params"] == [balancer.log_variance]
    assert "lr" not in UncertaintyWeighting(["a"], lr=None).param_groups()[0]
    assert balancer.current_weights() == pytest.approx({"a": math.exp(-0.5), "b": math.exp(-0.5)})


def test_dwa_weights_follow_the_ratio_of_the_last_two_windows():
    balancer = DynamicWeightAverage(["a", "b"], temperature=2.0, window_steps=2)
    # windows of 2 steps; a's loss halves between windows, b's stays
    for step_losses in ([4.0, 1.0], [4.0, 1.0], [2.0, 1.0], [2.0, 1.0]):
        assert balancer.current_weights() == {"a": 1.0, "b": 1.0} or balancer.steps >= 4
        for name, value in zip("ab", step_losses):
            balancer({name: torch.tensor(value, requires_grad=True)})
        balancer.end_step(_identity)
    ratio = torch.tensor([0.5, 1.0])
    expected = 2 * torch.softmax(ratio / 2.0, dim=0)
    assert balancer.current_weights() == pytest.approx(dict(zip("ab", expected.tolist())))
    weighted = balancer({"b": torch.tensor(3.0, requires_grad=True)})
    assert weighted.item() == pytest.approx(3.0 * expected[1].item())
    # summed over 2 processes: the same means, so the same weights
    twice = DynamicWeightAverage(["a", "b"], temperature=2.0, window_steps=2)
    for step_losses in ([4.0, 1.0], [4.0, 1.0], [2.0, 1.0], [2.0, 1.0]):
        for name, value in zip("ab", step_losses):
            twice({name: torch.tensor(value)})
        twice.end_step(lambda t: t * 2)
    torch.testing.assert_close(twice.weight, balancer.weight)
    with pytest.raises(ValueError, match=r"loss_balancer_kwargs\['window_steps'\] = 0"):
        DynamicWeightAverage(["a"], window_steps=0)


def test_famo_logits_take_the_reference_adam_step_on_the_change_of_log_losses():
    steps = [[1.0, 2.0, 0.5], [0.9, 1.5, 0.5], [0.7, 1.4, 0.45], [0.6, 1.45, 0.3]]
    balancer = FAMO(["a", "b", "c"], gamma=0.01, w_lr=0.025)
    # the reference update (Cranial-XIX/FAMO `FAMO.update`): Adam on w with weight decay gamma, the gradient
    # being d softmax(w) / d w applied to delta = log(previous loss) - log(current loss)
    w = torch.zeros(3, requires_grad=True)
    w_opt = torch.optim.Adam([w], lr=0.025, weight_decay=0.01)
    previous = None
    for losses in steps:
        assert sum(balancer.current_weights().values()) == pytest.approx(3.0)
        for name, value in zip("abc", losses):
            balancer({name: torch.tensor(value, requires_grad=True)})
        balancer.end_step(_identity)
        current = torch.tensor(losses)
        if previous is not None:
            delta = torch.log(previous + 1e-8) - torch.log(current + 1e-8)
            (d,) = torch.autograd.grad(torch.softmax(w, -1), w, grad_outputs=delta)
            w_opt.zero_grad()
            w.grad = d
            w_opt.step()
        previous = current
        torch.testing.assert_close(balancer.logits, w.detach(), rtol=1e-5, atol=1e-6)
    # the next step's weights: n * (z / L) / sum(z / L), the direction of the reference's weighted log-loss
    z = torch.softmax(w.detach(), -1)
    expected = 3 * (z / previous) / (z / previous).sum()
    assert balancer.current_weights() == pytest.approx(dict(zip("abc", expected.tolist())), rel=1e-5)
    assert set(balancer.state_dict()) >= {"logits", "exp_avg", "exp_avg_sq", "adam_steps", "previous_losses", "weight"}


def test_famo_needs_every_task_in_every_step(tmp_path, three_tasks, tokenizer):
    with pytest.raises(ValueError, match=r"loss_balancer='famo' needs every task's loss .* set all_tasks_per_step=True"):
        _trainer(tmp_path, three_tasks, tokenizer, loss_balancer="famo")


def test_all_tasks_per_step_accumulates_one_batch_per_task_and_logs_their_mean(tmp_path, three_tasks, tokenizer):
    args = _args(tmp_path, all_tasks_per_step=True, gradient_accumulation_steps=2, max_steps=2)
    trainer = MultiTaskTrainer(model=make_model(three_tasks), args=args, train_dataset=raw_datasets(),
                               processing_class=tokenizer)
    assert trainer.args.gradient_accumulation_steps == 6 and args.gradient_accumulation_steps == 2  # caller's kept
    seen = []
    original = trainer.compute_loss

    def recording(model, inputs, *a, **k):
        seen.append(inputs["task_name"])
        return original(model, inputs, *a, **k)

    trainer.compute_loss = recording
    trainer.train()
    assert seen == TASKS * 4  # 2 steps x 2 rounds x every task
    logs = [e for e in trainer.state.log_history if "loss" in e and "train_runtime" not in e]
    for entry in logs:  # the logged loss is the mean over the step's batches, not their sum
        assert entry["loss"] == pytest.approx(sum(entry[f"{t}_loss"] for t in TASKS) / 3, rel=1e-4)
    assert trainer.run_record.batch_shares == pytest.approx({t: 1 / 3 for t in TASKS})
    assert "all_tasks_per_step" in trainer.run_record.sampling["description"]
    # a second trainer built from the trainer's own arguments does not multiply again
    again = MultiTaskTrainer(model=make_model(three_tasks), args=trainer.args, train_dataset=raw_datasets(),
                             processing_class=tokenizer)
    assert again.args.gradient_accumulation_steps == 6


@pytest.mark.parametrize(
    "balancer, kwargs",
    [("uncertainty", {"lr": 0.05}), ("dwa", {"window_steps": 1}), ("famo", {"w_lr": 0.1})],
)
def test_adaptive_balancers_log_their_weights_and_resume_identically(tmp_path, three_tasks, tokenizer, balancer, kwargs):
    overrides = dict(loss_balancer=balancer, loss_balancer_kwargs=kwargs, all_tasks_per_step=True,
                     save_strategy="steps", save_steps=2, max_steps=4)
    full = _trainer(tmp_path / "full", three_tasks, tokenizer, **overrides)
    full.train()
    logs = [e for e in full.state.log_history if "loss" in e and "train_runtime" not in e]
    final = full.loss_balancer.current_weights()
    assert {t: logs[-1][f"{t}_loss_weight"] for t in TASKS} == pytest.approx(final, abs=1e-6)
    assert final != pytest.approx({t: 1.0 for t in TASKS}), "the weights never moved"
    record = full.run_record.loss_balancer
    assert record["name"] == balancer and record["weights"] == final
    assert f"`{balancer}`" in record["description"]
    checkpoint = tmp_path / "full" / "out" / "checkpoint-2"
    assert set(load_file(checkpoint / LOSS_BALANCER_STATE_NAME)) == set(full.loss_balancer.state_dict())

    resumed = _trainer(tmp_path / "resumed", three_tasks, tokenizer, **overrides)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for name, value in full.loss_balancer.state_dict().items():
        torch.testing.assert_close(resumed.loss_balancer.state_dict()[name], value, msg=name)
    resumed_logs = {e["step"]: e for e in resumed.state.log_history if "loss" in e and "train_runtime" not in e}
    for entry in logs[2:]:
        for key in ["loss", *(f"{t}_loss_weight" for t in TASKS)]:
            assert resumed_logs[entry["step"]][key] == pytest.approx(entry[key], rel=1e-5), (entry["step"], key)
    full_weights, resumed_weights = full.model.state_dict(), resumed.model.state_dict()
    for name, value in full_weights.items():
        torch.testing.assert_close(resumed_weights[name], value, msg=name)
