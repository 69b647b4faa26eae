# This file is copied into every saved checkpoint (a relative import of pipeline.py): it imports only numpy, the
# standard library and its torch-free siblings (postprocessing, task_types, encoders), never torch or transformers.
"""The prediction engine of `MultiTaskPipeline` without torch or transformers: inputs -> windows -> batches ->
results, shared by the pipeline (PyTorch or ONNX Runtime models) and the torch-free `hf_mtl.runtime.OnnxPredictor`.

`MultiTaskPredictorBase` holds every step of a call that does not depend on how the model runs or how text is
tokenized: validating inputs (naming the bad item's index), parameters (`tasks`, `top_k`, `function_to_apply`,
`truncation`, `aggregation_strategy`, `ignore_labels`, `stride`, `is_split_into_words`, `delimiter`,
`offset_mapping`, `batch_size`), streaming, cutting texts into strided windows from `tokenizers.Encoding`s,
length-sorted batching and the per-kind postprocessors (`hf_mtl.postprocessing`). A subclass supplies:

- `model` with `config` (`tasks`, `task_names`, `get_task`, `select_tasks`, the encoder's limits);
- `tokenizer` with `model_max_length`, `pad_token_id`, `model_input_names`, `num_special_tokens_to_add(pair)`
  and what the postprocessors read (`convert_ids_to_tokens`, `convert_tokens_to_string`, `unk_token_id`);
- `_encode(texts, pairs, truncation=, stride=, overflowing=, words=)`: the `tokenizers.Encoding` of every window
  and the index of the text it comes from (a transformers fast tokenizer's `BatchEncoding.encodings`, or the
  same computed with `tokenizers` directly);
- `_forward(batch, tasks)`: float32 numpy logits per task for a padded int64 numpy batch;
- `_token_level(task_name)`: whether the head predicts per token;
- `_move_to(device)`, and `_batch_size`, `_preprocess_params`, `_forward_params`, `_postprocess_params` (the
  parameters given at construction, as transformers' `Pipeline` keeps them).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from enum import Enum
from typing import Any

import numpy as np

from .encoders import effective_max_length, effective_text_pair
from .postprocessing import (
    UNSET,
    AggregationStrategy,
    ClassificationFunction,
    PipelineInput,
    Postprocessor,
    Windows,
    postprocessor_class,
)

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
#: token heads' default: one tag per word, read from its first sub-word (the only sub-word heads train on by default)
DEFAULT_AGGREGATION_STRATEGY = AggregationStrategy.FIRST
#: a streamed input is read this many batches at a time (length-sorted within), bounding memory
STREAM_CHUNK_BATCHES = 16
_INPUT_HELP = "a string or a dict {'text': str, 'text_pair': str (optional)}"
_WORDS_HELP = "a list of words (strings) or a dict {'text': [words], 'text_pair': [words] (optional)}"
_PAIR_HINT = (
    "if you are trying to send a text pair, send a dict {'text': 'My text', 'text_pair': 'My pair'} "
    "(or the legacy [['My text', 'My pair']]); for pre-tokenized words pass is_split_into_words=True"
)


class TruncationStrategy(str, Enum):
    """The tokenizer's `truncation` values (transformers' `TruncationStrategy`)."""

    ONLY_FIRST = "only_first"
    ONLY_SECOND = "only_second"
    LONGEST_FIRST = "longest_first"
    DO_NOT_TRUNCATE = "do_not_truncate"


class InvalidInputError(ValueError, TypeError):
    """A bad input to `MultiTaskPipeline`.

    A `ValueError`, the type transformers' text- and token-classification pipelines raise for bad inputs, and a
    `TypeError`, the type earlier versions of this pipeline raised for inputs of the wrong type, so that callers
    catching either keep working.
    """


# ---------------------------------------------------------------------------- inputs
def _shown(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}: {value!r:.60}"


def _arrange_inputs(inputs: Any, words: bool) -> tuple[str, Any]:
    """`("single", [input])`, `("list", inputs)` or `("stream", iterator)`: the call's shape, nothing validated yet.

    As in the built-in pipelines, a list holds several inputs, except that with `is_split_into_words` a list of
    strings is one input's words. A list or tuple comes back as a list; any other iterable is streamed.
    """
    expected = f"{_WORDS_HELP if words else _INPUT_HELP}, a list of those, or an iterable of those (streamed)"
    if inputs is None:
        raise InvalidInputError(f"inputs is None; expected {expected}.")
    if isinstance(inputs, str) and not words:
        return "single", [inputs]
    if isinstance(inputs, (str, bytes, bytearray)):
        hint = " (is_split_into_words=True takes lists of words)" if isinstance(inputs, str) else ""
        raise InvalidInputError(f"inputs is {_shown(inputs)}{hint}; expected {expected}.")
    if isinstance(inputs, Mapping):
        return "single", [inputs]
    if isinstance(inputs, (list, tuple)):
        if not inputs:  # as token-classification: "At least one input is required."
            raise InvalidInputError(f"At least one input is required; got an empty {type(inputs).__name__}.")
        if words and all(isinstance(word, str) for word in inputs):
            return "single", [inputs]
        return "list", list(inputs)
    if isinstance(inputs, Sized) and hasattr(inputs, "__getitem__") and not isinstance(inputs, Iterable):
        # a map-style dataset (a torch Dataset such as transformers' KeyDataset): read by index, lazily
        return "stream", map(inputs.__getitem__, range(len(inputs)))
    if isinstance(inputs, Iterable):
        return "stream", iter(inputs)
    raise InvalidInputError(f"inputs is {_shown(inputs)}; expected {expected}.")


def _validate_items(raw: Sequence[Any], start: int, words: bool, delimiter: str) -> list[PipelineInput]:
    """Every item of `raw` checked (indices counted from `start`); all bad items are reported at once."""
    items: list[PipelineInput] = []
    errors: list[InvalidInputError] = []
    for offset, item in enumerate(raw):
        try:
            items.append(_validate_item(start + offset, item, words, delimiter))
        except InvalidInputError as err:
            errors.append(err)
    if errors:
        shown = "; ".join(str(e) for e in errors[:5]) + ("; ..." if len(errors) > 5 else "")
        message = shown if len(errors) == 1 else f"{len(errors)} of {len(raw)} inputs are invalid (nothing was run): {shown}"
        raise InvalidInputError(message)
    return items


def _dict_fields(index: int, item: Mapping, expected: str) -> tuple[Any, Any]:
    if "text" not in item:
        raise InvalidInputError(f"Input {index} is a dict without a 'text' key (keys: {sorted(map(str, item))}); expected {expected}.")
    unknown = sorted(str(k) for k in item if k not in ("text", "text_pair"))
    if unknown:
        raise InvalidInputError(f"Input {index} has unexpected keys {unknown}; expected {expected}.")
    return item["text"], item.get("text_pair")


def _check_text(index: int, name: str, value: Any, expected: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"Input {index} has a {name} of type {type(value).__name__} ({value!r:.60}); expected {expected}.")
    return value


def _check_words(index: int, name: str, value: Any, expected: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(word, str) for word in value):
        raise InvalidInputError(
            f"Input {index}{name} is {_shown(value)}; with is_split_into_words=True expected {expected}."
        )
    return list(value)


def _validate_item(index: int, item: Any, words: bool, delimiter: str) -> PipelineInput:
    if words:
        if isinstance(item, Mapping):
            text, pair = _dict_fields(index, item, _WORDS_HELP)
            text = _check_words(index, "'s 'text'", text, _WORDS_HELP)
            pair = None if pair is None else _check_words(index, "'s 'text_pair'", pair, _WORDS_HELP)
        else:
            text, pair = _check_words(index, "", item, _WORDS_HELP), None
        # as the built-in: the words joined by the delimiter are the sentence offsets point into
        lengths = np.fromiter(map(len, text), dtype=np.int64, count=len(text)) + len(delimiter)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        return PipelineInput(index, text, effective_text_pair(pair), delimiter.join(text), starts)
    if isinstance(item, str):
        return PipelineInput(index, item, None, item)
    if isinstance(item, Mapping):
        text, pair = _dict_fields(index, item, _INPUT_HELP)
        _check_text(index, "'text'", text, _INPUT_HELP)
        if pair is not None:
            _check_text(index, "'text_pair'", pair, _INPUT_HELP)
        return PipelineInput(index, text, effective_text_pair(pair), text)
    if isinstance(item, list) and len(item) == 1 and isinstance(item[0], list) and len(item[0]) == 2:
        # text-classification still takes [[text, text_pair]] for backward compatibility
        text, pair = (_check_text(index, name, value, "[[text, text_pair]] strings") for name, value in zip(("text", "text_pair"), item[0]))
        return PipelineInput(index, text, effective_text_pair(pair), text)
    if isinstance(item, (list, tuple)):
        raise InvalidInputError(f"Input {index} is {_shown(item)}, which is not a valid input: {_PAIR_HINT}.")
    raise InvalidInputError(f"Input {index} is {_shown(item)}; expected {_INPUT_HELP}.")


def _is_offset(value: Any) -> bool:
    return isinstance(value, (tuple, list, np.ndarray)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    )


def _attach_offsets(items: list[PipelineInput], offset_mapping: Any) -> None:
    """token-classification's `offset_mapping`: per input, one `(start, end)` per token of its tokenization
    (special tokens included), replacing the tokenizer's offsets. One input's list may be given unwrapped."""
    if offset_mapping is None or len(offset_mapping) == 0:  # the built-in ignores an empty mapping too
        return
    per_input = [offset_mapping] if _is_offset(offset_mapping[0]) else list(offset_mapping)
    if len(per_input) != len(items):
        raise InvalidInputError(
            f"offset_mapping should have the same batch size as the input: got {len(per_input)} offset lists for "
            f"{len(items)} inputs (one list of (start, end) per input, one pair per token)."
        )
    for item, offsets in zip(items, per_input):
        try:
            array = np.asarray(offsets, dtype=np.int64)
        except (TypeError, ValueError):
            array = None
        if array is not None and array.size == 0:
            array = array.reshape(0, 2)
        if array is None or array.ndim != 2 or array.shape[1] != 2:
            raise InvalidInputError(
                f"offset_mapping of input {item.index} must be a list of (start, end) character offsets, one per "
                f"token; got {offsets!r:.80}."
            )
        item.offsets = array


class MultiTaskPredictorBase:
    """Every step of a multi-task prediction call except tokenization and the model run (module docstring)."""

    #: where the once-per-predictor truncation warning is logged
    truncation_logger: logging.Logger = logger
    _truncation_logged = False

    def _init_predictor(self) -> None:
        self._truncation_logged = False
        self._postprocessors: dict[str, Postprocessor] = {}

    # ------------------------------------------------------------------ hooks
    def _encode(
        self,
        texts: list[Any],
        pairs: list[Any] | None,
        *,
        truncation: bool | str,
        stride: int = 0,
        overflowing: bool = False,
        words: bool = False,
    ) -> tuple[Sequence[Any], Sequence[int]]:  # pragma: no cover - abstract
        """The `tokenizers.Encoding` of every window (with `overflowing`: each text's overflowing windows after
        it) and, per window, the index of its text; each text's first window keeps its `overflowing` list."""
        raise NotImplementedError

    def _forward(self, batch: dict[str, np.ndarray], tasks: list[str] | None = None) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        """One model call (one encoder pass) for a padded batch; float32 numpy logits per task."""
        raise NotImplementedError

    def _token_level(self, task_name: str) -> bool:  # pragma: no cover - abstract
        """Whether the head predicts per token: it then reads every window of a long text, where sequence-level
        heads read an input's first window."""
        raise NotImplementedError

    def _move_to(self, device: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ parameters
    # ------------------------------------------------------------------ parameters
    @property
    def max_length(self) -> int:
        """Longest window the model reads: the same limit training and evaluation tokenize to
        (`effective_max_length`: the tokenizer's and the encoder's position limit, whichever is lower)."""
        return effective_max_length(self.tokenizer, None, self.model.config)

    def _default_stride(self) -> int:
        return min(128, self.max_length // 4)

    def _sanitize_parameters(
        self,
        tasks: str | Iterable[str] | None = None,
        top_k: Any = UNSET,
        function_to_apply: Any = None,
        truncation: Any = UNSET,
        aggregation_strategy: str | AggregationStrategy | None = None,
        ignore_labels: Sequence[str] | None = None,
        stride: int | None = None,
        is_split_into_words: bool | None = None,
        delimiter: str | None = None,
        offset_mapping: Any = None,
        **unknown: Any,
    ) -> tuple[dict, dict, dict]:
        if unknown:
            raise TypeError(
                f"MultiTaskPipeline got unexpected parameters {sorted(unknown)}; it takes tasks, top_k, "
                "function_to_apply, truncation, aggregation_strategy, ignore_labels, stride, is_split_into_words, "
                "delimiter, offset_mapping, batch_size and device."
            )
        preprocess: dict[str, Any] = {}
        forward: dict[str, Any] = {}
        postprocess: dict[str, Any] = {}
        if tasks is not None:
            forward["tasks"] = self.model.config.select_tasks(tasks)
        if top_k is not UNSET:
            self._check_per_task(top_k, "top_k", lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0), "a non-negative int or None")
            postprocess["top_k"] = top_k
        if function_to_apply is not None:
            postprocess["function_to_apply"] = self._check_per_task(
                function_to_apply, "function_to_apply", None, None, convert=self._classification_function
            )
        if truncation is not UNSET:
            preprocess["truncation"] = self._truncation(truncation)
        if aggregation_strategy is not None:
            if isinstance(aggregation_strategy, str):
                try:
                    aggregation_strategy = AggregationStrategy[aggregation_strategy.upper()]
                except KeyError:
                    raise ValueError(
                        f"aggregation_strategy={aggregation_strategy!r} is not one of "
                        f"{[s.value for s in AggregationStrategy]}."
                    ) from None
            postprocess["aggregation_strategy"] = AggregationStrategy(aggregation_strategy)
        if ignore_labels is not None:
            if isinstance(ignore_labels, str) or not isinstance(ignore_labels, Iterable):
                raise TypeError(f"ignore_labels must be a list of label names, got {ignore_labels!r}.")
            postprocess["ignore_labels"] = tuple(ignore_labels)
        if stride is not None:
            limit = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
            if not isinstance(stride, int) or isinstance(stride, bool) or not 0 <= stride < limit:
                raise ValueError(f"stride must be an int in [0, {limit}) for this model (max length {self.max_length}); got {stride!r}.")
            preprocess["stride"] = stride
        if is_split_into_words is not None:
            if not isinstance(is_split_into_words, bool):
                raise ValueError(f"is_split_into_words must be True or False, got {is_split_into_words!r}.")
            preprocess["is_split_into_words"] = is_split_into_words
        if delimiter is not None:
            if not isinstance(delimiter, str):
                raise ValueError(f"delimiter must be a string, got {delimiter!r}.")
            preprocess["delimiter"] = delimiter
        if offset_mapping is not None:
            preprocess["offset_mapping"] = offset_mapping
        return preprocess, forward, postprocess

    def _check_per_task(self, value: Any, name: str, check: Any, expected: str | None, convert: Any = None) -> Any:
        """Validate a parameter given for all heads or as {task_name: value}; returns it (converted)."""
        if isinstance(value, Mapping):
            for task_name in value:
                self.model.config.get_task(task_name)
            return {
                task_name: self._check_per_task(v, name, check, expected, convert) for task_name, v in value.items()
            }
        if convert is not None:
            return convert(value)
        if not check(value):
            raise ValueError(f"{name} must be {expected} (or a dict of those by task name); got {value!r}.")
        return value

    @staticmethod
    def _classification_function(value: Any) -> ClassificationFunction | None:
        if isinstance(value, ClassificationFunction):
            return value
        if isinstance(value, str):
            if value.lower() == "default":
                return None
            try:
                return ClassificationFunction[value.upper()]
            except KeyError:
                pass
        raise ValueError(
            f"function_to_apply={value!r} is not one of {['default'] + [f.value for f in ClassificationFunction]}."
        )

    @staticmethod
    def _truncation(value: Any) -> bool | str | None:
        """None (cut with a warning), True (cut; pairs longest first), False (refuse) or a pair strategy name."""
        if value is None or isinstance(value, bool):
            return value
        try:
            strategy = TruncationStrategy(value)
        except ValueError:
            raise ValueError(
                f"truncation={value!r} is not True, False or one of {[s.value for s in TruncationStrategy]}."
            ) from None
        if strategy == TruncationStrategy.DO_NOT_TRUNCATE:
            return False
        return True if strategy == TruncationStrategy.LONGEST_FIRST else strategy.value

    # ------------------------------------------------------------------ call
    def __call__(self, inputs: Any, **kwargs: Any) -> dict[str, Any] | list[dict[str, Any]] | Iterator[dict[str, Any]]:
        """Predict every requested head for one input (a dict), a list or tuple of inputs (a list of dicts) or
        an iterable of inputs (an iterator of dicts, streamed; see the class docstring).

        Keyword arguments are the parameters listed in the class docstring. Invalid inputs raise
        `InvalidInputError` (a `ValueError`, as the built-in pipelines raise) naming the item's index before
        anything runs (in a stream: before its chunk runs); unknown task names raise `KeyError` listing the
        model's tasks.
        """
        batch_size = kwargs.pop("batch_size", None)
        if batch_size is None:
            batch_size = self._batch_size or DEFAULT_BATCH_SIZE
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        kwargs.pop("num_workers", None)
        device = kwargs.pop("device", None)
        preprocess_params, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
        preprocess_params = {**self._preprocess_params, **preprocess_params}
        forward_params = {**self._forward_params, **forward_params}
        postprocess_params = {**self._postprocess_params, **postprocess_params}
        words = preprocess_params.pop("is_split_into_words", False)
        delimiter = preprocess_params.pop("delimiter", " ")
        offset_mapping = preprocess_params.pop("offset_mapping", None)
        kind, source = _arrange_inputs(inputs, words)
        items: list[PipelineInput] = []
        if kind == "stream":
            if offset_mapping is not None:
                raise InvalidInputError("offset_mapping needs a list of inputs (one offset list per input), not a stream.")
        else:
            items = _validate_items(source, 0, words, delimiter)
            _attach_offsets(items, offset_mapping)
        if device is not None:
            self._move_to(device)
        predict = functools.partial(
            self._predict,
            tasks=forward_params.get("tasks") or self.model.config.task_names,
            batch_size=batch_size,
            preprocess_params={**preprocess_params, "is_split_into_words": words},
            postprocess_params=postprocess_params,
        )
        if kind == "stream":
            return self._stream(source, batch_size * STREAM_CHUNK_BATCHES, words, delimiter, predict)
        results = predict(items)
        return results[0] if kind == "single" else results

    @staticmethod
    def _stream(
        source: Iterator[Any], chunk_size: int, words: bool, delimiter: str, predict: Callable[[list[PipelineInput]], list]
    ) -> Iterator[dict[str, Any]]:
        """Results of a streamed input, `chunk_size` inputs at a time (each chunk validated, then length-sorted)."""
        start = 0
        while True:
            chunk = list(itertools.islice(source, chunk_size))
            if not chunk:
                return
            yield from predict(_validate_items(chunk, start, words, delimiter))
            start += len(chunk)

    def _predict(
        self, items: list[PipelineInput], tasks: list[str], batch_size: int, preprocess_params: dict, postprocess_params: dict
    ) -> list[dict[str, Any]]:
        """Results of validated inputs, in their order."""
        token_level = [self._token_level(name) for name in tasks]
        windows = self.preprocess(items, needs_windows=any(token_level), classifies=not all(token_level), **preprocess_params)
        outputs = self._run_batches(windows, tasks, batch_size)
        return self.postprocess((items, windows, outputs), tasks=tasks, **postprocess_params)


    # ------------------------------------------------------------------ stages
    def preprocess(
        self,
        inputs: list[PipelineInput],
        needs_windows: bool = True,
        classifies: bool = True,
        stride: int | None = None,
        truncation: bool | str | None = None,
        is_split_into_words: bool = False,
    ) -> Windows:
        """Tokenize all inputs in one call per kind (single texts, pairs) into windows.

        Single texts longer than the maximum length are cut into windows overlapping by `stride` tokens when
        token heads need them; otherwise (and for text pairs) only the first window is kept, and `truncation`
        decides whether that is said (unset), silent (true) or refused (false).
        """
        max_length = self.max_length
        windows = Windows([], [] if "token_type_ids" in self.tokenizer.model_input_names else None, [], [], [], [], [], [])
        singles = [i for i, item in enumerate(inputs) if item.text_pair is None]
        pairs = [i for i, item in enumerate(inputs) if item.text_pair is not None]
        cut_singles: list[int] = []
        cut_pairs: list[int] = []
        if singles:
            texts = [inputs[i].text for i in singles]
            if needs_windows:
                stride = self._default_stride() if stride is None else stride
                encoded, mapping = self._encode(texts, None, truncation=True, stride=stride, overflowing=True, words=is_split_into_words)
                # windows come grouped by text, in text order
                counts = np.bincount(np.asarray(mapping, dtype=np.int64), minlength=len(texts)).tolist()
                start = 0
                for local, count in enumerate(counts):
                    if count > 1:
                        cut_singles.append(singles[local])
                    self._add_windows(windows, encoded, range(start, start + count), singles[local], stride, is_split_into_words)
                    start += count
            else:
                encoded, _ = self._encode(texts, None, truncation=True, words=is_split_into_words)
                for w, index in enumerate(singles):
                    if encoded[w].overflowing:
                        cut_singles.append(index)
                    self._add_windows(windows, encoded, range(w, w + 1), index, 0, is_split_into_words)
        if pairs:
            encoded, _ = self._encode(
                [inputs[i].text for i in pairs],
                [inputs[i].text_pair for i in pairs],
                truncation=True if truncation in (None, False) else truncation,
                words=is_split_into_words,
            )
            for w, index in enumerate(pairs):
                if encoded[w].overflowing:
                    cut_pairs.append(index)
                self._add_windows(windows, encoded, range(w, w + 1), index, 0, is_split_into_words, pair=True)
        lost = sorted(cut_pairs + (cut_singles if classifies else []))
        if lost and truncation is False:
            shown = ", ".join(str(inputs[i].index) for i in lost[:10]) + (", ..." if len(lost) > 10 else "")
            raise InvalidInputError(
                f"truncation=False, but {len(lost)} input(s) (index {shown}) are longer than the model's maximum of "
                f"{max_length} tokens, which classification heads cannot read whole (token heads cover long single "
                "texts in windows; text pairs are never windowed). Shorten them, or pass truncation=True to cut them."
            )
        if lost and truncation is None:
            self._log_truncation([inputs[i].index for i in lost], max_length)
        if needs_windows:
            self._check_offsets(inputs, windows)
        return windows

    @staticmethod
    def _add_windows(
        windows: Windows, encoded: Sequence[Any], rows: range, item: int, stride: int, words: bool, pair: bool = False
    ) -> None:
        """Append one input's windows (the `tokenizers.Encoding`s `encoded[rows]`), with where each sits in the
        whole text's tokenization."""
        shift = 0
        for k, w in enumerate(rows):
            encoding = encoded[w]
            ids = encoding.ids
            windows.input_ids.append(ids)
            if windows.token_type_ids is not None:
                windows.token_type_ids.append(encoding.type_ids)
            windows.offsets.append(encoding.offsets)
            special = encoding.special_tokens_mask
            if pair:  # token heads read the first text only
                special = [int(s or seq != 0) for s, seq in zip(special, encoding.sequence_ids)]
            windows.special.append(special)
            windows.item.append(item)
            windows.first.append(k == 0)
            windows.shift.append(shift)
            windows.word_ids.append(encoding.word_ids if words else None)
            if len(rows) > 1:  # the tokenizer starts each overflowing window `stride` text tokens before the last ended
                shift += len(ids) - sum(special) - stride

    @staticmethod
    def _check_offsets(inputs: list[PipelineInput], windows: Windows) -> None:
        """A user's offset_mapping must cover every token of its input's tokenization."""
        needed: dict[int, int] = {}
        for w, index in enumerate(windows.item):
            if inputs[index].offsets is not None:
                needed[index] = max(needed.get(index, 0), windows.shift[w] + len(windows.input_ids[w]))
        for index, count in needed.items():
            given = len(inputs[index].offsets)
            if given < count:
                raise InvalidInputError(
                    f"offset_mapping of input {inputs[index].index} has {given} (start, end) pairs, but the input has "
                    f"{count} tokens (special tokens included); give one pair per token."
                )

    def _log_truncation(self, indices: list[int], max_length: int) -> None:
        if self._truncation_logged:
            return
        self._truncation_logged = True
        shown = ", ".join(map(str, indices[:10])) + (", ..." if len(indices) > 10 else "")
        self.truncation_logger.warning(
            f"{len(indices)} input(s) (index {shown}) are longer than the model's maximum of {max_length} tokens: "
            f"classification heads read only their first {max_length} tokens (token heads cover whole single "
            "texts in overlapping windows; text pairs are truncated). Pass truncation=True to cut without this "
            "warning, or truncation=False to refuse such inputs. Logged once per pipeline."
        )


    def _postprocessor(self, task_name: str) -> Postprocessor:
        """The postprocessor of the head's kind, one per head and pipeline (it may cache per-label lookups)."""
        cls = postprocessor_class(self.model.config.get_task(task_name)["task_type"], task_name)
        postprocessor = self._postprocessors.get(task_name)
        if type(postprocessor) is not cls:
            postprocessor = self._postprocessors[task_name] = cls(self, task_name)
        return postprocessor

    def _run_batches(self, windows: Windows, tasks: list[str], batch_size: int) -> dict[str, Any]:
        """Length-sorted batches of windows, one model call (one encoder pass) each for all `tasks`.

        Each batch's float32 logits go through the head's `Postprocessor.batch_outputs` (token classification:
        softmax), then are gathered per head: `(num_inputs, ...)` from the inputs' first windows for a
        sequence-level head, one `(window_len, ...)` array per window for a token-level head.
        """
        num_items = max(windows.item) + 1
        lengths = np.fromiter(map(len, windows.input_ids), dtype=np.int64, count=len(windows.input_ids))
        order = np.argsort(-lengths, kind="stable")
        items = np.asarray(windows.item)
        first = np.asarray(windows.first, dtype=bool)
        token_level = {name: self._token_level(name) for name in tasks}
        postprocessors = {name: self._postprocessor(name) for name in tasks}
        outputs: dict[str, Any] = {name: [None] * len(lengths) for name in tasks if token_level[name]}
        pad_id = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            logits = self._forward(self._batch_inputs(windows, rows, lengths, pad_id), tasks=tasks)
            rows_first = first[rows]
            for name, values in logits.items():
                values = postprocessors[name].batch_outputs(values)
                if token_level[name]:
                    for r, w in enumerate(rows):
                        outputs[name][w] = values[r, : lengths[w]]
                else:
                    if name not in outputs:
                        outputs[name] = np.zeros((num_items, *values.shape[1:]), dtype=values.dtype)
                    outputs[name][items[rows[rows_first]]] = values[rows_first]
        return outputs

    @staticmethod
    def _batch_inputs(windows: Windows, rows: np.ndarray, lengths: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
        """The windows `rows` padded into int64 arrays: `input_ids`, `attention_mask` (and `token_type_ids`)."""
        width = int(lengths[rows].max())
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        token_type_ids = np.zeros((len(rows), width), dtype=np.int64) if windows.token_type_ids is not None else None
        for r, w in enumerate(rows):
            n = lengths[w]
            input_ids[r, :n] = windows.input_ids[w]
            attention_mask[r, :n] = 1
            if token_type_ids is not None:
                token_type_ids[r, :n] = windows.token_type_ids[w]
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        return batch


    def postprocess(
        self,
        model_outputs: tuple[list[PipelineInput], Windows, dict[str, Any]],
        tasks: list[str] | None = None,
        top_k: Any = UNSET,
        function_to_apply: Any = None,
        aggregation_strategy: AggregationStrategy = DEFAULT_AGGREGATION_STRATEGY,
        ignore_labels: Sequence[str] = ("O",),
    ) -> list[dict[str, Any]]:
        """Per input, `{task: result}`: each head's results from its kind's `Postprocessor` (classification and
        token heads in the formats of transformers' text- and token-classification pipelines)."""
        items, windows, outputs = model_outputs
        params = {
            "top_k": top_k,
            "function_to_apply": function_to_apply,
            "aggregation_strategy": aggregation_strategy,
            "ignore_labels": tuple(ignore_labels),
        }
        results: list[dict[str, Any]] = [{} for _ in items]
        for name in tasks or self.model.config.task_names:
            per_item = self._postprocessor(name).results(items, windows, outputs[name], params)
            for result, value in zip(results, per_item):
                result[name] = value
        return results


__all__ = [
    "DEFAULT_AGGREGATION_STRATEGY",
    "DEFAULT_BATCH_SIZE",
    "InvalidInputError",
    "MultiTaskPredictorBase",
    "STREAM_CHUNK_BATCHES",
    "TruncationStrategy",
]
