"""Task specs and task kinds: what each head predicts, from which dataset columns, with which labels.

A task spec is a small frozen dataclass; its class is its **kind**. The kind owns everything hf_mtl does
differently per kind:

- the spec's settings (its dataclass fields, which are also the recipe keys of the kind) and their checks;
- its config entry (`to_config_dict`, rebuilt by `task_from_config`), so a task has one form;
- the model's head (`head_class`, a `hf_mtl.heads_multitask.TaskHead`: layers, pooling, loss) and the
  pipeline's postprocessing (`postprocessor`, a `hf_mtl.postprocessing.Postprocessor`);
- preprocessing (`prepare`: tokenize and encode/align labels), label collation (`collate_labels`), metrics
  (`compute_metrics`, `main_metric`), the label column (`label_column`), what its labels hold
  (`label_values`), and its wording on model cards (`card_kind`, `hub_task_type`);
- distillation from a teacher (`hf_mtl.distillation`): the loss against the teacher's logits
  (`distillation_loss`), and the cached teacher logits' feature and collation (`teacher_logits_feature`,
  `collate_teacher_logits`).

Kinds are registered with `register_task_kind(TaskClass)` (which also registers the head and the
postprocessor); `SequenceClassificationTask` and `TokenClassificationTask` are the first two registrations.
Word-level kinds (one target per word of a pre-split sentence) subclass `WordLevelTask`, which aligns words to
sub-word tokens (`hf_mtl.word_alignment`). See docs/extending.md for adding a kind.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from datasets import Dataset, Sequence as SequenceFeature, Value

from . import distillation
from . import metrics, preprocessing
from .configuration_multitask import (
    check_label_count,
    check_unique_labels,
    check_unique_task_names,
    normalize_task_dict,
)
from .heads_multitask import (
    HEADS,
    IGNORE_INDEX,
    MULTI_LABEL,
    REGRESSION,
    SEQUENCE_CLASSIFICATION,
    SINGLE_LABEL,
    TOKEN_CLASSIFICATION,
    SequenceClassificationHead,
    TaskHead,
    TokenClassificationHead,
    register_head,
)
from .postprocessing import (
    POSTPROCESSORS,
    ClassificationPostprocessor,
    Postprocessor,
    TokenClassificationPostprocessor,
    register_postprocessor,
)
from .preprocessing import (
    EXAMPLE_INDEX_COLUMN,
    MODEL_INPUT_COLUMNS,
    LabelEncoder,
    check_texts,
    map_rows,
    no_rows,
    prepared_features,
    report_skipped,
    row_count,
    tokenize_texts,
)
from .tag_schemes import detect_tag_scheme
from .word_alignment import prepare_words

if TYPE_CHECKING:  # pragma: no cover
    from dataclasses import Field

    from .word_alignment import WordTargetEncoder

#: data-preparation messages of every kind go to one logger, hf_mtl.preprocessing's
logger = logging.getLogger(preprocessing.__name__)

#: what a task's label column holds (`Task.label_values`), per row or, for word-level kinds, per word:
#: a label name or id
CLASS_LABEL = "class"
#: a list of label names or ids (multi-label)
CLASS_LABELS = "classes"
#: a number, or a list of numbers (one per output)
NUMBER = "number"


def _as_label_tuple(task_name: str, labels: Any) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise TypeError(f"Task {task_name!r}: labels must be a list of label names, got {labels!r}.")
    labels = tuple(str(label) for label in labels)
    check_unique_labels(task_name, list(labels))
    return labels


@dataclass(frozen=True)
class Task:
    """Base of the task specs (one subclass per kind). `name` names the head (and the dataset key that feeds it).

    A kind sets the class attributes below and implements `input_columns`, `label_column`, `prepare`,
    `collate_labels`, `compute_metrics` and `main_metric`; its dataclass fields are its settings.
    """

    #: the kind's id, stored as the config entry's `task_type`
    task_type: ClassVar[str] = ""
    #: the model's head for this kind (registered for `task_type` by `register_task_kind`)
    head_class: ClassVar[type[TaskHead] | None] = None
    #: the pipeline's postprocessing for this kind (registered for `task_type` by `register_task_kind`)
    postprocessor: ClassVar[type[Postprocessor] | None] = None
    #: what the model card calls the kind ("text classification", ...) and the Hub's task id for `model-index`
    card_kind: ClassVar[str] = ""
    hub_task_type: ClassVar[str] = ""
    #: what the label column holds: CLASS_LABEL, CLASS_LABELS or NUMBER (per word for word-level kinds)
    label_values: ClassVar[str] = CLASS_LABEL
    #: key of this task's headline metric in `evaluate()` results (`eval_<task>_<main_metric>`)
    main_metric: ClassVar[str] = ""

    name: str
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"A task needs a non-empty string name, got {self.name!r}.")
        object.__setattr__(self, "labels", _as_label_tuple(self.name, self.labels))
        self.validate()
        if self.head_class is not None:  # the one label-count rule, shared with the config
            check_label_count(
                self.name, self.problem_type, list(self.id2label.values()), self.head_class.min_labels(self.problem_type)
            )

    def validate(self) -> None:
        """The kind's checks of its settings (before the label-count rule); raise `ValueError` naming the task."""

    # ------------------------------------------------------------------ what the kind is
    @property
    def token_level(self) -> bool:
        """Whether the head predicts per token (its outputs are regrouped per word for metrics and results)."""
        return bool(self.head_class is not None and self.head_class.token_level)

    @property
    def problem_type(self) -> str:
        """The config entry's `problem_type`: the head's only (or default) one unless the kind has a setting."""
        return self.head_class.problem_types[0]

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
        """Columns the task reads from its raw dataset (its label column last)."""
        raise NotImplementedError

    @property
    def label_column(self) -> str:
        """The raw column holding the task's targets (labels, tags, scores)."""
        raise NotImplementedError

    @classmethod
    def labels_required(cls, settings: Mapping[str, Any]) -> bool:
        """Whether a spec with these settings (dataclass fields other than name and labels) needs `labels`."""
        return True

    @classmethod
    def settings_fields(cls) -> list[Field]:
        """The kind's settings: its dataclass fields other than `name` and `labels` (also its recipe keys)."""
        return [f for f in fields(cls) if f.init and f.name not in ("name", "labels")]

    # ------------------------------------------------------------------ config entry
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

    @classmethod
    def from_config_dict(cls, entry: Mapping[str, Any]) -> Task:
        """The spec a normalised config entry describes (its settings, and labels in id order)."""
        names = {f.name for f in fields(cls) if f.init and f.name != "labels"}
        kwargs = {k: v for k, v in entry.items() if k in names}
        labels = [entry["id2label"][i] for i in range(len(entry["id2label"]))]
        return cls(labels=cls.labels_from_config(labels, entry), **kwargs)

    @classmethod
    def labels_from_config(cls, labels: list[str], entry: Mapping[str, Any]) -> list[str] | None:
        """The spec's `labels` from the config's label names (a kind whose specs may omit labels undoes the
        placeholder names `id2label` gave them)."""
        return labels

    # ------------------------------------------------------------------ data
    def prepare(
        self,
        dataset: Dataset,
        tokenizer: Any,
        *,
        split: str,
        max_length: int,
        for_training: bool,
        stride: int,
        with_labels: bool,
    ) -> Dataset:  # pragma: no cover - abstract
        """The raw dataset as model inputs: `input_ids`, `attention_mask` (`token_type_ids`), `labels` (with
        `with_labels`), `length`, and for evaluation data (`for_training` false) `example_index` (and, for
        token-level kinds, `word_index`); see `hf_mtl.prepare_datasets`."""
        raise NotImplementedError

    def collate_labels(
        self, labels: list[Any], *, width: int, padding_side: str, pad_value: int
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """One batch's prepared labels as a tensor (`width`: the padded sequence length of the batch)."""
        raise NotImplementedError

    def compute_metrics(self, predictions: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:  # pragma: no cover
        """The metrics of evaluation predictions (logits) and gold labels, in the layout `MultiTaskTrainer`
        gives them (one row per example; for token-level kinds one position per word)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ distillation (hf_mtl.distillation)
    def teacher_logits_feature(self) -> Any:
        """`datasets` feature of one prepared row's cached teacher logits: `(num_labels,)` floats per row."""
        return SequenceFeature(Value("float32"))

    def collate_teacher_logits(self, rows: list[Any], *, width: int, padding_side: str) -> torch.Tensor:
        """One batch's cached teacher logits as a float tensor (`width`: the padded sequence length)."""
        return torch.as_tensor(np.asarray(rows, dtype=np.float32))

    def distillation_loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: Mapping[str, Any], temperature: float
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """The loss of the student's logits against the teacher's (both raw logits, in this task's label order):
        a per-batch mean. `batch` is the collated batch (its `labels` mark which positions count). Soft targets
        are taken at `temperature` T and the loss is scaled by T² (`hf_mtl.distillation`)."""
        raise NotImplementedError(
            f"Task kind {type(self).__name__} ({self.task_type!r}) has no distillation loss: implement "
            f"Task.distillation_loss to distil task {self.name!r} from a teacher."
        )


# ---------------------------------------------------------------------------- sequence classification
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
    head_class: ClassVar[type[TaskHead]] = SequenceClassificationHead
    postprocessor: ClassVar[type[Postprocessor]] = ClassificationPostprocessor
    hub_task_type: ClassVar[str] = "text-classification"

    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    problem_type: str = SINGLE_LABEL  # type: ignore[assignment]

    def validate(self) -> None:
        if self.problem_type not in self.head_class.problem_types:
            raise ValueError(
                f"Task {self.name!r}: problem_type {self.problem_type!r} is not one of "
                f"{list(self.head_class.problem_types)}."
            )
        if self.labels is None and self.labels_required({"problem_type": self.problem_type}):
            raise ValueError(f"Task {self.name!r}: labels are required for {self.problem_type}.")

    @classmethod
    def labels_required(cls, settings: Mapping[str, Any]) -> bool:
        return settings.get("problem_type", SINGLE_LABEL) != REGRESSION

    @classmethod
    def labels_from_config(cls, labels: list[str], entry: Mapping[str, Any]) -> list[str] | None:
        return None if entry["problem_type"] == REGRESSION and labels == ["score"] else labels

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        return {SINGLE_LABEL: "accuracy", MULTI_LABEL: "micro_f1", REGRESSION: "pearson"}[self.problem_type]

    @property
    def card_kind(self) -> str:  # type: ignore[override]
        return {MULTI_LABEL: "multi-label classification", REGRESSION: "regression"}.get(
            self.problem_type, "text classification"
        )

    @property
    def label_values(self) -> str:  # type: ignore[override]
        return {SINGLE_LABEL: CLASS_LABEL, MULTI_LABEL: CLASS_LABELS, REGRESSION: NUMBER}[self.problem_type]

    @property
    def input_columns(self) -> list[str]:
        columns = [self.text_column]
        if self.text_pair_column:
            columns.append(self.text_pair_column)
        return columns + [self.label_column]

    # ------------------------------------------------------------------ data
    def encode_targets(self, encoder: LabelEncoder, values: Sequence[Any], rows: Sequence[int], split: str) -> list:
        """The label column's values as targets: class ids, multi-hot lists or floats (errors locate the row)."""
        if self.problem_type == SINGLE_LABEL:
            return [encoder.encode(v, r) for v, r in zip(values, rows)]
        if self.problem_type == MULTI_LABEL:
            out = []
            for value, row in zip(values, rows):
                if isinstance(value, str) or not isinstance(value, (list, tuple, np.ndarray)):
                    raise ValueError(
                        f"Task {self.name!r}, split {split!r}, row {row}: multi-label value {value!r} must be a list "
                        f"of labels from {list(self.label2id)}."
                    )
                hot = [0.0] * self.num_labels
                for item in value:
                    hot[encoder.encode(item, row)] = 1.0
                out.append(hot)
            return out
        out = []  # regression
        for value, row in zip(values, rows):
            target = value if self.num_labels > 1 else [value]
            if not isinstance(target, (list, tuple, np.ndarray)) or len(target) != self.num_labels:
                raise ValueError(
                    f"Task {self.name!r}, split {split!r}, row {row}: regression target {value!r} must be "
                    f"{'a number' if self.num_labels == 1 else f'a list of {self.num_labels} numbers'}."
                )
            floats = []
            for item in target:
                if isinstance(item, (bool, str)) or not isinstance(item, (int, float, np.number)) or math.isnan(item):
                    raise ValueError(
                        f"Task {self.name!r}, split {split!r}, row {row}: regression target {value!r} is not a "
                        "finite number."
                    )
                floats.append(float(item))
            out.append(floats[0] if self.num_labels == 1 else floats)
        return out

    def label_feature(self) -> Any:
        """The `datasets` feature of the prepared `labels` column."""
        if self.problem_type == SINGLE_LABEL:
            return Value("int64")
        if self.problem_type == MULTI_LABEL or self.num_labels > 1:
            return SequenceFeature(Value("float32"))
        return Value("float32")

    def prepare(
        self,
        dataset: Dataset,
        tokenizer: Any,
        *,
        split: str,
        max_length: int,
        for_training: bool,
        stride: int,
        with_labels: bool,
    ) -> Dataset:
        """Texts (and pairs, encoded as the `text-classification` pipeline does) tokenized up to `max_length`
        (longer ones truncated, counted in a warning); rows with an empty text skipped (logged)."""
        truncated = 0
        skipped: list[int] = []
        encoder = LabelEncoder(self, split, self.label_column, dataset.features.get(self.label_column))

        def encode(batch: dict[str, list], rows: list[int]) -> dict[str, list]:
            nonlocal truncated
            texts = batch[self.text_column]
            check_texts(self, self.text_column, texts, rows, split)
            if self.text_pair_column:  # a missing (None) or empty pair means a single text, as in the pipeline
                check_texts(self, self.text_pair_column, batch[self.text_pair_column], rows, split, allow_none=True)
            keep = [i for i in range(len(texts)) if texts[i].strip()]
            if len(keep) < len(texts):  # empty or whitespace-only text: nothing to learn from or score
                kept = set(keep)
                skipped.extend(rows[i] for i in range(len(texts)) if i not in kept)
                batch = {k: [v[i] for i in keep] for k, v in batch.items()}
                rows = [rows[i] for i in keep]
                texts = batch[self.text_column]
                if not texts:
                    return no_rows(features)
            pairs = batch[self.text_pair_column] if self.text_pair_column else None
            encoded = tokenize_texts(tokenizer, texts, pairs, truncation=True, max_length=max_length)
            # Only rows that hit the limit can have been cut: re-measure those without truncation.
            full = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) >= max_length]
            if full:
                again = tokenize_texts(
                    tokenizer, [texts[i] for i in full], [pairs[i] for i in full] if pairs else None, truncation=False
                )
                truncated += sum(len(ids) > max_length for ids in again["input_ids"])
            out = {k: encoded[k] for k in MODEL_INPUT_COLUMNS if k in encoded}
            if with_labels:
                out["labels"] = self.encode_targets(encoder, batch[self.label_column], rows, split)
            out["length"] = [len(ids) for ids in encoded["input_ids"]]
            if not for_training:
                out[EXAMPLE_INDEX_COLUMN] = list(rows)
            return out

        extra = {EXAMPLE_INDEX_COLUMN: Value("int64")} if not for_training else {}
        features = prepared_features(tokenizer, self.label_feature() if with_labels else None, extra)
        prepared = map_rows(dataset, encode, features, self, split)
        report_skipped(self, split, row_count(dataset), row_count(prepared), skipped, "empty or whitespace-only text")
        if truncated:
            logger.warning(
                f"Task {self.name!r} ({split}): {truncated} of {len(dataset)} texts are longer than {max_length} "
                "tokens and were truncated."
            )
        return prepared

    def collate_labels(self, labels: list[Any], *, width: int, padding_side: str, pad_value: int) -> torch.Tensor:
        if self.problem_type == SINGLE_LABEL:
            return torch.as_tensor(labels, dtype=torch.long)
        if self.problem_type == REGRESSION and self.num_labels == 1:
            return torch.as_tensor(labels, dtype=torch.float32).reshape(-1)
        return torch.as_tensor(labels, dtype=torch.float32)

    def compute_metrics(self, predictions: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        if self.problem_type == SINGLE_LABEL:
            return metrics.single_label_metrics(predictions, label_ids)
        if self.problem_type == MULTI_LABEL:
            return metrics.multi_label_metrics(predictions, label_ids)
        return metrics.regression_metrics(predictions, label_ids)

    def distillation_loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: Mapping[str, Any], temperature: float
    ) -> torch.Tensor:
        """Soft cross-entropy to the teacher's softmax (single-label), BCE to its sigmoid (multi-label), both at
        temperature T and times T²; MSE to its outputs (regression: no temperature)."""
        student = student_logits.float()
        teacher = teacher_logits.to(device=student.device, dtype=torch.float32)
        if self.problem_type == SINGLE_LABEL:
            return distillation.soft_cross_entropy(student, teacher, temperature)
        if self.problem_type == MULTI_LABEL:
            return distillation.soft_binary_cross_entropy(student, teacher, temperature)
        return torch.nn.functional.mse_loss(student, teacher.reshape(student.shape))


