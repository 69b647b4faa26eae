"""Hyperparameter search: `MultiTaskTrainer(model_init=...)`, `hyperparameter_search` with optuna over task
weights, sampling and learning rate (each trial really trains with its own settings), search spaces,
objectives, `apply_best_run`, and `hf-mtl search` writing a recipe that trains."""

from __future__ import annotations

import pytest
import yaml
from conftest import NER_LABELS, make_model, raw_datasets
from transformers import TrainerCallback
from transformers.trainer_utils import BestRun

from hf_mtl import (
    MultiTaskTrainer,
    MultiTaskTrainingArguments,
    SequenceClassificationTask,
    TokenClassificationTask,
)
from hf_mtl.search import (
    SearchSpace,
    apply_best_run,
    average_objective,
    default_search_space,
    trial_arguments,
    trial_rows,
    worst_task_objective,
)


optuna = pytest.importorskip("optuna")
TASKS = ["sentiment", "topic", "ner"]


def tiny_args(tmp_path, **changes) -> MultiTaskTrainingArguments:
    settings = dict(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, max_steps=2,
                    per_device_train_batch_size=4, per_device_eval_batch_size=8, save_strategy="no",
                    eval_strategy="no", logging_steps=1, max_length=32)
    settings.update(changes)
    return MultiTaskTrainingArguments(**settings)


class SeenSettings(TrainerCallback):
    """Records, at the start of each run, the balancer weights, sampler settings and learning rate in use."""

    def __init__(self):
        self.trainer = None
        self.seen = []

    def on_train_begin(self, args, state, control, **kwargs):
        sampler = self.trainer._train_batch_sampler
        self.seen.append({
            "weights": dict(self.trainer.loss_balancer.current_weights()),
            "strategy": sampler.strategy,
            "temperature": getattr(sampler, "temperature", None),
            "learning_rate": args.learning_rate,
            "optimizer_lr": kwargs["optimizer"].param_groups[0]["lr"] if kwargs.get("optimizer") else None,
        })


@pytest.fixture(scope="module")
def prepared(tokenizer, tmp_path_factory):
    """The fixture tasks' data, tokenized once for the module (trainers use prepared data as is)."""
    tasks = fixture_tasks()
    trainer = MultiTaskTrainer(model=make_model(tasks), args=tiny_args(tmp_path_factory.mktemp("prep")),
                               train_dataset=raw_datasets(8), eval_dataset=raw_datasets(8), processing_class=tokenizer)
    return trainer.train_datasets, trainer.eval_datasets


def fixture_tasks():
    return [
        SequenceClassificationTask("sentiment", ["negative", "positive"]),
        SequenceClassificationTask("topic", ["World", "Sports", "Business", "Sci/Tech"], label_column="topic"),
        TokenClassificationTask("ner", NER_LABELS),
    ]


@pytest.fixture
def search_trainer(tmp_path, prepared, tokenizer):
    calls = []

    def model_init():
        calls.append(1)
        return make_model(fixture_tasks(), seed=len(calls))

    seen = SeenSettings()
    trainer = MultiTaskTrainer(model_init=model_init, args=tiny_args(tmp_path, task_weights={"ner": 3.0}),
                               train_dataset=prepared[0], eval_dataset=prepared[1], processing_class=tokenizer,
                               callbacks=[seen])
    seen.trainer = trainer
    return trainer, seen, calls


def test_model_init_trainer_trains_a_fresh_model(search_trainer):
    trainer, seen, calls = search_trainer
    assert len(calls) == 1  # the first model: tasks and data preparation
    first = trainer.model
    trainer.train()
    assert len(calls) == 2 and trainer.model is not first and trainer.state.global_step == 2
    assert seen.seen[0]["weights"] == {"sentiment": 1.0, "topic": 1.0, "ner": 3.0}
    assert "eval_average" in trainer.evaluate()
    assert trainer.headline_metrics == {"sentiment": "eval_sentiment_accuracy", "topic": "eval_topic_accuracy",
                                        "ner": "eval_ner_f1"}


