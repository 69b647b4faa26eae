# This file is copied into every saved checkpoint (a relative import of heads_multitask.py, configuration_multitask.py
# and the pipeline's modules) and is what the torch-free `hf_mtl.runtime` reads of tasks: it imports only the
# standard library.
"""The vocabulary of tasks without torch or transformers: the built-in kinds' `task_type` and `problem_type`
values, and how a model's task entries are looked up and picked by name (`MultiTaskConfig.get_task` /
`select_tasks` and the torch-free `hf_mtl.runtime` config both call these)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: label id (and float target) of positions without a target: padding, special tokens, non-first sub-words
IGNORE_INDEX = -100

SEQUENCE_CLASSIFICATION = "sequence_classification"
TOKEN_CLASSIFICATION = "token_classification"
SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
POOLING_MODES = ("mean", "cls")


def task_names_of(tasks: Sequence[dict[str, Any]]) -> list[str]:
    """The names of task entries, in order."""
    return [t["name"] for t in tasks]


def get_task_entry(tasks: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    """The entry of task `name`; `KeyError` listing the known tasks otherwise."""
    for task in tasks:
        if task["name"] == name:
            return task
    raise KeyError(f"Unknown task {name!r}; this model's tasks are {task_names_of(tasks)}.")


def select_task_names(tasks: Sequence[dict[str, Any]], selected: Any = None) -> list[str]:
    """Task names picked by `selected` (a name, a comma-separated string or a list of names; None: all), each
    once, in the order given; `KeyError` listing the model's tasks for an unknown name."""
    if selected is None:
        return task_names_of(tasks)
    if isinstance(selected, str):
        selected = [t.strip() for t in selected.split(",") if t.strip()]
    elif not isinstance(selected, Iterable):
        raise TypeError(f"tasks must be a task name, a comma-separated string or a list of names; got {selected!r}.")
    names: list[str] = []
    for name in selected:
        get_task_entry(tasks, name)  # KeyError listing the model's tasks
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(
            f"tasks is empty; pick some of this model's tasks {task_names_of(tasks)} (or leave it unset)."
        )
    return names


__all__ = [
    "IGNORE_INDEX",
    "MULTI_LABEL",
    "POOLING_MODES",
    "REGRESSION",
    "SEQUENCE_CLASSIFICATION",
    "SINGLE_LABEL",
    "TOKEN_CLASSIFICATION",
    "get_task_entry",
    "select_task_names",
    "task_names_of",
]