# ---------------------------------------------------------------------------- word-level kinds
@dataclass(frozen=True)
class WordLevelTask(Task):
    """Base of the kinds that predict one target per word of a pre-split sentence (token-level heads).

    Data preparation is shared (`hf_mtl.word_alignment.prepare_words`: windows for long sentences, each word's
    target on its first sub-word, -100 elsewhere); a subclass says how a word's raw value becomes a target
    (`word_target_encoder`), the prepared targets' feature (`word_target_feature`) and tensor dtype
    (`label_dtype`), what sub-words after the first are trained on (`subword_targets`), its metrics and the
    column holding the targets (`label_column`). Its head must be token-level (`TaskHead.token_level`).

    Args:
        tokens_column: column with the list of words.
    """

    #: what one word's target is called in messages ("tag")
    word_target_name: ClassVar[str] = "value"
    #: `datasets` feature of one prepared target, and the tensor dtype of a batch of them
    word_target_feature: ClassVar[Any] = Value("int64")
    label_dtype: ClassVar[torch.dtype] = torch.long

    tokens_column: str = "tokens"

    @property
    def input_columns(self) -> list[str]:
        return [self.tokens_column, self.label_column]

    def word_target_encoder(self, split: str, feature: Any) -> WordTargetEncoder:  # pragma: no cover - abstract
        """A function `(values, row) -> np.ndarray` turning one sentence's raw values (one per word, already
        checked to be a list as long as its words) into targets; errors name the task, split and row.
        `feature` is the label column's `datasets` feature (to read `ClassLabel` ids by name)."""
        raise NotImplementedError

    def subword_targets(self, word_targets: np.ndarray) -> np.ndarray | None:
        """For training: per word, the target of its sub-words after the first; None trains first sub-words
        only (the default)."""
        return None

    def prepare(
        self,
        dataset: Dataset,
        tokenizer: Any,
        *,
        split: str,
        max_length: int,
        for_training: bool,
        stride: int,
        with_labels: bool,
    ) -> Dataset:
        return prepare_words(
            self,
            dataset,
            tokenizer,
            split=split,
            max_length=max_length,
            for_training=for_training,
            stride=stride,
            with_labels=with_labels,
        )

    def collate_labels(self, labels: list[Any], *, width: int, padding_side: str, pad_value: int) -> torch.Tensor:
        """Per-token targets padded to the batch's width with `pad_value` (on the tokenizer's padding side)."""
        padded = torch.full((len(labels), width), pad_value, dtype=self.label_dtype)
        for i, row in enumerate(labels):
            row_t = torch.as_tensor(row, dtype=self.label_dtype)
            if padding_side == "left":
                padded[i, width - len(row_t) :] = row_t
            else:
                padded[i, : len(row_t)] = row_t
        return padded

    def teacher_logits_feature(self) -> Any:
        """Per token, the teacher's `(num_labels,)` logits."""
        return SequenceFeature(SequenceFeature(Value("float32")))

    def collate_teacher_logits(self, rows: list[Any], *, width: int, padding_side: str) -> torch.Tensor:
        """Per-token teacher logits padded with zeros to the batch's width (padding positions have label -100,
        so no loss reads them)."""
        padded = torch.zeros((len(rows), width, self.num_labels), dtype=torch.float32)
        for i, row in enumerate(rows):
            row_t = torch.as_tensor(np.asarray(row, dtype=np.float32)).reshape(-1, self.num_labels)
            if padding_side == "left":
                padded[i, width - len(row_t) :] = row_t
            else:
                padded[i, : len(row_t)] = row_t
        return padded


