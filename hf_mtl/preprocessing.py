"""Raw task datasets -> model inputs: the steps every task kind shares.

`prepare_datasets` turns each task's raw `datasets.Dataset` (with the columns its task spec names) into
`input_ids`, `attention_mask` (and `token_type_ids` where the tokenizer makes them), `labels` and `length`.
The kind-specific work (tokenizing, encoding and aligning labels) is the task's own `Task.prepare`
(`hf_mtl.tasks`; word-level kinds share `hf_mtl.word_alignment`); this module holds what they have in common:
checking columns, the label encoder that reads names, ids and `datasets.ClassLabel` ids with errors that
locate the row, the prepared columns' features, skipped-row reports, and the rules that training, evaluation
and prediction share, re-exported from `hf_mtl.encoders` where they live (the pipeline, also copied into
checkpoints, reads them there): the tokenization length (`effective_max_length`) and how a text pair is
encoded (`effective_text_pair`, used by `tokenize_texts`).
Evaluation and prediction data also record where each row came from (`example_index`, and `word_index` for
token tasks), so results can be put back together one row per raw example and one position per word.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from datasets import ClassLabel, Dataset, Features, IterableDataset, Sequence as SequenceFeature, Value

from .encoders import effective_max_length, effective_text_pair, encoder_max_length

if TYPE_CHECKING:  # pragma: no cover - tasks.py imports this module
    from .tasks import Task

logger = logging.getLogger(__name__)

MODEL_INPUT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")
PREPARED_COLUMNS = (*MODEL_INPUT_COLUMNS, "labels", "length")
#: evaluation/prediction data only: the raw row a prepared row comes from (a long NER sentence gives several)
EXAMPLE_INDEX_COLUMN = "example_index"
#: evaluation/prediction data of token tasks only: per token, the word of the raw sentence this position
#: predicts (the word's first sub-word, in the one window that scores it), -1 elsewhere
WORD_INDEX_COLUMN = "word_index"
#: default number of overlapping tokens between the windows a long NER sentence is split into
DEFAULT_STRIDE = 32


def is_prepared(dataset: Dataset) -> bool:
    """Whether a dataset already holds model inputs (then it is used as is)."""
    return "input_ids" in dataset.column_names and "labels" in dataset.column_names


def row_count(dataset: Dataset | IterableDataset) -> int | None:
    """The number of rows, or None for a stream (`datasets.IterableDataset`: known only once read)."""
    return None if isinstance(dataset, IterableDataset) else len(dataset)


def _check_columns(task: Task, dataset: Dataset, split: str, require_labels: bool = True) -> None:
    optional = set() if require_labels else {task.label_column}
    missing = [c for c in task.input_columns if c not in dataset.column_names and c not in optional]
    if missing:
        raise ValueError(
            f"Task {task.name!r} ({split}): column(s) {missing} not found; the dataset has columns "
            f"{dataset.column_names}. Rename them or set the task's column arguments."
        )
    if row_count(dataset) == 0:
        raise ValueError(f"Task {task.name!r} ({split}): the dataset is empty; every task needs at least one row.")


def class_label_names(feature: Any) -> list[str] | None:
    """The names of a `datasets.ClassLabel` feature, or of the ClassLabel inside a `Sequence`/`List` of them
    (token tags, multi-label lists); None for any other feature."""
    while feature is not None and not isinstance(feature, ClassLabel):
        feature = getattr(feature, "feature", None)  # List/Sequence/LargeList wrap the inner feature
        if isinstance(feature, dict):
            return None
    return list(feature.names) if isinstance(feature, ClassLabel) else None


class LabelEncoder:
    """Maps label values (names or integer ids) of one task to ids, with errors that locate the row.

    In a `ClassLabel` column an integer is an id of the *column's* names, which may list the task's labels in
    another order (or other labels): it is read as that name and then looked up among the task's labels.
    Elsewhere an integer is the task's own label id.
    """

    def __init__(self, task: Task, split: str, column: str, feature: Any = None):
        self.task = task
        self.split = split
        self.column = column
        self.label2id = task.label2id
        self.num_labels = task.num_labels
        self.class_names = class_label_names(feature)

    def where(self, row: int) -> str:
        return f"Task {self.task.name!r}, split {self.split!r}, row {row}"

    def error(self, row: int, value: Any, what: str = "label") -> ValueError:
        return ValueError(
            f"{self.where(row)}: {what} {value!r} is not in the task's label set; known labels are "
            f"{list(self.label2id)} (or their ids 0..{self.num_labels - 1})."
        )

    def _class_label_id(self, value: int, row: int, what: str) -> int:
        names = self.class_names
        if not 0 <= value < len(names):
            raise ValueError(
                f"{self.where(row)}: {what} {value!r} is not an id of column {self.column!r}'s ClassLabel names "
                f"{names} (ids 0..{len(names) - 1})."
            )
        label_id = self.label2id.get(names[value])
        if label_id is None:
            raise ValueError(
                f"{self.where(row)}: {what} {value!r} (ClassLabel name {names[value]!r} of column {self.column!r}) "
                f"is not in the task's label set; known labels are {list(self.label2id)}."
            )
        return label_id

    def encode(self, value: Any, row: int, what: str = "label") -> int:
        if isinstance(value, str):
            label_id = self.label2id.get(value)
            if label_id is None:
                raise self.error(row, value, what)
            return label_id
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(
                f"{self.where(row)}: {what} {value!r} has type {type(value).__name__}; expected a label name "
                f"(str) or id (int) from {list(self.label2id)}."
            )
        if self.class_names is not None:
            return self._class_label_id(int(value), row, what)
        if not 0 <= int(value) < self.num_labels:
            raise self.error(row, value, what)
        return int(value)


def check_texts(
    task: Task, column: str, texts: Sequence[Any], rows: Sequence[int], split: str, allow_none: bool = False
) -> None:
    """Raise, naming the task, split and row, unless every value of a text column is a string (or None,
    with `allow_none`: a missing second text of a pair)."""
    for text, row in zip(texts, rows):
        if not isinstance(text, str) and not (allow_none and text is None):
            raise ValueError(
                f"Task {task.name!r}, split {split!r}, row {row}: column {column!r} holds {text!r} "
                f"({type(text).__name__}); expected a string{' (or None for no pair)' if allow_none else ''}."
            )


def tokenize_texts(
    tokenizer: Any, texts: Sequence[str], pairs: Sequence[str | None] | None = None, **kwargs: Any
) -> dict[str, list]:
    """Tokenize texts and their optional pairs, each exactly as the built-in `text-classification` pipeline
    tokenizes it: a row whose pair is missing or empty (`effective_text_pair`) as a single text, the others
    as pairs. Rows are grouped by whether they have a pair, so this is at most two tokenizer calls, and the
    results come back in input order."""
    pairs = [effective_text_pair(p) for p in pairs] if pairs is not None else [None] * len(texts)
    single = [i for i, p in enumerate(pairs) if p is None]
    if not single:
        return dict(tokenizer(list(texts), pairs, **kwargs))
    if len(single) == len(texts):
        return dict(tokenizer(list(texts), **kwargs))
    paired = [i for i, p in enumerate(pairs) if p is not None]
    groups = [
        (single, tokenizer([texts[i] for i in single], **kwargs)),
        (paired, tokenizer([texts[i] for i in paired], [pairs[i] for i in paired], **kwargs)),
    ]
    out: dict[str, list] = {}
    for key in groups[0][1].keys():
        column: list = [None] * len(texts)
        for indices, encoded in groups:
            for i, value in zip(indices, encoded[key]):
                column[i] = value
        out[key] = column
    return out


def _input_columns(tokenizer: Any) -> list[str]:
    """The model-input columns this tokenizer produces (e.g. no `token_type_ids` for RoBERTa)."""
    probe = tokenizer("probe")
    return [k for k in MODEL_INPUT_COLUMNS if k in probe]


def prepared_features(tokenizer: Any, label_feature: Any, extra: Mapping[str, Any]) -> Features:
    """The prepared columns: model inputs, `labels` (unless `label_feature` is None: unlabelled prediction
    data), `length` and the `extra` bookkeeping columns."""
    features = {k: SequenceFeature(Value("int8" if k != "input_ids" else "int32")) for k in _input_columns(tokenizer)}
    if label_feature is not None:
        features["labels"] = label_feature
    features["length"] = Value("int32")
    features.update(extra)
    return Features(features)


def no_rows(features: Features) -> dict[str, list]:
    """The output of a batch whose rows were all skipped."""
    return {k: [] for k in features}


def report_skipped(task: Task, split: str, total: int | None, left: int | None, skipped: list[int], reason: str) -> None:
    """Log how many rows were skipped and which; no rows left is an error. A stream (`total` None) is
    prepared lazily, as it is read: nothing is known to report yet."""
    if not skipped or total is None:
        return
    shown = ", ".join(map(str, sorted(skipped)[:10])) + (", ..." if len(skipped) > 10 else "")
    if left == 0:
        raise ValueError(
            f"Task {task.name!r} ({split}): no rows left: all {total} rows have {reason} (rows {shown}), and "
            "every task needs at least one row."
        )
    logger.warning(f"Task {task.name!r} ({split}): skipped {len(skipped)} of {total} rows with {reason} (rows {shown}).")


def map_rows(
    dataset: Dataset,
    fn: Callable[[dict[str, list], list[int]], dict[str, list]],
    features: Features,
    task: Task,
    split: str,
) -> Dataset:
    """`fn(batch, rows)` over the dataset in batches of 1000 raw rows (`rows`: their indices, for messages),
    giving the prepared rows with `features`; the raw columns are dropped. A stream
    (`datasets.IterableDataset`, its features resolved) is mapped lazily, batch by batch as it is read."""
    if isinstance(dataset, IterableDataset):
        return dataset.map(
            fn, batched=True, batch_size=1000, with_indices=True, remove_columns=dataset.column_names, features=features
        )
    return dataset.map(
        fn,
        batched=True,
        batch_size=1000,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=features,
        desc=f"Tokenizing {task.name} ({split})",
    )


def prepare_dataset(
    task: Task,
    dataset: Dataset,
    tokenizer: Any,
    *,
    split: str = "train",
    max_length: int | None = None,
    for_training: bool | None = None,
    stride: int = DEFAULT_STRIDE,
    model_config: Any = None,
    require_labels: bool = True,
) -> Dataset:
    """Tokenize one task's raw dataset and encode/align its labels (see `prepare_datasets`)."""
    if is_prepared(dataset) or (not require_labels and "input_ids" in dataset.column_names):
        return dataset
    _check_columns(task, dataset, split, require_labels)
    max_length = effective_max_length(tokenizer, max_length, model_config)
    if for_training is None:
        for_training = split == "train"
    return task.prepare(
        dataset,
        tokenizer,
        split=split,
        max_length=max_length,
        for_training=for_training,
        stride=stride,
        with_labels=task.label_column in dataset.column_names,
    )


