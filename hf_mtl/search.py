"""Hyperparameter search for `MultiTaskTrainer`: search spaces, objectives, and turning a best run into
training arguments.

`MultiTaskTrainer(model_init=...)` supports `trainer.hyperparameter_search(backend="optuna", ...)`
(transformers' own loop: one fresh model per trial). What this module adds for multi-task training:

- **task weights in a search space.** `task_weights` is a dict, which a flat hyperparameter cannot be: a
  space returns one `task_weight_<task>` value per searched task, and each trial's `task_weights` are the
  arguments' own weights with those replaced (`trial_arguments`). The trainer rebuilds its loss balancer and
  batch sampler from every trial's arguments, so each trial trains with its own weights, sampling strategy
  and temperature (`MultiTaskTrainer._hp_search_setup`).
- **search spaces.** `SearchSpace` is an optuna `hp_space` function built from a plain mapping (the YAML
  format of `hf-mtl search --space`, docs/recipes.md): per training argument a range `{low, high, log,
  step}`, a list of choices, or a fixed value; `task_weights` takes one range for every task or one per task.
  When the strategy is searched, `sampling_temperature` is drawn only in trials whose strategy is
  `temperature`. `default_search_space(tasks)` searches the learning rate, the sampling strategy and
  temperature, and the loss weights of every task but the first (with Adam-type optimizers only the ratios
  of the weights matter, so the first stays at 1).
- **objectives** (`compute_objective` functions of the evaluation metrics, to maximize): `average_objective`
  (`eval_average`, the default) and `worst_task_objective(reference)`: the worst task's headline score minus
  its single-task reference, so the search looks for settings under which no task falls behind.
- **results.** Every trial records its tasks' headline scores in the optuna trial (`user_attrs`:
  `task_scores`, `metrics`), so a stored study can be tabulated later (`trial_rows`);
  `apply_best_run(args, best_run)` turns the best run's hyperparameters into training arguments.

Only the optuna backend is tested; the trainer's hooks do not depend on it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: a search space's (and best run's) hyperparameter for the loss weight of one task: `task_weight_<task>`
TASK_WEIGHT_PREFIX = "task_weight_"
#: the metric `average_objective` maximizes
AVERAGE_METRIC = "eval_average"
#: what the trial records under `user_attrs` (read back by `trial_rows`)
TASK_SCORES_ATTR = "task_scores"
METRICS_ATTR = "metrics"
#: evaluation figures that are not scores (left out of the recorded metrics)
_NOT_SCORES = ("_runtime", "_samples_per_second", "_steps_per_second", "epoch")


# ---------------------------------------------------------------------------- hyperparameters -> arguments
def trial_arguments(params: Mapping[str, Any], task_weights: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Training-argument values for a trial's (or best run's) hyperparameters: `task_weight_<task>` values
    become `task_weights` (`task_weights` given, a `task_weights` dict among the params, then the per-task
    values, later ones winning); every other key is an argument name, kept as is."""
    values: dict[str, Any] = {}
    weights: dict[str, float] = {}
    for key, value in params.items():
        if key.startswith(TASK_WEIGHT_PREFIX):
            weights[key[len(TASK_WEIGHT_PREFIX):]] = float(value)
        else:
            values[key] = value
    if weights or "task_weights" in values:
        values["task_weights"] = {**(task_weights or {}), **(values.get("task_weights") or {}), **weights}
    return values


def apply_best_run(args: Any, best_run: Any) -> Any:
    """A copy of the training arguments `args` with a search's best hyperparameters set (`best_run` is what
    `hyperparameter_search` returns, or a plain dict of hyperparameters); `task_weight_<task>` values replace
    those tasks' entries of `args.task_weights`. Train the final model with the result."""
    params = getattr(best_run, "hyperparameters", best_run)
    values = trial_arguments(params, getattr(args, "task_weights", None))
    unknown = [k for k in values if not any(f.name == k for f in dataclasses.fields(args))]
    if unknown:
        raise ValueError(f"best run hyperparameter(s) {unknown} are not fields of {type(args).__name__}.")
    return dataclasses.replace(args, **values)