@dataclass(frozen=True)
class TokenClassificationTask(WordLevelTask):
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
    head_class: ClassVar[type[TaskHead]] = TokenClassificationHead
    postprocessor: ClassVar[type[Postprocessor]] = TokenClassificationPostprocessor
    card_kind: ClassVar[str] = "token classification"
    hub_task_type: ClassVar[str] = "token-classification"
    word_target_name: ClassVar[str] = "tag"

    tags_column: str = "tags"
    label_all_subwords: bool = False

    def validate(self) -> None:
        if not self.labels:
            raise ValueError(f"Task {self.name!r}: token classification needs a list of tag labels.")
        # refuse now, rather than at the first evaluation, tags that no metric can score
        detect_tag_scheme(self.labels, self.name)

    @property
    def label_column(self) -> str:  # type: ignore[override]
        return self.tags_column

    @property
    def tag_scheme(self) -> str | None:
        """The tag scheme of the labels (`"IOB2"`, `"IOBES"`, ...), or None when the tags mark no entities."""
        return detect_tag_scheme(self.labels, self.name)

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        """Entity `f1` (conlleval's rules) for tags with entities; word `accuracy` for tags without (POS)."""
        return "f1" if self.tag_scheme else "accuracy"

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

    def word_target_encoder(self, split: str, feature: Any) -> WordTargetEncoder:
        encoder = LabelEncoder(self, split, self.tags_column, feature)

        def encode(tags: Sequence[Any], row: int) -> np.ndarray:
            return np.asarray([encoder.encode(t, row, "tag") for t in tags], dtype=np.int64)

        return encode

    def subword_targets(self, word_targets: np.ndarray) -> np.ndarray | None:
        if not self.label_all_subwords:
            return None
        return np.asarray(self.continuation_label_ids(), dtype=np.int64)[word_targets]

    def compute_metrics(self, predictions: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        return metrics.token_metrics(predictions, label_ids, self.id2label, task_name=self.name)

    def distillation_loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: Mapping[str, Any], temperature: float
    ) -> torch.Tensor:
        """Per-word soft cross-entropy at temperature T (times T²), on the positions the gold loss trains (labels
        other than -100: each word's first sub-word, or every sub-word with `label_all_subwords`)."""
        mask = batch["labels"].to(student_logits.device) != IGNORE_INDEX
        if not bool(mask.any()):
            return student_logits.sum() * 0.0
        teacher = teacher_logits.to(device=student_logits.device, dtype=torch.float32)
        return distillation.soft_cross_entropy(student_logits.float()[mask], teacher[mask], temperature)


