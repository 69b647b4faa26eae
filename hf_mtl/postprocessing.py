"""Pipeline-side steps of each task kind: a head's outputs for a call's inputs -> that head's results.

`MultiTaskPipeline` runs every requested head from one encoder pass and hands each head's outputs to the
`Postprocessor` registered for its kind (`register_postprocessor(task_type, cls)`; `hf_mtl.register_task_kind`
makes that call for a task kind's `postprocessor`). The pipeline gathers outputs per kind: a head whose
`TaskHead.token_level` is false gets one row per input (read from the input's first window); a token-level
head gets one array per window (`(window_tokens, ...)`), and its inputs are cut into overlapping windows so it
sees whole texts. A postprocessor may transform each batch's logits first (`batch_outputs`), then turns the
gathered outputs into one result per input (`results`).

The built-in kinds answer as transformers' pipelines do: `ClassificationPostprocessor` as
`TextClassificationPipeline.postprocess`, `TokenClassificationPostprocessor` as
`TokenClassificationPipeline.postprocess`, in that pipeline's named steps (gather the pre-entities, aggregate
sub-words into words, group words into entities) but over whole windows with numpy.

This module is the pipeline's vocabulary for kinds, shared by `MultiTaskPipeline` (PyTorch or ONNX Runtime) and
the torch-free `hf_mtl.runtime.OnnxPredictor`: it imports only numpy and hf_mtl's torch-free `task_types`, never
torch or transformers. The transformers pieces the built-in kinds follow are restated here, value for value
(tests check them against transformers): `ClassificationFunction`, `AggregationStrategy` (`str` enums, so
transformers' own members are accepted and compare equal), `softmax`, `sigmoid` and
`aggregate_overlapping_entities`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from .task_types import MULTI_LABEL, REGRESSION, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION

#: a parameter the caller did not give (distinct from None, which some parameters accept as a value)
UNSET = object()


class ClassificationFunction(str, Enum):
    """text-classification's `function_to_apply` values (transformers' `ClassificationFunction`)."""

    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"
    NONE = "none"


class AggregationStrategy(str, Enum):
    """token-classification's `aggregation_strategy` values (transformers' `AggregationStrategy`)."""

    NONE = "none"
    SIMPLE = "simple"
    FIRST = "first"
    AVERAGE = "average"
    MAX = "max"


def sigmoid(outputs: np.ndarray) -> np.ndarray:
    """text-classification's sigmoid."""
    return 1.0 / (1.0 + np.exp(-outputs))


def softmax(outputs: np.ndarray) -> np.ndarray:
    """text- and token-classification's softmax over the last axis (shifted by the maximum)."""
    maxes = np.max(outputs, axis=-1, keepdims=True)
    shifted_exp = np.exp(outputs - maxes)
    return shifted_exp / shifted_exp.sum(axis=-1, keepdims=True)


def aggregate_overlapping_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """token-classification's merge of entities found in overlapping windows: of entities overlapping the one
    kept so far (by start offset), the longest wins, then the higher score."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda x: x["start"])
    aggregated = []
    previous = entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            current_length = entity["end"] - entity["start"]
            previous_length = previous["end"] - previous["start"]
            if current_length > previous_length or (
                current_length == previous_length and entity["score"] > previous["score"]
            ):
                previous = entity
        else:
            aggregated.append(previous)
            previous = entity
    aggregated.append(previous)
    return aggregated


@dataclass
class PipelineInput:
    """One validated input of a pipeline call."""

    index: int  # position in the call's inputs (in a stream: counted from its start), for messages
    text: str | list[str]  # words when is_split_into_words
    text_pair: str | list[str] | None = None
    sentence: str = ""  # what token-head offsets point into: the text, or its words joined by the delimiter
    word_starts: np.ndarray | None = None  # pre-tokenized words: each word's first character in `sentence`
    offsets: np.ndarray | None = None  # a user's offset_mapping, (tokens, 2), by token index in the whole text


@dataclass
class Windows:
    """Tokenized windows of a call's inputs (one per input, more for long texts under token-level heads)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    offsets: list[list[tuple[int, int]]]
    special: list[list[int]]  # 1 for special tokens and, for text pairs, the tokens of text_pair
    item: list[int]  # window -> input index
    first: list[bool]  # the input's first window (the one sequence-level heads read)
    shift: list[int]  # window position + shift = the token's index in the whole text's tokenization
    word_ids: list[list[int | None] | None]  # pre-tokenized input: each token's word (its offsets are within it)

    def per_input(self, num_inputs: int) -> list[list[int]]:
        """The windows of each input, in order."""
        out: list[list[int]] = [[] for _ in range(num_inputs)]
        for w, index in enumerate(self.item):
            out[index].append(w)
        return out