# ---------------------------------------------------------------------------- search spaces
@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: a range (`low`..`high`, optionally `log` or `step`; integers when both
    ends are), a list of `choices`, or a fixed `value`."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    value: Any = None

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.low is None:
            return self.value
        if isinstance(self.low, int) and isinstance(self.high, int) and (self.step is None or isinstance(self.step, int)):
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def describe(self) -> str:
        if self.choices is not None:
            return " | ".join(str(c) for c in self.choices)
        if self.low is None:
            return f"= {self.value}"
        return f"{self.low:g} .. {self.high:g}" + (" (log)" if self.log else "") + (f" step {self.step:g}" if self.step else "")


class SearchSpace:
    """An optuna `hp_space`: `space(trial)` draws one trial's hyperparameters (training-argument names, plus
    `task_weight_<task>` for loss weights).

    Args:
        spec: argument name -> a range mapping `{low, high, log: false, step: null}`, a list of choices, or a
            fixed value; `task_weights` -> one such range for every task, or a mapping task name -> range.
        task_names: the model's tasks (to check and expand `task_weights`).
        where: names the spec in error messages (e.g. the YAML file).
    """

    def __init__(self, spec: Mapping[str, Any], task_names: Sequence[str], where: str = "search space"):
        if not isinstance(spec, Mapping) or not spec:
            raise ValueError(f"{where}: expected a mapping of training arguments to ranges, got {spec!r}.")
        self.task_names = list(task_names)
        self.dimensions: list[Dimension] = []
        for key, value in spec.items():
            if key == "task_weights":
                self.dimensions += self._task_weight_dimensions(value, f"{where}: task_weights")
            elif str(key).startswith(TASK_WEIGHT_PREFIX):
                self._check_task(str(key)[len(TASK_WEIGHT_PREFIX):], f"{where}: {key}")
                self.dimensions.append(_dimension(str(key), value, f"{where}: {key}"))
            else:
                _check_argument(str(key), f"{where}: {key}")
                self.dimensions.append(_dimension(str(key), value, f"{where}: {key}"))
        # the strategy first: whether a trial draws a temperature depends on it
        self.dimensions.sort(key=lambda d: d.name != "task_sampling_strategy")

    def _check_task(self, task: str, where: str) -> None:
        if task not in self.task_names:
            raise ValueError(f"{where}: {task!r} is not a task of the model; its tasks are {self.task_names}.")

    def _task_weight_dimensions(self, value: Any, where: str) -> list[Dimension]:
        if isinstance(value, Mapping) and not ({"low", "high", "value"} & set(value)):
            for task in value:
                self._check_task(str(task), where)
            per_task = {str(k): v for k, v in value.items()}
        else:
            per_task = {task: value for task in self.task_names}
        return [_dimension(TASK_WEIGHT_PREFIX + t, v, f"{where}.{t}") for t, v in per_task.items()]

    def __call__(self, trial: Any) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for dim in self.dimensions:
            strategy = params.get("task_sampling_strategy")
            if dim.name == "sampling_temperature" and strategy is not None and strategy != "temperature":
                continue  # the temperature means nothing to other strategies: do not spend a dimension on it
            params[dim.name] = dim.suggest(trial)
        return params

    def describe(self) -> dict[str, str]:
        """Name -> its range, choices or value, for printing."""
        return {d.name: d.describe() for d in self.dimensions}

    @classmethod
    def from_file(cls, path: str | os.PathLike, task_names: Sequence[str]) -> SearchSpace:
        """A space from a YAML (or JSON) file in the format above (docs/recipes.md)."""
        return cls(_read_mapping(path, "search space"), task_names, where=str(path))


def _check_argument(name: str, where: str) -> None:
    from .training_args import MultiTaskTrainingArguments  # transformers: not needed by `hf-mtl search --help`

    fields = {f.name for f in dataclasses.fields(MultiTaskTrainingArguments) if f.init}
    if name not in fields:
        raise ValueError(f"{where}: not a training argument (MultiTaskTrainingArguments field) or `task_weights`.")


def _number(value: Any, where: str) -> float | int:
    # YAML 1.1 reads `1e-5` (no dot) as a string: accept it as the number it obviously is
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a number, got {value!r}.")
    return value