def test_model_and_model_init_are_exclusive(tmp_path, three_tasks, tokenizer):
    with pytest.raises(ValueError, match="not both"):
        MultiTaskTrainer(model=make_model(three_tasks), model_init=lambda: make_model(three_tasks),
                         args=tiny_args(tmp_path), processing_class=tokenizer)
    with pytest.raises(ValueError, match="either"):
        MultiTaskTrainer(args=tiny_args(tmp_path), processing_class=tokenizer)


def test_model_init_with_other_tasks_is_refused(tmp_path, prepared, tokenizer):
    models = iter([make_model(fixture_tasks()), make_model(fixture_tasks()[:2])])
    trainer = MultiTaskTrainer(model_init=lambda: next(models), args=tiny_args(tmp_path),
                               train_dataset=prepared[0], processing_class=tokenizer)
    with pytest.raises(ValueError, match="tasks"):
        trainer.train()


_LAST_STUDY: list = []


@pytest.fixture(autouse=True)
def _keep_last_study(monkeypatch):
    """Keeps the study transformers' optuna backend creates, to compare what trials drew with what they used."""
    create = optuna.create_study

    def recording(*args, **kwargs):
        study = create(*args, **kwargs)
        _LAST_STUDY[:] = [study]
        return study

    monkeypatch.setattr(optuna, "create_study", recording)


def test_trials_train_with_their_own_weights_sampling_and_learning_rate(search_trainer):
    trainer, seen, calls = search_trainer
    space = SearchSpace({
        "learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
        "task_sampling_strategy": ["temperature", "uniform"],
        "sampling_temperature": {"low": 1.5, "high": 4.0},
        "task_weights": {"sentiment": {"low": 0.1, "high": 5.0}, "topic": [0.5, 2.0]},
    }, TASKS)
    reference = {"sentiment": 0.9, "ner": 0.5}
    best = trainer.hyperparameter_search(direction="maximize", backend="optuna", hp_space=space, n_trials=3,
                                         compute_objective=worst_task_objective(reference),
                                         sampler=optuna.samplers.RandomSampler(seed=3))
    assert isinstance(best, BestRun) and len(seen.seen) == 3 and len(calls) == 4  # a fresh model per trial
    study = _LAST_STUDY[0]
    for trial, used in zip(study.trials, seen.seen):
        drawn = trial.params
        # what each trial trained with is what optuna drew for it; ner keeps the arguments' weight
        assert used["weights"] == {"sentiment": pytest.approx(drawn["task_weight_sentiment"]),
                                   "topic": drawn["task_weight_topic"], "ner": 3.0}
        assert used["strategy"] == drawn["task_sampling_strategy"]
        if used["strategy"] == "temperature":
            assert used["temperature"] == pytest.approx(drawn["sampling_temperature"])
        else:
            assert "sampling_temperature" not in drawn  # not drawn for other strategies
        assert used["learning_rate"] == pytest.approx(drawn["learning_rate"])
        scores = trial.user_attrs["task_scores"]
        assert set(scores) == set(TASKS) and "eval_average" in trial.user_attrs["metrics"]
        assert trial.value == pytest.approx(min(scores["sentiment"] - 0.9, scores["ner"] - 0.5))
    assert len({round(u["learning_rate"], 12) for u in seen.seen}) == 3
    assert best.run_id == str(study.best_trial.number) and best.objective == max(t.value for t in study.trials)
    # the arguments are the search's starting ones again
    assert trainer.args.task_weights == {"ner": 3.0} and trainer.args.learning_rate == 5e-5
    assert trainer.args.task_sampling_strategy == "proportional"
    rows = trial_rows(study)
    assert [r.number for r in rows] == [0, 1, 2] and rows[0].state == "COMPLETE" and rows[-1].task_scores == scores