# ---------------------------------------------------------------------------- registry
_TASK_KINDS: dict[str, type[Task]] = {}


def _same_class(a: type, b: type) -> bool:
    # a module imported twice (a test runner's rootdir import, a reload) defines an equal class anew
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def register_task_kind(task_class: type[Task]) -> type[Task]:
    """Register a task kind: its `Task` subclass, and with it its head (`head_class`, for the model and the
    config's checks) and its pipeline postprocessor (`postprocessor`), all under its `task_type`.

    After this, specs of the kind work everywhere a task does: `MultiTaskModel.from_encoder`, `from_pretrained`
    of checkpoints holding the kind (where the defining module is imported), `prepare_datasets`,
    `MultiTaskTrainer` (collation, metrics), recipes (`type: <task_type>`, its fields as keys), model cards and
    `pipeline("multitask")`. Idempotent for the same class; usable as a class decorator. Returns the class.
    """
    if not (isinstance(task_class, type) and issubclass(task_class, Task)) or task_class in (Task, WordLevelTask):
        raise TypeError(f"register_task_kind takes a Task subclass (one per kind), got {task_class!r}.")
    name = task_class.__qualname__
    if not is_dataclass(task_class) or not task_class.__dataclass_params__.frozen or "__dataclass_fields__" not in vars(
        task_class
    ):
        raise TypeError(f"{name} must be decorated with @dataclass(frozen=True), as task specs are.")
    task_type = task_class.task_type
    if not isinstance(task_type, str) or not task_type:
        raise ValueError(f"{name} needs a task_type: a non-empty string naming the kind in configs and recipes.")
    head = task_class.head_class
    if not (isinstance(head, type) and issubclass(head, TaskHead)):
        raise TypeError(f"{name}.head_class must be a TaskHead subclass (hf_mtl.heads_multitask), got {head!r}.")
    if head.task_type and head.task_type != task_type:
        raise ValueError(f"{name} has task_type {task_type!r} but its head {head.__name__} serves {head.task_type!r}.")
    if bool(head.token_level) != issubclass(task_class, WordLevelTask):
        raise TypeError(
            f"{name}: a token-level head (TaskHead.token_level) needs word-aligned data, so its task must subclass "
            f"WordLevelTask, and a WordLevelTask needs a token-level head; got head {head.__name__} "
            f"(token_level={head.token_level})."
        )
    postprocessor = task_class.postprocessor
    if not (isinstance(postprocessor, type) and issubclass(postprocessor, Postprocessor)):
        raise TypeError(
            f"{name}.postprocessor must be a Postprocessor subclass (hf_mtl.postprocessing), got {postprocessor!r}."
        )
    for registry, new in ((_TASK_KINDS, task_class), (HEADS, head), (POSTPROCESSORS, postprocessor)):
        old = registry.get(task_type)
        if old is not None and not _same_class(old, new):
            raise ValueError(
                f"task_type {task_type!r} is already registered with {old.__module__}.{old.__qualname__}; pick "
                f"another task_type for {new.__module__}.{new.__qualname__}."
            )
    register_head(task_type, head)
    register_postprocessor(task_type, postprocessor)
    _TASK_KINDS[task_type] = task_class
    return task_class