def prepare_datasets(
    datasets: Mapping[str, Dataset],
    tasks: Sequence[Task] | Any,
    tokenizer: Any,
    *,
    split: str = "train",
    max_length: int | None = None,
    for_training: bool | None = None,
    stride: int = DEFAULT_STRIDE,
    require_labels: bool = True,
) -> dict[str, Dataset]:
    """Turn raw per-task datasets into model inputs.

    Args:
        datasets: task name -> raw `datasets.Dataset` with the columns that task's spec names (a
            `DatasetDict` keyed by task works too). Datasets that already hold `input_ids` and `labels`
            are passed through unchanged.
        tasks: the task specs, or a `MultiTaskModel`/`MultiTaskConfig` to read them (and the encoder's length
            limit) from.
        tokenizer: a (fast) tokenizer of the encoder.
        split: split name, used in messages; `"train"` also selects training-time label alignment.
        max_length: tokenization length (default: `effective_max_length`: the tokenizer's limit and, given a
            model or config, what the encoder's position embeddings can take, as the pipeline uses). Longer
            texts are truncated with a counted warning; longer NER sentences are split into overlapping
            windows so every word is labelled exactly once.
        for_training: with `label_all_subwords=True`, label every sub-word (training) or only the first
            (evaluation, one prediction per word). Defaults to `split == "train"`.
        stride: overlap in tokens between the windows of a long NER sentence.
        require_labels: with False (prediction), a dataset without its task's label column is prepared
            without `labels`; a dataset that has the column still gets them.

    Returns:
        task name -> dataset with `input_ids`, `attention_mask` (`token_type_ids`), `labels`, `length`.
        Evaluation and prediction data (`for_training` false) also get `example_index` (the raw row each
        prepared row comes from) and, for token tasks, `word_index` (per token, the raw word it predicts, -1
        elsewhere): `MultiTaskTrainer` uses them to score and return one row per raw example, one position per
        word. The model and collator ignore them.
    """
    model_config = None
    if not isinstance(tasks, Sequence):
        from .tasks import tasks_from_config

        model_config = tasks
        tasks = tasks_from_config(tasks)
    by_name = {t.name: t for t in tasks}
    unknown = [name for name in datasets if name not in by_name]
    if unknown:
        raise KeyError(
            f"Dataset key(s) {unknown} ({split}) are not tasks of the model; its tasks are {list(by_name)}."
        )
    return {
        name: prepare_dataset(
            by_name[name],
            dataset,
            tokenizer,
            split=split,
            max_length=max_length,
            for_training=for_training,
            stride=stride,
            model_config=model_config,
            require_labels=require_labels,
        )
        for name, dataset in datasets.items()
    }


__all__ = [
    "DEFAULT_STRIDE",
    "EXAMPLE_INDEX_COLUMN",
    "WORD_INDEX_COLUMN",
    "LabelEncoder",
    "check_texts",
    "class_label_names",
    "effective_max_length",
    "effective_text_pair",
    "encoder_max_length",
    "is_prepared",
    "map_rows",
    "no_rows",
    "prepare_dataset",
    "prepared_features",
    "report_skipped",
    "prepare_datasets",
    "row_count",
    "tokenize_texts",
]