def test_default_objective_is_the_average(search_trainer):
    trainer, seen, calls = search_trainer
    best = trainer.hyperparameter_search(hp_space=SearchSpace({"learning_rate": [1e-4]}, TASKS), n_trials=1,
                                         backend="optuna")
    trial = _LAST_STUDY[0].trials[0]
    assert best.objective == trial.value == pytest.approx(trial.user_attrs["metrics"]["eval_average"])
    assert _LAST_STUDY[0].direction == optuna.study.StudyDirection.MAXIMIZE


# ---------------------------------------------------------------------------- no training
def test_objectives():
    metrics = {"eval_average": 0.7, "eval_sentiment_accuracy": 0.95, "eval_ner_f1": 0.6, "eval_topic_accuracy": 0.8}
    assert average_objective(metrics) == 0.7
    worst = worst_task_objective({"sentiment": 0.9, "ner": 0.7}, main_metrics={"sentiment": "accuracy", "ner": "f1"})
    assert worst(metrics) == pytest.approx(-0.1)  # ner: 0.6 - 0.7
    with pytest.raises(ValueError, match="headline metric of task 'sentiment'"):
        worst_task_objective({"sentiment": 0.9})(metrics)
    with pytest.raises(KeyError, match="eval_average"):
        average_objective({"eval_loss": 1.0})


def test_trial_arguments_and_apply_best_run(tmp_path):
    assert trial_arguments({"task_weight_ner": 2, "learning_rate": 1e-4}, {"topic": 0.5, "ner": 1.0}) == {
        "learning_rate": 1e-4, "task_weights": {"topic": 0.5, "ner": 2.0}}
    args = tiny_args(tmp_path, task_weights={"topic": 0.5})
    best = BestRun("1", 0.8, {"task_weight_ner": 2.0, "learning_rate": 3e-4, "task_sampling_strategy": "temperature",
                              "sampling_temperature": 2.5})
    tuned = apply_best_run(args, best)
    assert tuned.task_weights == {"topic": 0.5, "ner": 2.0} and tuned.learning_rate == 3e-4
    assert (tuned.task_sampling_strategy, tuned.sampling_temperature) == ("temperature", 2.5)
    assert args.learning_rate == 5e-5 and args.task_weights == {"topic": 0.5}  # a copy
    with pytest.raises(ValueError, match="not fields"):
        apply_best_run(args, {"no_such_argument": 1})


