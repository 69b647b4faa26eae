"""`MultiTaskPipeline`: every head of a multi-task model from one encoder pass, in the output formats of
transformers' `text-classification` and `token-classification` pipelines.

    >>> import hf_mtl
    >>> from transformers import pipeline
    >>> predict = pipeline("multitask", model="path/to/trained/model")
    >>> predict("Apple opened a store in Paris and I love it")
    {'sentiment': {'label': 'positive', 'score': 0.98},
     'topic': {'label': 'business', 'score': 0.91},
     'ner': [{'entity_group': 'ORG', 'score': 0.99, 'word': 'apple', 'start': 0, 'end': 5},
             {'entity_group': 'LOC', 'score': 0.99, 'word': 'paris', 'start': 24, 'end': 29}]}

This module, with its relative imports (`inference`, `postprocessing`, `task_types`, `encoders`, and the model's
code), is copied into
every saved checkpoint (`MultiTaskPreTrainedModel.save_pretrained`) and registered in its `config.json`
(`custom_pipelines`), so `pipeline("multitask", model=dir_or_repo, trust_remote_code=True)` runs it where hf_mtl
is not installed. It therefore imports only torch, transformers, numpy, the standard library and those
siblings, and checks models by their config (`is_multitask_model`), not their class: the checkpoint's copy of
the model's module defines other class objects.

Design
------
The steps of a call that need neither torch nor transformers (validation, parameters, windows, batching, the
per-kind postprocessors) live in `hf_mtl.inference.MultiTaskPredictorBase`, which the torch-free
`hf_mtl.runtime.OnnxPredictor` shares; this class adds transformers' loading, the fast tokenizer call and the
PyTorch (or `MODEL_BACKENDS`) model call.

`MultiTaskPipeline` subclasses `transformers.Pipeline` so that `pipeline("multitask", model=...)` (registered
by `import hf_mtl`) builds it like any other pipeline: same model/tokenizer loading, `device`, `dtype`,
`batch_size`, `save_pretrained`. It overrides `__call__` though: the base class runs one input at a time
through preprocess -> forward -> postprocess (batching only on the forward), which can neither sort
inputs by length nor share one encoder pass between heads. Here a call

1. takes one input (returns its result), a list or tuple (returns a list) or any other iterable — a
   generator, a `KeyDataset`, a `datasets` column — which it streams: it returns an iterator and reads the
   input `STREAM_CHUNK_BATCHES` batches at a time, so memory stays constant however long the input is;
2. validates every input of a list (of a stream: of a chunk) before any compute, naming its index;
3. tokenizes them in one fast-tokenizer call, cutting long texts into strided windows
   (`return_overflowing_tokens`) when a requested head is token-level (its kind's `TaskHead.token_level`), so
   token heads cover the whole text;
4. sorts the windows by length and runs the model once per batch of windows, computing every requested
   head from that single encoder pass (`MultiTaskModel.forward(tasks=...)`) under `torch.inference_mode()`;
5. hands each head's outputs to the `Postprocessor` of its kind (`hf_mtl.postprocessing`, a registry keyed by
   `task_type`), which turns them into results with numpy over whole batches (softmax, argmax, sub-word/word
   grouping), building Python objects only for what is returned; results come back in input order.

The built-in kinds' output formats are transformers' own: classification heads follow `TextClassificationPipeline`
(`top_k`, `function_to_apply`, its `softmax`/`sigmoid` and `ClassificationFunction`; regression heads
included); token heads follow `TokenClassificationPipeline`: `AggregationStrategy`, its softmax, its
`aggregate_overlapping_entities` (called directly to merge entities found in overlapping windows), and its
`gather_pre_entities` / `aggregate_word` / `group_entities` / `group_sub_entities` rules, applied rule for
rule but over whole windows with numpy instead of one dict per token (those per-token dicts cost more than a
small encoder's forward). The inputs they accept are accepted with the same meaning (text pairs, the legacy
`[[text, text_pair]]`, `is_split_into_words` with `delimiter`, `offset_mapping`, `truncation`, `stride`).
The tests check every head against those pipelines run on `MultiTaskModel.task_view(name)`.

Deliberate differences, each documented where it is implemented: token heads default to
`aggregation_strategy="first"` (word-level entity groups) instead of `"none"`; long texts are windowed for
token heads by default (the built-in truncates unless given `stride`), and `"none"` works with windows
(every token once, with its index in the whole text) where the built-in refuses `stride` with `"none"`;
classification heads truncate long texts (with a warning) unless `truncation=False`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    Pipeline,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_multitask import MultiTaskConfig
from .encoders import load_tokenizer_for
from .inference import (  # noqa: F401 - re-exported: the pipeline's parameters and input errors
    DEFAULT_AGGREGATION_STRATEGY,
    DEFAULT_BATCH_SIZE,
    STREAM_CHUNK_BATCHES,
    InvalidInputError,
    MultiTaskPredictorBase,
)
from .modeling_multitask import (
    MultiTaskForSequenceClassification,
    MultiTaskForTokenClassification,
    MultiTaskModel,
    MultiTaskPreTrainedModel,
    is_multitask_model,
)

logger = logging.getLogger(__name__)

PIPELINE_TASK = "multitask"


#: model classes tried before `MultiTaskModel` for a path given to `pipeline("multitask", model=...)` or the class:
#: each has `serves(path)` and `from_pretrained(path)` and offers the calls this pipeline makes of a model (hf_mtl
#: adds `hf_mtl.onnx_backend.OnnxMultiTaskModel`, which runs an ONNX export folder on ONNX Runtime)
MODEL_BACKENDS: list[type] = []


class MultiTaskPipeline(MultiTaskPredictorBase, Pipeline):
    """Run every head of a [`MultiTaskModel`] on texts, from one encoder pass per batch.

    Build it with `transformers.pipeline("multitask", model=...)` (after `import hf_mtl`; without hf_mtl, with
    `trust_remote_code=True`: the checkpoint's copy of this module) or directly:
    `MultiTaskPipeline(model=model_or_path, tokenizer=tokenizer_or_path)`. Without a tokenizer, the one saved
    with the model is used, else the one of the encoder it was trained from (`config.base_model_name_or_path`).
    A fast tokenizer is required (offsets and strided windows).

    Inputs: a string, a dict `{"text": ..., "text_pair": ...}` (an empty or missing `text_pair` is no pair) or
    the legacy `[[text, text_pair]]`; with `is_split_into_words=True`, a list of words or a dict of word lists.
    One input gives one result; a list or tuple of inputs gives a list; any other iterable (a generator, a
    `KeyDataset`, a `datasets` column) gives an iterator, computed `STREAM_CHUNK_BATCHES` batches at a time.

    Every parameter below can be given at construction or per call (a call's value wins):

    Args:
        tasks (`str` or `list[str]`, *optional*): heads to run (a list or comma-separated names); default all.
        top_k (`int` or `None`, *optional*): classification and regression heads return a list of the `top_k`
            best `{"label", "score"}` dicts sorted by score (`None`: all labels) instead of one dict, exactly as
            `text-classification` does. May be a dict `{task_name: top_k}`.
        function_to_apply (`str`, *optional*): `"softmax"`, `"sigmoid"` or `"none"`; default softmax for
            single-label heads, sigmoid for multi-label (and one-label) heads, none for regression. May be a
            per-task dict.
        truncation (`bool` or `str`, *optional*): text-classification's tokenizer argument. Unset: classification
            heads read the first `max_length` tokens of longer texts and a warning says so (once). `True` or a
            strategy (`"longest_first"`, `"only_first"`, `"only_second"`: how text pairs are cut): the same
            without the warning. `False` (`"do_not_truncate"`): an input that would be cut for a classification
            head (or a text pair that would be cut at all) raises `ValueError` before anything runs.
        aggregation_strategy (`str`, defaults to `"first"`): `"none"`, `"simple"`, `"first"`, `"average"` or
            `"max"`, as in `token-classification` (whose default is `"none"`).
        ignore_labels (`list[str]`, defaults to `["O"]`): token labels (or entity groups) left out.
        stride (`int`, *optional*): overlap, in tokens, between the windows that cover texts longer than the
            model's maximum length (token heads); default a quarter of the maximum length, at most 128.
        is_split_into_words (`bool`, defaults to `False`), delimiter (`str`, defaults to `" "`): inputs are
            lists of words; as in `token-classification`, offsets point into the words joined by `delimiter`.
        offset_mapping (`list`, *optional*): per input, one `(start, end)` per token of its tokenization (special
            tokens included) replacing the tokenizer's offsets, as in `token-classification`; for a list of
            inputs, a list of those. Not for streamed inputs.
        batch_size (`int`, defaults to 32): windows per encoder pass.
        device: as for any pipeline (per call it moves the model).

    Returns, for one input, `{task_name: result}`; for a list, a list of those in input order. Classification and
    regression results have the shape `text-classification` gives for the same arguments on a list of inputs;
    token results are the entity lists of `token-classification`, with character offsets into the original
    text. Numbers are Python floats and ints. Token heads cover long texts with strided windows and merge
    entities found twice in overlaps; with `aggregation_strategy="none"` every token is reported once, with its
    index in the whole text's tokenization.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False
    _load_tokenizer = None  # optional: falls back to the encoder's tokenizer
    truncation_logger = logger

    def __init__(self, model: MultiTaskModel | str | os.PathLike, tokenizer: Any = None, **kwargs: Any):
        if isinstance(model, (str, os.PathLike)):
            backend = next((cls for cls in MODEL_BACKENDS if cls.serves(model)), MultiTaskModel)
            model = backend.from_pretrained(model)
        if not is_multitask_model(model):  # hf_mtl's class or a checkpoint's remote-code copy of it
            raise TypeError(f"MultiTaskPipeline needs a MultiTaskModel (or a path to one), got {type(model).__name__}.")
        # A model that transformers loaded from a checkpoint's code comes from another copy of the model's module
        # than the one this pipeline's copy imports: name this pipeline there too, so that saving the model
        # writes the code of the pipeline that serves it (`MultiTaskPreTrainedModel.saved_pipelines`).
        model.saved_pipelines.setdefault(PIPELINE_TASK, type(self))
        tokenizer = self._load_tokenizer_for(model, tokenizer)
        kwargs.setdefault("task", PIPELINE_TASK)
        self._init_predictor()
        super().__init__(model=model, tokenizer=tokenizer, **kwargs)

    @staticmethod
    def _load_tokenizer_for(model: MultiTaskModel, tokenizer: Any) -> Any:
        tokenizer = load_tokenizer_for(model, tokenizer)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"MultiTaskPipeline needs a fast tokenizer (for character offsets and strided windows); "
                f"got {type(tokenizer).__name__}. Load it with use_fast=True."
            )
        return tokenizer


    def _move_to(self, device: Any) -> None:
        if isinstance(device, int):
            device = "cpu" if device < 0 else (f"cuda:{device}" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        self.model.to(self.device)


    # ------------------------------------------------------------------ hooks of MultiTaskPredictorBase
    def _encode(
        self,
        texts: list[Any],
        pairs: list[Any] | None,
        *,
        truncation: bool | str,
        stride: int = 0,
        overflowing: bool = False,
        words: bool = False,
    ) -> tuple[Sequence[Any], Sequence[int]]:
        """One fast-tokenizer call; its `tokenizers.Encoding`s (one per window) and each window's text."""
        args = (texts,) if pairs is None else (texts, pairs)
        encoded = self.tokenizer(
            *args,
            max_length=self.max_length,
            truncation=truncation,
            stride=stride,
            return_overflowing_tokens=overflowing,
            is_split_into_words=words,
        )
        mapping = encoded["overflow_to_sample_mapping"] if overflowing else range(len(texts))
        return encoded.encodings, mapping

    def _token_level(self, task_name: str) -> bool:
        """Whether the head predicts per token (its kind's `TaskHead.token_level`)."""
        return bool(self.model.heads[task_name].token_level)

    def _run_batches(self, windows: Any, tasks: list[str], batch_size: int) -> dict[str, Any]:
        """`MultiTaskPredictorBase._run_batches` in eval mode, without autograd."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                return super()._run_batches(windows, tasks, batch_size)
        finally:
            if was_training:
                self.model.train()

    def _forward(self, batch: dict[str, np.ndarray], tasks: list[str] | None = None) -> dict[str, np.ndarray]:
        """One model call (one encoder pass) for a padded batch; float32 numpy logits per task."""
        output = self.model(**{k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}, tasks=tasks)
        return {name: logits.float().cpu().numpy() for name, logits in output.logits.items()}


# this pipeline in config.json's `custom_pipelines` (`MultiTaskPreTrainedModel.save_pretrained`); set here, where
# the class is defined, for hf_mtl's copy and for a checkpoint's copy alike.
MultiTaskPreTrainedModel.saved_pipelines[PIPELINE_TASK] = MultiTaskPipeline


def register_pipeline() -> None:
    """Register the `"multitask"` pipeline task and the single-task views with transformers (idempotent).

    After this, `pipeline("multitask", model=...)` builds a [`MultiTaskPipeline`], and
    `AutoModelForSequenceClassification` / `AutoModelForTokenClassification` accept multi-task checkpoints
    (serving their first head of that kind, or the one a saved `task_view` names). The configs hf_mtl loads then
    leave the checkpoint's own copy of this pipeline out of `custom_pipelines`
    (`MultiTaskConfig.locally_served_pipelines`): the registered one serves them without `trust_remote_code`.
    """
    MultiTaskConfig.locally_served_pipelines = frozenset({PIPELINE_TASK})
    AutoModelForSequenceClassification.register(MultiTaskConfig, MultiTaskForSequenceClassification, exist_ok=True)
    AutoModelForTokenClassification.register(MultiTaskConfig, MultiTaskForTokenClassification, exist_ok=True)
    registered = PIPELINE_REGISTRY.supported_tasks.get(PIPELINE_TASK)
    model_classes = (*MODEL_BACKENDS, AutoModel)  # pipeline() loads a path with the first class that takes it
    if registered is None or registered.get("impl") is not MultiTaskPipeline or tuple(registered.get("pt", ())) != model_classes:
        PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=MultiTaskPipeline, pt_model=model_classes, type="text")


__all__ = ["InvalidInputError", "MODEL_BACKENDS", "MultiTaskPipeline", "PIPELINE_TASK", "register_pipeline"]