def per_task(value: Any, task_name: str) -> Any:
    """A parameter given either for all heads or as {task_name: value}; `UNSET` where a dict omits the task."""
    if isinstance(value, Mapping):
        return value.get(task_name, UNSET)
    return value


class Postprocessor:
    """The pipeline-side steps of one task kind, for one head of one pipeline.

    Subclasses implement `results`; `batch_outputs` may transform each batch's float32 logits (the head's
    output for a padded batch) before the pipeline gathers them. The pipeline passes every postprocess
    parameter of the call (`top_k`, `function_to_apply`, `aggregation_strategy`, `ignore_labels`; those the
    caller did not give are absent); a kind reads the ones that apply to it (`per_task` resolves per-task dicts).
    """

    def __init__(self, pipeline: Any, task_name: str):
        self.pipeline = pipeline
        self.task_name = task_name

    @property
    def tokenizer(self) -> Any:
        """The pipeline's tokenizer (a transformers fast tokenizer, or `hf_mtl.runtime`'s view of a `tokenizers`
        one): `convert_ids_to_tokens`, `convert_tokens_to_string`, `unk_token_id`."""
        return self.pipeline.tokenizer

    @property
    def entry(self) -> Mapping[str, Any]:
        """The head's config entry (`name`, `task_type`, `problem_type`, `id2label`, ...)."""
        return self.pipeline.model.config.get_task(self.task_name)

    def batch_outputs(self, logits: np.ndarray) -> np.ndarray:
        """What the pipeline keeps of one batch's logits `(batch, ...)`; the logits themselves by default."""
        return logits

    def results(
        self, inputs: list[PipelineInput], windows: Windows, outputs: Any, params: Mapping[str, Any]
    ) -> list[Any]:  # pragma: no cover - abstract
        """One result per input: `outputs` is `(num_inputs, ...)` for a sequence-level head, a list with one
        `(window_tokens, ...)` array per window for a token-level head."""
        raise NotImplementedError


