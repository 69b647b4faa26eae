"""Task specs: what each head predicts, from which dataset columns, with which labels.

A task spec is a small frozen dataclass. It describes itself as a plain dict (`to_config_dict`), which is
what `MultiTaskConfig.tasks` stores, and can be rebuilt from that dict (`task_from_config`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .configuration_multitask import (
    PROBLEM_TYPES,
    SEQUENCE_CLASSIFICATION,
    TOKEN_CLASSIFICATION,
    normalize_task_dict,
)
from .tag_schemes import detect_tag_scheme

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"


def _as_label_tuple(task_name: str, labels: Any) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise TypeError(f"Task {task_name!r}: labels must be a list of label names, got {labels!r}.")
    labels = tuple(str(label) for label in labels)
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"Task {task_name!r}: labels {duplicates} appear more than once in {list(labels)}.")
    return labels


@dataclass(frozen=True)
class Task:
    """Base of the task specs. `name` names the head (and the dataset key that feeds it)."""

    task_type: ClassVar[str] = ""
    #: key of this task's headline metric in `evaluate()` results (`eval_<task>_<main_metric>`)
    main_metric: ClassVar[str] = ""

    name: str
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"A task needs a non-empty string name, got {self.name!r}.")
        object.__setattr__(self, "labels", _as_label_tuple(self.name, self.labels))

    @property
    def problem_type(self) -> str:  # overridden by a field in subclasses
        raise NotImplementedError

    @property
    def num_labels(self) -> int:
        """Number of outputs of the head."""
        return len(self.labels) if self.labels else 1

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels)) if self.labels else {0: "score"}

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}

    @property
    def input_columns(self) -> list[str]:
        """Columns the task reads from its raw dataset."""
        raise NotImplementedError

    def to_config_dict(self) -> dict[str, Any]:
        """The dict stored in `MultiTaskConfig.tasks` (validated the same way the config validates it)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "labels"}
        data.update(
            task_type=self.task_type,
            problem_type=self.problem_type,
            id2label=self.id2label,
            label2id=self.label2id,
        )
        return normalize_task_dict(data)


@dataclass(frozen=True)
class SequenceClassificationTask(Task):
    """A head that classifies (or scores) a whole text or text pair.

    Args:
        name: head name; also the key of this task's datasets.
        labels: label names, in id order. May be omitted for `problem_type="regression"` (one score).
        text_column: column with the text.
        text_pair_column: column with the second text of a pair (NLI, paraphrase), or None.
        label_column: column with the target: a label name or id (single-label), a list of label names
            or ids (multi-label), a float (regression) or a list of floats (multi-output regression).
        problem_type: `"single_label_classification"`, `"multi_label_classification"` or `"regression"`.
    """

    task_type: ClassVar[str] = SEQUENCE_CLASSIFICATION

    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    problem_type: str = SINGLE_LABEL  # type: ignore[assignment]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.problem_type not in PROBLEM_TYPES[SEQUENCE_CLASSIFICATION]:
            raise ValueError(
                f"Task {self.name!r}: problem_type {self.problem_type!r} is not one of "
                f"{list(PROBLEM_TYPES[SEQUENCE_CLASSIFICATION])}."
            )
        if self.labels is None and self.problem_type != REGRESSION:
            raise ValueError(f"Task {self.name!r}: labels are required for {self.problem_type}.")
        if self.problem_type == SINGLE_LABEL and len(self.labels) < 2:
            raise ValueError(
                f"Task {self.name!r}: single-label classification needs at least 2 labels, got {list(self.labels)}."
            )

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        return {SINGLE_LABEL: "accuracy", MULTI_LABEL: "micro_f1", REGRESSION: "pearson"}[self.problem_type]

    @property
    def input_columns(self) -> list[str]:
        columns = [self.text_column]
        if self.text_pair_column:
            columns.append(self.text_pair_column)
        return columns + [self.label_column]


@dataclass(frozen=True)
class TokenClassificationTask(Task):
    """A head that tags every word of a pre-split sentence (NER, POS, chunking).

    Args:
        name: head name; also the key of this task's datasets.
        labels: tag names in id order, e.g. `["O", "B-PER", "I-PER", ...]`. Their tag scheme (IOB1, IOB2, IOE1,
            IOE2, IOBES, BILOU, or none for tags without entities such as POS tags) is read from them and decides
            the metrics (`hf_mtl.tag_schemes`); a label set no scheme reads is refused here.
        tokens_column: column with the list of words.
        tags_column: column with one tag (name or id) per word.
        label_all_subwords: train every sub-word of a word (continuations get the word's tag with `B-`
            turned into `I-`) instead of only the first. Evaluation always scores one prediction per word.
    """

    task_type: ClassVar[str] = TOKEN_CLASSIFICATION

    tokens_column: str = "tokens"
    tags_column: str = "tags"
    label_all_subwords: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.labels:
            raise ValueError(f"Task {self.name!r}: token classification needs a list of tag labels.")
        # refuse now, rather than at the first evaluation, tags that no metric can score
        detect_tag_scheme(self.labels, self.name)

    @property
    def tag_scheme(self) -> str | None:
        """The tag scheme of the labels (`"IOB2"`, `"IOBES"`, ...), or None when the tags mark no entities."""
        return detect_tag_scheme(self.labels, self.name)

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        """Entity `f1` (conlleval's rules) for tags with entities; word `accuracy` for tags without (POS)."""
        return "f1" if self.tag_scheme else "accuracy"

    @property
    def problem_type(self) -> str:
        return "token_classification"

    @property
    def input_columns(self) -> list[str]:
        return [self.tokens_column, self.tags_column]

    def continuation_label_ids(self) -> list[int]:
        """For each tag id, the id given to a word's non-first sub-words (`B-X` -> `I-X` where it exists)."""
        label2id = self.label2id
        out = []
        for label in self.labels:
            if label.startswith("B-") and f"I-{label[2:]}" in label2id:
                out.append(label2id[f"I-{label[2:]}"])
            else:
                out.append(label2id[label])
        return out


TASK_CLASSES: dict[str, type[Task]] = {
    SEQUENCE_CLASSIFICATION: SequenceClassificationTask,
    TOKEN_CLASSIFICATION: TokenClassificationTask,
}


def task_from_config(entry: Mapping[str, Any]) -> Task:
    """Rebuild a task spec from a `MultiTaskConfig.tasks` entry."""
    entry = normalize_task_dict(dict(entry))
    cls = TASK_CLASSES[entry["task_type"]]
    names = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in entry.items() if k in names and k not in ("labels",)}
    labels = [entry["id2label"][i] for i in range(len(entry["id2label"]))]
    if entry["problem_type"] == REGRESSION and labels == ["score"]:
        labels = None
    if cls is TokenClassificationTask:
        kwargs.pop("problem_type", None)
    return cls(labels=labels, **kwargs)


def tasks_from_config(config: Any) -> list[Task]:
    """The task specs of a `MultiTaskConfig` (or a model), in the model's order."""
    config = getattr(config, "config", config)
    return [task_from_config(entry) for entry in config.tasks]


def check_unique_names(tasks: Sequence[Task]) -> None:
    """Raise if two task specs share a name."""
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Task names must be unique; {duplicates} appear more than once in {names}.")


__all__ = [
    "MULTI_LABEL",
    "REGRESSION",
    "SINGLE_LABEL",
    "SequenceClassificationTask",
    "Task",
    "TokenClassificationTask",
    "check_unique_names",
    "task_from_config",
    "tasks_from_config",
]