def _dimension(name: str, value: Any, where: str) -> Dimension:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{where}: an empty list of choices.")
        return Dimension(name, choices=tuple(value))
    if isinstance(value, Mapping):
        unknown = set(value) - {"low", "high", "log", "step", "value"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; a range has low, high, log, step.")
        if "value" in value:
            return Dimension(name, value=value["value"])
        if "low" not in value or "high" not in value:
            raise ValueError(f"{where}: a range needs `low` and `high`, e.g. {{low: 1.0e-5, high: 1.0e-4, log: true}}.")
        low, high = _number(value["low"], f"{where}.low"), _number(value["high"], f"{where}.high")
        step = _number(value["step"], f"{where}.step") if value.get("step") is not None else None
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise ValueError(f"{where}.log: expected true or false, got {log!r}.")
        if not low <= high:
            raise ValueError(f"{where}: low ({low}) must not exceed high ({high}).")
        if log and low <= 0:
            raise ValueError(f"{where}: a log range needs low > 0, got {low}.")
        if log and step is not None:
            raise ValueError(f"{where}: give `log` or `step`, not both.")
        if name.startswith(TASK_WEIGHT_PREFIX) and low < 0:
            raise ValueError(f"{where}: loss weights are >= 0, got low = {low}.")
        return Dimension(name, low=low, high=high, log=log, step=step)
    return Dimension(name, value=value)


def default_search_space(task_names: Sequence[str]) -> SearchSpace:
    """The space `hf-mtl search` uses without `--space`: learning rate 1e-5..3e-4 (log), sampling strategy
    proportional | temperature | uniform, temperature 1..5 (temperature trials only), and the loss weight of
    every task but the first 0.25..4 (log; the first stays at its weight: only the ratios matter to Adam)."""
    names = list(task_names)
    spec: dict[str, Any] = {
        "learning_rate": {"low": 1e-5, "high": 3e-4, "log": True},
        "task_sampling_strategy": ["proportional", "temperature", "uniform"],
        "sampling_temperature": {"low": 1.0, "high": 5.0},
    }
    if len(names) > 1:
        spec["task_weights"] = {name: {"low": 0.25, "high": 4.0, "log": True} for name in names[1:]}
    return SearchSpace(spec, names, where="default search space")


# ---------------------------------------------------------------------------- objectives
def average_objective(metrics: Mapping[str, float]) -> float:
    """`eval_average`: the mean of the tasks' headline metrics (the default objective; maximize it)."""
    if AVERAGE_METRIC not in metrics:
        raise KeyError(f"The evaluation metrics have no {AVERAGE_METRIC!r} (keys: {sorted(metrics)}).")
    return float(metrics[AVERAGE_METRIC])


class WorstTaskObjective:
    """min over the reference's tasks of (the task's headline score - its reference score); maximize it.

    Each task's headline metric is the trainer's (`task.main_metric`, or the first key of a custom
    `compute_metrics`): `MultiTaskTrainer.hyperparameter_search` binds it (`for_trainer`). Called outside the
    trainer, pass `main_metrics` (task -> metric name, e.g. `{"ner": "f1"}`).
    """

    def __init__(
        self,
        reference: Mapping[str, float],
        main_metrics: Mapping[str, str] | None = None,
        headline_keys: Callable[[], Mapping[str, str]] | None = None,
    ):
        if not isinstance(reference, Mapping) or not reference:
            raise ValueError(f"worst_task_objective: reference must map task names to scores, got {reference!r}.")
        self.reference = {str(k): float(_number(v, f"reference[{k!r}]")) for k, v in reference.items()}
        self.main_metrics = dict(main_metrics or {})
        self._headline_keys = headline_keys

    def for_trainer(self, trainer: Any) -> WorstTaskObjective:
        """This objective reading each task's headline metric from `trainer` (after it evaluated)."""
        unknown = [t for t in self.reference if t not in trainer.task_by_name]
        if unknown:
            raise KeyError(
                f"worst_task_objective: reference task(s) {unknown} are not tasks of the model; its tasks are "
                f"{list(trainer.task_by_name)}."
            )
        return WorstTaskObjective(self.reference, self.main_metrics, lambda: trainer.headline_metrics)

    def task_scores(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Each reference task's headline score in `metrics`."""
        bound = dict(self._headline_keys() if self._headline_keys is not None else {})
        scores = {}
        for task in self.reference:
            if task in self.main_metrics:
                key = f"eval_{task}_{self.main_metrics[task]}"
            elif task in bound:
                key = bound[task]
            else:
                raise ValueError(
                    f"worst_task_objective: the headline metric of task {task!r} is unknown: use it through "
                    "MultiTaskTrainer.hyperparameter_search, or pass main_metrics={task: metric name}."
                )
            if key not in metrics:
                raise KeyError(f"worst_task_objective: task {task!r}: no {key!r} in the metrics ({sorted(metrics)}).")
            scores[task] = float(metrics[key])
        return scores

    def __call__(self, metrics: Mapping[str, float]) -> float:
        scores = self.task_scores(metrics)
        return min(scores[task] - ref for task, ref in self.reference.items())


def worst_task_objective(reference: Mapping[str, float], main_metrics: Mapping[str, str] | None = None) -> WorstTaskObjective:
    """A `compute_objective`: min over tasks of (headline score - `reference[task]`), e.g.
    `worst_task_objective({"sentiment": 0.90, "topic": 0.88, "ner": 0.85})` with single-task scores as the
    reference; maximize it (>= 0: every task at least as good as its single-task model)."""
    return WorstTaskObjective(reference, main_metrics)


OBJECTIVES = ("average", "worst")


def objective_by_name(name: str, reference: Mapping[str, float] | None = None) -> Callable[[Mapping[str, float]], float]:
    """`"average"` -> `average_objective`; `"worst"` -> `worst_task_objective(reference)`."""
    if name == "average":
        return average_objective
    if name == "worst":
        if not reference:
            raise ValueError("objective 'worst' needs a reference: single-task scores per task (--reference FILE).")
        return worst_task_objective(reference)
    raise ValueError(f"objective {name!r}: expected one of {list(OBJECTIVES)}.")


def load_reference(path: str | os.PathLike) -> dict[str, float]:
    """Reference scores from a YAML/JSON mapping task name -> score (e.g. `sentiment: 0.90`)."""
    raw = _read_mapping(path, "reference")
    return {str(k): float(_number(v, f"{path}: {k}")) for k, v in raw.items()}


def _read_mapping(path: str | os.PathLike, what: str) -> dict[str, Any]:
    import yaml

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        try:
            raw = yaml.safe_load(handle)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({getattr(err, 'problem', None) or err}).") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a non-empty mapping, got {type(raw).__name__}.")
    return raw


# ---------------------------------------------------------------------------- trial records
def record_trial(trial: Any, metrics: Mapping[str, Any], headline_keys: Mapping[str, str]) -> None:
    """Keep a trial's evaluation in the optuna trial (`user_attrs`), so a stored study can be tabulated."""
    if not hasattr(trial, "set_user_attr"):
        return
    scores = {task: float(metrics[key]) for task, key in headline_keys.items() if key in metrics}
    numbers = {
        k: float(v) for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.endswith(_NOT_SCORES)
    }
    trial.set_user_attr(TASK_SCORES_ATTR, scores)
    trial.set_user_attr(METRICS_ATTR, numbers)


@dataclass
class TrialRow:
    """One trial of a study: its number, state, hyperparameters, objective and tasks' headline scores."""

    number: int
    state: str
    params: dict[str, Any]
    objective: float | None
    task_scores: dict[str, float]


def trial_rows(study: Any) -> list[TrialRow]:
    """The trials of an optuna study, in order."""
    return [
        TrialRow(
            number=t.number,
            state=t.state.name,
            params=dict(t.params),
            objective=t.value if t.values is not None and len(t.values) == 1 else None,
            task_scores=dict(t.user_attrs.get(TASK_SCORES_ATTR, {})),
        )
        for t in study.trials
    ]


__all__ = [
    "AVERAGE_METRIC",
    "OBJECTIVES",
    "TASK_WEIGHT_PREFIX",
    "Dimension",
    "SearchSpace",
    "TrialRow",
    "WorstTaskObjective",
    "apply_best_run",
    "average_objective",
    "default_search_space",
    "load_reference",
    "objective_by_name",
    "record_trial",
    "trial_arguments",
    "trial_rows",
    "worst_task_objective",
]
