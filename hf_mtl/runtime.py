"""Torch-free prediction on an ONNX export folder: `OnnxPredictor`, for servers with only `onnxruntime`,
`tokenizers` and `numpy` installed (`pip install "hf-mtl[onnx]"`, no PyTorch, no transformers).

    >>> from hf_mtl.runtime import OnnxPredictor
    >>> predict = OnnxPredictor("path/to/export")          # a folder written by `hf-mtl export` / `export_onnx`
    >>> predict("Apple opened a store in Paris", tasks="ner", aggregation_strategy="simple")
    {'ner': [{'entity_group': 'ORG', 'score': 0.99, 'word': 'apple', 'start': 0, 'end': 5}, ...]}

It gives what `pipeline("multitask", model=<export folder>)` gives, call for call: the same inputs (texts, text
pairs as `{"text", "text_pair"}` dicts, pre-split words, streams), the same parameters (`tasks`, `top_k`,
`function_to_apply`, `truncation`, `aggregation_strategy`, `ignore_labels`, `stride`, `is_split_into_words`,
`delimiter`, `offset_mapping`, `batch_size`) and the same results, because it IS the pipeline's code:
`hf_mtl.inference.MultiTaskPredictorBase` (validation, windows, batching) and `hf_mtl.postprocessing` (the kinds'
results) import neither torch nor transformers, and the pipeline runs on them too. Only two pieces differ:

- tokenization calls the `tokenizers` library on the folder's `tokenizer.json` the way transformers' fast
  tokenizers call it (`RuntimeTokenizer`: truncation with the same strategy, stride and side, no padding,
  special tokens added; `tokenizer_config.json` gives the length limit and special tokens), so windows, offsets,
  word ids and special-token masks are the fast tokenizer's;
- the model call runs the folder's ONNX Runtime session (`run_session`, shared with
  `hf_mtl.onnx_backend.OnnxMultiTaskModel`, which serves the pipeline).

This module imports only the standard library, numpy and hf_mtl's torch-free modules at import time;
`tokenizers` and `onnxruntime` are imported when a predictor is built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from .export import ONNX_CONFIG_KEY, output_name, read_export_config
from .inference import MultiTaskPredictorBase
from .postprocessing import TokenClassificationPostprocessor, postprocessor_class
from .task_types import TOKEN_CLASSIFICATION, get_task_entry, select_task_names, task_names_of

#: transformers' `model_max_length` of a tokenizer that states no limit (`VERY_LARGE_INTEGER`)
_NO_LIMIT = int(1e30)
#: what transformers' BERT-style fast tokenizers return when a folder does not say (`model_input_names`)
_DEFAULT_INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")


# ---------------------------------------------------------------------------- ONNX Runtime
def create_session(
    path: str | os.PathLike,
    *,
    providers: Sequence[Any] | None = None,
    session_options: Any = None,
    intra_op_num_threads: int | None = None,
) -> Any:
    """An ONNX Runtime session for `path`: all graph optimizations, CPU unless `providers` says otherwise.

    With `OMP_WAIT_POLICY=PASSIVE` (the setting that keeps PyTorch's threads from spinning on a shared CPU), ONNX
    Runtime's intra-op threads do not spin either: spinning threads slow everything down whenever another process
    holds a core.
    """
    import onnxruntime

    options = session_options
    if options is None:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_num_threads is not None:
            options.intra_op_num_threads = int(intra_op_num_threads)
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"]))


def export_file(export_dir: str | os.PathLike, described: dict[str, Any], file: str | None) -> Path:
    """The ONNX file of an export folder to run: `file` (a name listed in the folder's config) or its default."""
    files = described.get("files") or {described["file"]: {}}
    name = described["file"] if file is None else file
    if name not in files:
        raise ValueError(f"{export_dir} has no ONNX file {name!r}; its files are {sorted(files)}.")
    return Path(os.fspath(export_dir)) / name


def run_session(session: Any, input_names: Sequence[str], batch: dict[str, np.ndarray], tasks: Sequence[str]) -> dict[str, np.ndarray]:
    """One session run for a padded batch: float32 logits per task. Graph inputs the batch lacks
    (`token_type_ids` of a tokenizer that gives none) are zeros, the encoder's default."""
    feed = {}
    for name in input_names:
        value = batch.get(name)
        feed[name] = np.zeros_like(batch["input_ids"], dtype=np.int64) if value is None else np.asarray(value, dtype=np.int64)
    outputs = session.run([output_name(n) for n in tasks], feed)
    return dict(zip(tasks, outputs))


# ---------------------------------------------------------------------------- config
class RuntimeConfig:
    """What prediction reads of an export folder's `config.json`, without transformers: the tasks (label maps
    with integer ids, as `MultiTaskConfig` restores them) and the encoder's limits (`encoder`)."""

    def __init__(self, config: dict[str, Any], name_or_path: str = ""):
        self.raw = config
        self.name_or_path = name_or_path
        self.tasks = [self._task(entry) for entry in config.get("tasks", [])]
        self.encoder = SimpleNamespace(**(config.get("encoder") or {}))

    @staticmethod
    def _task(entry: dict[str, Any]) -> dict[str, Any]:
        entry = dict(entry)
        if entry.get("id2label") is not None:  # JSON keys are strings
            entry["id2label"] = {int(k): v for k, v in entry["id2label"].items()}
        elif entry.get("label2id") is not None:
            entry["id2label"] = {int(v): k for k, v in entry["label2id"].items()}
        return entry

    @property
    def task_names(self) -> list[str]:
        return task_names_of(self.tasks)

    def get_task(self, name: str) -> dict[str, Any]:
        return get_task_entry(self.tasks, name)

    def select_tasks(self, tasks: Any = None) -> list[str]:
        return select_task_names(self.tasks, tasks)


# ---------------------------------------------------------------------------- tokenizer
def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def _token_content(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class RuntimeTokenizer:
    """A `tokenizers.Tokenizer` (a folder's `tokenizer.json`) called as transformers' fast tokenizers call it, with
    the attributes of one that prediction reads (`model_max_length`, `pad_token_id`, `unk_token_id`,
    `model_input_names`, `num_special_tokens_to_add`, `convert_ids_to_tokens`, `convert_tokens_to_string`)."""

    def __init__(self, backend: Any, settings: dict[str, Any] | None = None, model_input_names: Sequence[str] | None = None):
        settings = settings or {}
        self._tokenizer = backend
        self.backend_tokenizer = backend
        limit = settings.get("model_max_length")
        self.model_max_length = int(limit) if isinstance(limit, (int, float)) and not isinstance(limit, bool) else _NO_LIMIT
        self.truncation_side = settings.get("truncation_side") or "right"
        self.model_input_names = list(settings.get("model_input_names") or model_input_names or _DEFAULT_INPUT_NAMES)
        self.pad_token_id = self._special_id(settings.get("pad_token"))
        if self.pad_token_id is None and backend.padding is not None:
            self.pad_token_id = backend.padding.get("pad_id")
        unk = _token_content(settings.get("unk_token")) or getattr(backend.model, "unk_token", None)
        self.unk_token_id = backend.token_to_id(unk) if isinstance(unk, str) else None

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, model_input_names: Sequence[str] | None = None) -> RuntimeTokenizer:
        """The tokenizer a transformers fast tokenizer would load from `folder`: its `tokenizer.json` with the
        settings of `tokenizer_config.json` (and `special_tokens_map.json`)."""
        from tokenizers import Tokenizer

        folder = Path(os.fspath(folder))
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no tokenizer.json; the torch-free runtime needs a fast tokenizer's file.")
        settings = {**_read_json(folder / "special_tokens_map.json"), **_read_json(folder / "tokenizer_config.json")}
        return cls(Tokenizer.from_file(str(path)), settings, model_input_names)

    def _special_id(self, token: Any) -> int | None:
        content = _token_content(token)
        return None if content is None else self._tokenizer.token_to_id(content)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        processor = self._tokenizer.post_processor
        return processor.num_special_tokens_to_add(pair) if processor is not None else 0

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, (int, np.integer)):
            return self._tokenizer.id_to_token(int(ids))
        return [self._tokenizer.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self._tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def encode(
        self,
        texts: list[Any],
        pairs: list[Any] | None = None,
        *,
        max_length: int,
        truncation: bool | str = True,
        stride: int = 0,
        overflowing: bool = False,
        words: bool = False,
    ) -> tuple[list[Any], list[int]]:
        """`tokenizers.Encoding`s of `texts` (with their `pairs`) as a fast tokenizer call with `truncation`,
        `max_length`, `stride`, `return_overflowing_tokens=overflowing` and no padding gives them (its
        `BatchEncoding.encodings`), and each one's text index."""
        strategy = "longest_first" if truncation is True else str(getattr(truncation, "value", truncation))
        self._tokenizer.enable_truncation(max_length, stride=stride, strategy=strategy, direction=self.truncation_side)
        self._tokenizer.no_padding()
        batch = texts if pairs is None else list(zip(texts, pairs))
        encodings = self._tokenizer.encode_batch(batch, is_pretokenized=words, add_special_tokens=True)
        if not overflowing:
            return encodings, list(range(len(encodings)))
        windows, mapping = [], []
        for index, encoding in enumerate(encodings):  # as transformers: each text's overflowing windows after it
            for window in [encoding, *encoding.overflowing]:
                windows.append(window)
                mapping.append(index)
        return windows, mapping


# ---------------------------------------------------------------------------- the predictor
class OnnxModel:
    """An export folder's ONNX Runtime session with its config: what `OnnxPredictor` (and the postprocessors,
    through `predictor.model.config`) read of a model."""

    def __init__(self, config: RuntimeConfig, session: Any, file: str, described: dict[str, Any]):
        self.config = config
        self.session = session
        self.file = file
        self.described = described
        self.name_or_path = config.name_or_path
        self.input_names = [i.name for i in session.get_inputs()]

    def token_level(self, task_name: str) -> bool:
        """Whether a head predicts per token: as recorded by the export, else as its kind's postprocessor says
        (token-classification's and its subclasses')."""
        recorded = self.described.get("token_level")
        if recorded is not None:
            return task_name in recorded
        task_type = self.config.get_task(task_name)["task_type"]
        return task_type == TOKEN_CLASSIFICATION or issubclass(
            postprocessor_class(task_type, task_name), TokenClassificationPostprocessor
        )

    def __call__(self, batch: dict[str, np.ndarray], tasks: Sequence[str]) -> dict[str, np.ndarray]:
        return run_session(self.session, self.input_names, batch, tasks)


class OnnxPredictor(MultiTaskPredictorBase):
    """Every head of an ONNX export folder, run on ONNX Runtime without torch or transformers (module docstring).

    Args:
        export_dir: a folder written by `hf_mtl.export_onnx` / `hf-mtl export`.
        file: which of its ONNX files to run (default: the folder's, int8 when quantized).
        providers, session_options, intra_op_num_threads: for the ONNX Runtime session (CPU by default).
        **params: default call parameters (`tasks`, `top_k`, `aggregation_strategy`, `batch_size`, ...), as
            `pipeline("multitask", ...)` takes them at construction.

    Call it as the pipeline: `predictor(text_or_texts, **params)`.
    """

    def __init__(
        self,
        export_dir: str | os.PathLike,
        *,
        file: str | None = None,
        providers: Sequence[Any] | None = None,
        session_options: Any = None,
        intra_op_num_threads: int | None = None,
        **params: Any,
    ):
        path = os.fspath(export_dir)
        saved = read_export_config(path)
        if saved is None:
            raise ValueError(
                f"{path} is not an ONNX export folder (no config.json with an {ONNX_CONFIG_KEY!r} entry); "
                "write one with `hf-mtl export` or hf_mtl.export_onnx."
            )
        described = saved[ONNX_CONFIG_KEY]
        onnx_path = export_file(path, described, file)
        session = create_session(
            onnx_path, providers=providers, session_options=session_options, intra_op_num_threads=intra_op_num_threads
        )
        self.model = OnnxModel(RuntimeConfig(saved, path), session, onnx_path.name, described)
        self.tokenizer = RuntimeTokenizer.from_folder(path, described.get("tokenizer_inputs"))
        self._init_predictor()
        self._batch_size = params.pop("batch_size", None)
        self._preprocess_params, self._forward_params, self._postprocess_params = self._sanitize_parameters(**params)

    @property
    def config(self) -> RuntimeConfig:
        return self.model.config

    def __repr__(self) -> str:
        return f"OnnxPredictor({self.model.name_or_path!r}, file={self.model.file!r}, tasks={self.config.task_names})"

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
        return self.tokenizer.encode(
            texts, pairs, max_length=self.max_length, truncation=truncation, stride=stride, overflowing=overflowing, words=words
        )

    def _forward(self, batch: dict[str, np.ndarray], tasks: list[str] | None = None) -> dict[str, np.ndarray]:
        return self.model(batch, list(tasks) if tasks is not None else self.config.task_names)

    def _token_level(self, task_name: str) -> bool:
        return self.model.token_level(task_name)

    def _move_to(self, device: Any) -> None:
        if device in (-1, "cpu") or getattr(device, "type", None) == "cpu":
            return
        raise ValueError(
            f"OnnxPredictor runs on the ONNX Runtime session's providers; device={device!r} is not used here "
            "(pass providers=[...] when building it)."
        )


__all__ = ["OnnxModel", "OnnxPredictor", "RuntimeConfig", "RuntimeTokenizer", "create_session", "export_file", "run_session"]