def task_kinds() -> dict[str, type[Task]]:
    """The registered kinds: task_type -> Task subclass, in registration order."""
    return dict(_TASK_KINDS)


def task_kind(task_type: Any, task_name: str | None = None) -> type[Task]:
    """The `Task` subclass registered for `task_type`; a `ValueError` naming the registered kinds otherwise."""
    try:
        return _TASK_KINDS[task_type]
    except (KeyError, TypeError):
        where = f"Task {task_name!r}: " if task_name is not None else ""
        raise ValueError(
            f"{where}task_type {task_type!r} is not a registered task kind; the registered kinds are "
            f"{list(_TASK_KINDS)}. Import the package that defines it (its hf_mtl.register_task_kind call "
            "registers it)."
        ) from None


def task_from_config(entry: Mapping[str, Any]) -> Task:
    """Rebuild a task spec from a `MultiTaskConfig.tasks` entry."""
    entry = normalize_task_dict(dict(entry))
    return task_kind(entry["task_type"], entry["name"]).from_config_dict(entry)


def tasks_from_config(config: Any) -> list[Task]:
    """The task specs of a `MultiTaskConfig` (or a model), in the model's order."""
    config = getattr(config, "config", config)
    return [task_from_config(entry) for entry in config.tasks]


def check_unique_names(tasks: Sequence[Task]) -> None:
    """Raise if two task specs share a name."""
    check_unique_task_names([t.name for t in tasks])


register_task_kind(SequenceClassificationTask)
register_task_kind(TokenClassificationTask)


__all__ = [
    "CLASS_LABEL",
    "CLASS_LABELS",
    "MULTI_LABEL",
    "NUMBER",
    "REGRESSION",
    "SINGLE_LABEL",
    "SequenceClassificationTask",
    "Task",
    "TokenClassificationTask",
    "WordLevelTask",
    "check_unique_names",
    "register_task_kind",
    "task_from_config",
    "task_kind",
    "task_kinds",
    "tasks_from_config",
]