def test_search_space_format():
    space = default_search_space(TASKS)
    names = [d.name for d in space.dimensions]
    assert names[0] == "task_sampling_strategy" and "task_weight_sentiment" not in names
    assert {"learning_rate", "sampling_temperature", "task_weight_topic", "task_weight_ner"} <= set(names)
    fixed = optuna.trial.FixedTrial({"task_sampling_strategy": "uniform", "learning_rate": 1e-4,
                                     "task_weight_topic": 1.0, "task_weight_ner": 2.0})
    assert "sampling_temperature" not in space(fixed)
    every = SearchSpace({"task_weights": {"low": 0.5, "high": 2}, "learning_rate": {"low": "1e-5", "high": "1e-4"},
                         "per_device_train_batch_size": {"low": 8, "high": 32, "step": 8}, "seed": 7}, TASKS)
    drawn = every(optuna.trial.FixedTrial({"task_weight_sentiment": 1.0, "task_weight_topic": 0.5,
                                           "task_weight_ner": 2.0, "learning_rate": 2e-5,
                                           "per_device_train_batch_size": 16}))
    assert drawn["seed"] == 7 and drawn["per_device_train_batch_size"] == 16 and len(drawn) == 6
    for bad, message in [
        ({"learning_rat": [1e-4]}, "not a training argument"),
        ({"task_weights": {"pos": {"low": 1, "high": 2}}}, "'pos' is not a task"),
        ({"learning_rate": {"low": 1e-3, "high": 1e-4}}, "must not exceed"),
        ({"learning_rate": {"low": 0, "high": 1e-4, "log": True}}, "low > 0"),
        ({"learning_rate": {"low": 1e-5}}, "needs `low` and `high`"),
        ({"learning_rate": {"low": 1e-5, "high": 1e-4, "scale": 2}}, "unknown key"),
        ({"task_weights": {"low": -1, "high": 1}}, ">= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            SearchSpace(bad, TASKS)


# ---------------------------------------------------------------------------- hf-mtl search
def test_cli_search_writes_a_recipe_that_loads_and_resumes(tmp_path, tiny_encoder, capsys):
    from test_cli import one_line_error, write_recipe

    from hf_mtl.cli import main
    from hf_mtl.recipe import load_recipe

    recipe = write_recipe(tmp_path, tiny_encoder)
    space = tmp_path / "space.yaml"
    space.write_text(
        "learning_rate: {low: 1e-5, high: 1e-3, log: true}\n"
        "task_sampling_strategy: [temperature, round_robin]\n"
        "sampling_temperature: {low: 1.0, high: 5.0}\n"
        "task_weights:\n  topic: {low: 0.5, high: 2.0}\n  ner: [0.5, 1.0, 2.0]\n", encoding="utf-8")
    reference = tmp_path / "reference.yaml"
    reference.write_text("sentiment: 0.9\nner: 0.5\n", encoding="utf-8")
    best_path = tmp_path / "elsewhere" / "best.yaml"
    command = ["search", str(recipe), "--trials", "1", "--space", str(space), "--objective", "worst",
               "--reference", str(reference), "--output", str(best_path), "--search-dir", str(tmp_path / "search"),
               "--set", "training.seed=5"]
    assert main(command) == 0
    out = capsys.readouterr().out
    table = out.split("Trials:\n")[1].split("Best:")[0].strip().splitlines()
    assert table[0].split()[:5] == ["trial", "worst", "sentiment", "topic", "ner"] and "w_topic" in table[0]
    assert [line.split()[0] for line in table[1:]] == ["0"]
    assert "Wrote the best settings to" in out and (tmp_path / "search" / "study.db").is_file()

    best = load_recipe(best_path)  # in another folder: its data paths are absolute
    study = optuna.load_study(study_name="hf-mtl-search", storage=f"sqlite:///{tmp_path / 'search' / 'study.db'}")
    params = study.best_trial.params
    args = best.training_arguments()
    assert args.learning_rate == pytest.approx(params["learning_rate"]) and args.seed == 5
    assert args.task_sampling_strategy == params["task_sampling_strategy"]
    assert args.task_weights == {"sentiment": 1.0, "topic": pytest.approx(params["task_weight_topic"]),
                                 "ner": params["task_weight_ner"]}
    assert args.max_steps == 4 and args.eval_strategy == "steps"  # the recipe's budget, not a trial's
    assert best_path.read_text().startswith("# best of 1 trial(s) of `hf-mtl search`")
    for trial in study.trials:  # trials ran 1/5 of max_steps (at least 1)
        assert set(trial.user_attrs["task_scores"]) == {"sentiment", "topic", "ner"}

    assert main(command) == 2
    assert "pass --resume" in one_line_error(capsys, "search")
    assert main([*command[:3], "2", *command[4:], "--resume"]) == 0
    out = capsys.readouterr().out
    table = out.split("Trials:\n")[1].split("Best:")[0].strip().splitlines()
    assert [line.split()[0] for line in table[1:]] == ["0", "1"]

    assert main(["search", str(recipe), "--trials", "2", "--objective", "worst"]) == 2
    assert "--reference" in one_line_error(capsys, "search")
    space.write_text("learning_rate: {low: 1e-5}\n", encoding="utf-8")
    assert main(["search", str(recipe), "--trials", "2", "--space", str(space),
                 "--search-dir", str(tmp_path / "s2")]) == 2
    assert "learning_rate: a range needs `low` and `high`" in one_line_error(capsys, "search")