# ---------------------------------------------------------------------------- classification heads
class ClassificationPostprocessor(Postprocessor):
    """`text-classification`'s results: `{"label", "score"}` (or the `top_k` best), `function_to_apply` as there;
    regression heads with no function applied."""

    def results(self, inputs: list[PipelineInput], windows: Windows, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        return self.classify(
            outputs,
            per_task(params.get("function_to_apply"), self.task_name),
            per_task(params.get("top_k", UNSET), self.task_name),
        )

    def classify(self, logits: np.ndarray, function_to_apply: Any, top_k: Any) -> list[Any]:
        entry = self.entry
        id2label = entry["id2label"]
        problem_type = entry["problem_type"]
        if function_to_apply in (None, UNSET):  # TextClassificationPipeline.postprocess's defaults
            if problem_type == REGRESSION:
                function_to_apply = ClassificationFunction.NONE
            elif problem_type == MULTI_LABEL or len(id2label) == 1:
                function_to_apply = ClassificationFunction.SIGMOID
            else:
                function_to_apply = ClassificationFunction.SOFTMAX
        if function_to_apply == ClassificationFunction.SIGMOID:
            scores = sigmoid(logits)
        elif function_to_apply == ClassificationFunction.SOFTMAX:
            scores = softmax(logits)
        else:
            scores = logits
        # regression heads too: text-classification treats their outputs as label scores (the largest by default)
        if top_k is UNSET:
            best = scores.argmax(axis=1).tolist()
            values = scores.max(axis=1).tolist()
            return [{"label": id2label[i], "score": v} for i, v in zip(best, values)]
        order = np.argsort(-scores, axis=1, kind="stable")  # list.sort(reverse=True) keeps ties in label order
        if top_k is not None:
            order = order[:, :top_k]
        ranked = np.take_along_axis(scores, order, axis=1).tolist()
        return [
            [{"label": id2label[i], "score": s} for i, s in zip(ids, row)] for ids, row in zip(order.tolist(), ranked)
        ]


# ---------------------------------------------------------------------------- token heads
class TokenHeadInfo:
    """Per-label lookups of one token head, so entity grouping is array work."""

    def __init__(self, id2label: Mapping[int, str], ignore_labels: Sequence[str]):
        self.id2label = [id2label[i] for i in range(len(id2label))]
        ignore = set(ignore_labels)
        tags: dict[str, int] = {}
        is_b, tag_ids = [], []
        for label in self.id2label:  # TokenClassificationPipeline.get_tag
            bi, tag = ("B", label[2:]) if label.startswith("B-") else ("I", label[2:] if label.startswith("I-") else label)
            is_b.append(bi == "B")
            tag_ids.append(tags.setdefault(tag, len(tags)))
        self.is_b = np.array(is_b, dtype=bool)
        self.tag_id = np.array(tag_ids, dtype=np.int64)
        self.ignored = np.array([label in ignore for label in self.id2label], dtype=bool)
        # group_sub_entities names a group after its first entity's label minus the B-/I- prefix
        self.group_name = [label.split("-", 1)[-1] for label in self.id2label]
        self.group_ignored = np.array([name in ignore for name in self.group_name], dtype=bool)


@dataclass
class PreEntities:
    """gather_pre_entities's result for one window: its non-special tokens and how they form words."""

    positions: np.ndarray  # the tokens' positions in the window
    ids: np.ndarray
    scores: np.ndarray  # (tokens, num_labels) probabilities
    starts: np.ndarray  # character offsets into the input's sentence
    ends: np.ndarray
    tokens: list[str] | None  # the token strings (read for word strategies only, else None)
    unit_first: np.ndarray  # first token of each unit: every token ("none", "simple") or each word


def window_offsets(item: PipelineInput, windows: Windows, w: int, special: np.ndarray) -> np.ndarray:
    """Character offsets of window `w`'s tokens into `item.sentence`, as gather_pre_entities computes them."""
    offsets = np.asarray(windows.offsets[w], dtype=np.int64).reshape(-1, 2)
    if item.offsets is not None:  # offset_mapping: the user's offsets, by token index in the whole text
        offsets = item.offsets[windows.shift[w] : windows.shift[w] + len(offsets)]
    if item.word_starts is not None:  # pre-tokenized: offsets are within each word; move them into the sentence
        word_ids = np.array(windows.word_ids[w], dtype=np.float64)  # None (special tokens) -> nan
        inside = ~special & ~np.isnan(word_ids)
        offsets = offsets.copy()
        offsets[inside] += item.word_starts[word_ids[inside].astype(np.int64)][:, None]
    return offsets


class TokenClassificationPostprocessor(Postprocessor):
    """`token-classification`'s results: entity groups (or tokens with `"none"`) with character offsets; the
    windows of a long text are merged as the built-in merges its strided chunks."""

    def __init__(self, pipeline: Any, task_name: str):
        super().__init__(pipeline, task_name)
        self._info: dict[tuple[str, ...], TokenHeadInfo] = {}
        tokenizer_model = getattr(getattr(pipeline.tokenizer, "_tokenizer", None), "model", None)
        self._wordpiece_like = bool(getattr(tokenizer_model, "continuing_subword_prefix", None))

    def batch_outputs(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits)  # TokenClassificationPipeline.postprocess's softmax

    def head_info(self, ignore_labels: tuple[str, ...]) -> TokenHeadInfo:
        id2label = self.entry["id2label"]
        info = self._info.get(ignore_labels)
        if info is None or info.id2label != [id2label[i] for i in range(len(id2label))]:
            info = self._info[ignore_labels] = TokenHeadInfo(id2label, ignore_labels)
        return info

    def results(self, inputs: list[PipelineInput], windows: Windows, outputs: Any, params: Mapping[str, Any]) -> list[Any]:
        strategy = params.get("aggregation_strategy", AggregationStrategy.FIRST)
        info = self.head_info(tuple(params.get("ignore_labels", ("O",))))
        results = []
        for item, window_ids in zip(inputs, windows.per_input(len(inputs))):
            entities: list[dict[str, Any]] = []
            for w in window_ids:
                special = np.asarray(windows.special[w], dtype=bool)
                entities.extend(
                    self.window_entities(
                        item.sentence,
                        np.asarray(windows.input_ids[w]),
                        outputs[w],
                        window_offsets(item, windows, w, special),
                        special,
                        strategy,
                        info,
                        windows.shift[w],
                    )
                )
            if len(window_ids) > 1:  # as the built-in does with stride; under "none" it keeps each token once
                entities = aggregate_overlapping_entities(entities)
            results.append(entities)
        return results

    def window_entities(
        self,
        text: str,
        ids: np.ndarray,
        scores: np.ndarray,
        offsets: np.ndarray,
        special: np.ndarray,
        strategy: AggregationStrategy,
        info: TokenHeadInfo,
        shift: int = 0,
    ) -> list[dict[str, Any]]:
        """Entities of one window, as TokenClassificationPipeline.postprocess computes them for one chunk
        (`shift` turns window positions into token indices in the whole text, for `"none"`'s `index`)."""
        pre = self.gather(text, ids, scores, offsets, special, strategy)
        if pre is None:
            return []
        labels, unit_scores = self.aggregate(pre, strategy)
        if strategy == AggregationStrategy.NONE:
            shown = np.flatnonzero(~info.ignored[labels])
            if shown.size == 0:
                return []
            return self.token_entities(pre, self.words(pre, text), labels, unit_scores, shown, info, shift)
        group_first, shown = self.group(labels, info)
        if shown.size == 0:
            return []
        return self.group_entities(pre, self.words(pre, text), labels, unit_scores, group_first, shown, info)

    # -- step 1: gather_pre_entities
    def gather(
        self,
        text: str,
        ids: np.ndarray,
        scores: np.ndarray,
        offsets: np.ndarray,
        special: np.ndarray,
        strategy: AggregationStrategy,
    ) -> PreEntities | None:
        """The window's non-special tokens with their offsets and, for word strategies, which start a word;
        None for a window without any."""
        positions = np.flatnonzero(~special[: len(scores)])
        if positions.size == 0:
            return None
        ids = ids[positions]
        starts, ends = offsets[positions, 0], offsets[positions, 1]
        tokens: list[str] | None = None
        if strategy in (AggregationStrategy.NONE, AggregationStrategy.SIMPLE):
            unit_first = np.arange(len(positions))
        else:
            tokens = self.tokenizer.convert_ids_to_tokens(ids.tolist())
            is_subword = self.is_subword(tokens, ids, starts, ends, text)
            is_subword[0] = False
            unit_first = np.flatnonzero(~is_subword)
        return PreEntities(positions, ids, scores[positions], starts, ends, tokens, unit_first)

    def is_subword(self, tokens: list[str], ids: np.ndarray, starts: np.ndarray, ends: np.ndarray, text: str) -> np.ndarray:
        """gather_pre_entities's sub-word test, over a whole window."""
        if self._wordpiece_like:
            token_lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
            text_lengths = np.minimum(ends, len(text)) - np.minimum(starts, len(text))
            is_subword = token_lengths != np.maximum(text_lengths, 0)
        else:
            warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning)
            is_subword = np.array([s > 0 and " " not in text[s - 1 : s + 1] for s in starts.tolist()], dtype=bool)
        is_subword[ids == self.tokenizer.unk_token_id] = False
        return is_subword

    # -- step 2: aggregate (aggregate_word / aggregate_words): one label and score per unit
    @staticmethod
    def aggregate(pre: PreEntities, strategy: AggregationStrategy) -> tuple[np.ndarray, np.ndarray]:
        """Each unit's label id and score: per token ("none", "simple"), or per word by its first sub-word,
        its best-scoring sub-word ("max") or its sub-words' mean ("average")."""
        scores, unit_first = pre.scores, pre.unit_first
        n = len(pre.positions)
        if strategy in (AggregationStrategy.NONE, AggregationStrategy.SIMPLE):
            labels = scores.argmax(axis=-1)
            return labels, scores[np.arange(n), labels]
        if strategy == AggregationStrategy.FIRST:
            labels = scores[unit_first].argmax(axis=-1)
            return labels, scores[unit_first, labels]
        if strategy == AggregationStrategy.MAX:
            token_max = scores.max(axis=-1)
            word_start = np.zeros(n, dtype=bool)
            word_start[unit_first] = True
            word_of = np.cumsum(word_start) - 1
            hits = np.flatnonzero(token_max == np.maximum.reduceat(token_max, unit_first)[word_of])
            _, first_hit = np.unique(word_of[hits], return_index=True)  # the first best token of each word
            best_tokens = hits[first_hit]
            labels = scores[best_tokens].argmax(axis=-1)
            return labels, token_max[best_tokens]
        counts = np.diff(np.append(unit_first, n)).astype(scores.dtype)  # AVERAGE
        averages = np.add.reduceat(scores, unit_first, axis=0) / counts[:, None]
        labels = averages.argmax(axis=-1)
        return labels, averages[np.arange(len(unit_first)), labels]

    # -- step 3: group_entities
    @staticmethod
    def group(labels: np.ndarray, info: TokenHeadInfo) -> tuple[np.ndarray, np.ndarray]:
        """First unit of each entity group (a new group starts at a B- label or at a change of tag) and the
        groups shown (not in `ignore_labels`)."""
        new_group = info.is_b[labels].copy()
        new_group[1:] |= info.tag_id[labels[1:]] != info.tag_id[labels[:-1]]
        new_group[0] = True
        group_first = np.flatnonzero(new_group)
        return group_first, np.flatnonzero(~info.group_ignored[labels[group_first]])

    # -- results
    def words(self, pre: PreEntities, text: str) -> list[str]:
        """Pre-entity words (gather_pre_entities): the token, or the text it covers for unknown tokens."""
        words = pre.tokens if pre.tokens is not None else self.tokenizer.convert_ids_to_tokens(pre.ids.tolist())
        starts_list, ends_list = pre.starts.tolist(), pre.ends.tolist()
        for t in np.flatnonzero(pre.ids == self.tokenizer.unk_token_id).tolist():
            words[t] = text[starts_list[t] : ends_list[t]]
        return words

    @staticmethod
    def token_entities(
        pre: PreEntities,
        words: list[str],
        labels: np.ndarray,
        unit_scores: np.ndarray,
        shown: np.ndarray,
        info: TokenHeadInfo,
        shift: int,
    ) -> list[dict[str, Any]]:
        """`"none"`: one dict per shown token with its raw label and its index in the whole text."""
        labels_list, scores_list = labels.tolist(), unit_scores.tolist()
        starts_list, ends_list = pre.starts.tolist(), pre.ends.tolist()
        return [
            {
                "entity": info.id2label[labels_list[j]],
                "score": scores_list[j],
                "index": int(pre.positions[j]) + shift,
                "word": words[j],
                "start": starts_list[j],
                "end": ends_list[j],
            }
            for j in shown.tolist()
        ]

    def group_entities(
        self,
        pre: PreEntities,
        words: list[str],
        labels: np.ndarray,
        unit_scores: np.ndarray,
        group_first: np.ndarray,
        shown: np.ndarray,
        info: TokenHeadInfo,
    ) -> list[dict[str, Any]]:
        """group_sub_entities for the shown groups: the group's label minus its B-/I- prefix, mean score,
        joined words, outer offsets."""
        labels_list = labels.tolist()
        group_end = np.append(group_first[1:], len(labels))
        unit_last = np.append(pre.unit_first[1:], len(pre.positions)) - 1
        first_list, last_list = pre.unit_first.tolist(), unit_last.tolist()
        starts_list, ends_list = pre.starts.tolist(), pre.ends.tolist()
        to_string = self.tokenizer.convert_tokens_to_string
        group_scores = (np.add.reduceat(unit_scores, group_first) / np.diff(np.append(group_first, len(labels)))).tolist()
        entities = []
        for g in shown.tolist():
            first, end = int(group_first[g]), int(group_end[g])
            if pre.tokens is not None:  # aggregate_word: each word's sub-words joined back (only for groups returned)
                unit_words = [to_string(words[first_list[u] : last_list[u] + 1]) for u in range(first, end)]
            else:
                unit_words = words[first:end]
            entities.append(
                {
                    "entity_group": info.group_name[labels_list[first]],
                    "score": group_scores[g],
                    "word": to_string(unit_words),
                    "start": starts_list[first_list[first]],
                    "end": ends_list[last_list[end - 1]],
                }
            )
        return entities


# ---------------------------------------------------------------------------- registry
POSTPROCESSORS: dict[str, type[Postprocessor]] = {}


def register_postprocessor(task_type: str, postprocessor: type[Postprocessor]) -> type[Postprocessor]:
    """Make `postprocessor` turn the outputs of heads of this `task_type` into pipeline results (idempotent for
    the same class)."""
    if not (isinstance(postprocessor, type) and issubclass(postprocessor, Postprocessor)):
        raise TypeError(f"The postprocessor of task_type {task_type!r} must be a Postprocessor subclass, got {postprocessor!r}.")
    registered = POSTPROCESSORS.get(task_type)
    same = registered is not None and (registered.__module__, registered.__qualname__) == (
        postprocessor.__module__,
        postprocessor.__qualname__,
    )
    if registered is not None and registered is not postprocessor and not same:
        raise ValueError(
            f"task_type {task_type!r} already has the postprocessor {registered.__module__}.{registered.__qualname__}."
        )
    POSTPROCESSORS[task_type] = postprocessor
    return postprocessor


def postprocessor_class(task_type: str, task_name: str | None = None) -> type[Postprocessor]:
    """The postprocessor registered for `task_type`; a `ValueError` naming the registered kinds otherwise."""
    try:
        return POSTPROCESSORS[task_type]
    except KeyError:
        where = f"Task {task_name!r}: " if task_name is not None else ""
        raise ValueError(
            f"{where}task_type {task_type!r} has no pipeline postprocessor; the kinds with one are "
            f"{list(POSTPROCESSORS)}. Import the package that defines the kind (its hf_mtl.register_task_kind call "
            "registers it)."
        ) from None


register_postprocessor(SEQUENCE_CLASSIFICATION, ClassificationPostprocessor)
register_postprocessor(TOKEN_CLASSIFICATION, TokenClassificationPostprocessor)


__all__ = [
    "AggregationStrategy",
    "ClassificationFunction",
    "ClassificationPostprocessor",
    "PipelineInput",
    "Postprocessor",
    "TokenClassificationPostprocessor",
    "Windows",
    "aggregate_overlapping_entities",
    "per_task",
    "postprocessor_class",
    "register_postprocessor",
    "sigmoid",
    "softmax",
]
