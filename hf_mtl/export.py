"""ONNX export of a multi-task model: one graph computing every (selected) head from one encoder pass.

    >>> from hf_mtl import export_onnx
    >>> result = export_onnx("path/to/trained/model", "path/to/export", quantize="int8")
    >>> result.validation["model.int8.onnx"]["ner"]["agreement"]
    0.998

The graph takes `input_ids` and `attention_mask` (plus `token_type_ids` where the encoder takes them), each
`(batch, sequence)` with both axes dynamic, and returns one flat output per head, `<task>_logits`, in the
config's task order: exactly the logits `MultiTaskModel.forward(tasks=...)` returns. It is exported with
`torch.onnx.export(..., dynamo=True)` (transformers 5 dropped the TorchScript tracing paths).

The export folder is self-describing, so that `pipeline("multitask", model=<folder>)` (which runs it on ONNX
Runtime, `hf_mtl.onnx_backend`) needs nothing else:

- `model.onnx` (float32) and, with `quantize="int8"`, `model.int8.onnx` (dynamic int8 weights from
  `onnxruntime.quantization.quantize_dynamic`), which then is the folder's default file; with `optimize=True`
  (BERT-style encoders) also `model.opt.onnx` (and `model.opt.int8.onnx`): the graph with ONNX Runtime's
  transformer fusions (one fused `Attention` per layer), the fastest files and then the default;
- the tokenizer (`tokenizer.json` among its files);
- `config.json`: the model's config restricted to the exported tasks (their label maps included), plus an
  `onnx_export` entry (files, inputs, outputs, maximum length, validation figures). The tasks and label maps
  are also in each ONNX file's metadata (`hf_mtl_tasks`);
- the model card (`README.md`, copied from the model folder or generated) with an "ONNX" section.

Every export is validated: PyTorch and ONNX Runtime run the same fixed inputs (a short text alone, texts of
many lengths padded into one batch, one as long as the model reads, text pairs). A float32 head whose logits
differ by more than `FP32_TOLERANCE` fails the export (`ExportValidationError`); for int8 the agreement of
predicted labels (tokens, for token heads) and the largest deviation are reported instead.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


#: `config.json` key of the export's description (read by the ONNX Runtime backends)
ONNX_CONFIG_KEY = "onnx_export"
#: ONNX metadata key holding the exported tasks (with their label maps), as JSON
METADATA_TASKS_KEY = "hf_mtl_tasks"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OPT_FILE = "model.opt.onnx"
OPT_INT8_FILE = "model.opt.int8.onnx"
#: largest absolute logit difference allowed between PyTorch and ONNX Runtime for a float32 export
FP32_TOLERANCE = 1e-4
QUANTIZATIONS = ("int8",)

#: the fixed inputs of export-time validation: short, many lengths padded together, and text pairs
VALIDATION_TEXTS = [
    "Great film!",
    "Apple opened a new store in Paris on Monday, and the crowds loved it.",
    "The central bank raised interest rates again, citing persistent inflation in services and housing.",
    "ok",
]
VALIDATION_PAIRS = [
    ("Who opened a store?", "Apple opened a new store in Paris."),
    ("Is it good?", "The acting is wonderful but the story drags on far too long in the second half."),
]
_LONG_SENTENCE = "Researchers in Geneva and Tokyo released open software for quantum chips on Tuesday. "


class ExportValidationError(ValueError):
    """A float32 export whose ONNX Runtime logits differ from PyTorch's beyond the tolerance."""


@dataclass
class ExportResult:
    """What `export_onnx` wrote and how its files compare with PyTorch on the validation inputs.

    `validation[file][task]` holds `max_abs_diff` and `agreement` (the share of predicted labels that match
    PyTorch's: per input for classification, per real token for token heads, within 1e-2 for regression).
    """

    out_dir: Path
    files: dict[str, int]  # file name -> size in bytes
    inputs: list[str]
    outputs: dict[str, str]  # task -> output name
    default_file: str
    validation: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"Exported {len(self.outputs)} head(s) to {self.out_dir} (inputs: {', '.join(self.inputs)})"]
        for name, size in self.files.items():
            marker = " (default)" if name == self.default_file else ""
            lines.append(f"  {name}{marker}: {size / 1e6:.1f} MB")
            for task, figures in self.validation.get(name, {}).items():
                lines.append(
                    f"    {task}: max |logit diff| {figures['max_abs_diff']:.2e}, "
                    f"label agreement {figures['agreement']:.4f}"
                )
        return "\n".join(lines)


def output_name(task_name: str) -> str:
    """The ONNX output holding a head's logits."""
    return f"{task_name}_logits"


# ---------------------------------------------------------------------------- torch side
def _load_model(model_or_dir: Any) -> Any:
    from .modeling_multitask import MultiTaskModel

    if isinstance(model_or_dir, (str, os.PathLike)):
        model = MultiTaskModel.from_pretrained(os.fspath(model_or_dir))
    else:
        model = model_or_dir
    from .configuration_multitask import MultiTaskConfig

    if getattr(getattr(model, "config", None), "model_type", None) != MultiTaskConfig.model_type or not hasattr(model, "heads"):
        raise TypeError(f"export_onnx needs a MultiTaskModel or the folder of one; got {type(model_or_dir).__name__}.")
    from .lora import has_unmerged_lora  # torch: this module is imported by the torch-free runtime

    if has_unmerged_lora(model):  # one plain encoder in the graph; the caller's model keeps its adapters
        model = (copy.deepcopy(model) if model is model_or_dir else model).merge_lora()
    return model


def _graph_module(model: Any, tasks: list[str], with_token_types: bool) -> Any:
    """The model as a module with positional tensor inputs and a flat tuple of logits (what the exporter takes)."""
    import torch

    class MultiTaskLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # noqa: ANN001
            output = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, tasks=tasks
            )
            return tuple(output.logits[name] for name in tasks)

    return MultiTaskLogits().eval()


def _export_graph(model: Any, tasks: list[str], input_names: list[str], path: Path, opset: int | None) -> None:
    import torch

    example = torch.tensor([[2, 7, 11, 13, 17, 19, 3], [2, 23, 29, 3, 0, 0, 0]], dtype=torch.long)
    mask = (example != 0).long()
    args: tuple = (example, mask)
    if "token_type_ids" in input_names:
        args = (*args, torch.zeros_like(example))
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic_shapes = {name: {0: batch, 1: sequence} for name in input_names}
    options: dict[str, Any] = {}
    if opset is not None:
        options["opset_version"] = int(opset)
    module = _graph_module(model, tasks, "token_type_ids" in input_names)
    registration_logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_logger.level
    registration_logger.setLevel(logging.ERROR)  # "torchvision is not installed" is noise for text models
    try:
        # the exporter prints its progress to stdout; a CLI's output should be its own summary
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                args,
                input_names=input_names,
                output_names=[output_name(t) for t in tasks],
                dynamic_shapes=dynamic_shapes,
                dynamo=True,
                verbose=False,
                **options,
            )
    finally:
        registration_logger.setLevel(level)
    program.save(str(path))


#: encoder model types -> the `onnxruntime.transformers.optimizer` model type whose fusions apply to them
ORT_OPTIMIZER_TYPES = {"bert": "bert", "roberta": "bert", "distilbert": "bert", "xlm-roberta": "bert", "electra": "bert"}


def _optimizer_type(encoder_config: Any) -> str:
    optimizer_type = ORT_OPTIMIZER_TYPES.get(encoder_config.model_type)
    if optimizer_type is None:
        raise ValueError(
            f"optimize=True knows the fusions of {sorted(ORT_OPTIMIZER_TYPES)} encoders, not {encoder_config.model_type!r}; "
            "export without optimize."
        )
    return optimizer_type


def _export_fused_graph(model: Any, tasks: list[str], input_names: list[str], path: Path, opset: int | None) -> dict[str, int]:
    """The graph in the form ONNX Runtime's transformer optimizer fuses (one `Attention` operator per layer,
    `EmbedLayerNormalization`, `SkipLayerNormalization`, `BiasGelu`), optimized and saved at `path`.

    The dynamo graph's `scaled_dot_product_attention` pattern is not one the optimizer recognises (measured:
    no Attention fused, 1.02x), so this graph is exported with the TorchScript exporter from the encoder's
    eager attention, the pattern the optimizer was written for. Returns the fused operators' counts.
    """
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    encoder_config = model.config.encoder
    optimizer_type = _optimizer_type(encoder_config)
    previous = model.encoder.config._attn_implementation
    model.encoder.set_attn_implementation("eager")
    try:
        example = torch.tensor([[101, 7, 11, 13, 17, 19, 102], [101, 23, 29, 102, 0, 0, 0]], dtype=torch.long)
        args: tuple = (example, (example != 0).long())
        if "token_type_ids" in input_names:
            args = (*args, torch.zeros_like(example))
        raw = path.with_suffix(".raw.onnx")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _graph_module(model, tasks, "token_type_ids" in input_names),
                args,
                str(raw),
                dynamo=False,
                input_names=input_names,
                output_names=[output_name(t) for t in tasks],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in input_names},
                opset_version=opset or 17,
            )
    finally:
        model.encoder.set_attn_implementation(previous)
    optimized = optimize_model(
        str(raw),
        model_type=optimizer_type,
        num_heads=encoder_config.num_attention_heads,
        hidden_size=encoder_config.hidden_size,
        opt_level=1,
    )
    raw.unlink()
    optimized.save_model_to_file(str(path))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def _validation_batches(tokenizer: Any, max_length: int) -> list[dict[str, np.ndarray]]:
    """Tokenized validation inputs: one short text alone, texts padded together (one as long as the model
    reads), text pairs padded together."""
    long_text = _LONG_SENTENCE * (max_length // 8 + 1)
    common = dict(truncation=True, max_length=max_length, padding=True, return_tensors="np")
    batches = [
        tokenizer([VALIDATION_TEXTS[0]], **common),
        tokenizer([*VALIDATION_TEXTS, long_text], **common),
        tokenizer([p[0] for p in VALIDATION_PAIRS], [p[1] for p in VALIDATION_PAIRS], **common),
    ]
    return [{k: np.asarray(v, dtype=np.int64) for k, v in batch.items()} for batch in batches]


def _feed(batch: dict[str, np.ndarray], input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The inputs a graph takes; `token_type_ids` are zeros when the tokenizer gives none (as the encoder's default)."""
    feed = {}
    for name in input_names:
        feed[name] = batch[name] if name in batch else np.zeros_like(batch["input_ids"])
    return feed


def _agreement(task: dict[str, Any], reference: np.ndarray, other: np.ndarray, mask: np.ndarray) -> float:
    """Share of predictions that `other` logits make as `reference` does."""
    problem = task.get("problem_type")
    if task["task_type"] == "token_classification":
        same = reference.argmax(-1) == other.argmax(-1)
        return float(same[mask.astype(bool)].mean())
    if problem == "regression":
        return float((np.abs(reference - other) <= 1e-2).all(axis=-1).mean())
    if problem == "multi_label_classification" or reference.shape[-1] == 1:
        return float(((reference > 0) == (other > 0)).all(axis=-1).mean())
    return float((reference.argmax(-1) == other.argmax(-1)).mean())


def _validate(
    model: Any, tasks: list[str], path: Path, batches: list[dict[str, np.ndarray]], input_names: list[str]
) -> dict[str, dict[str, float]]:
    """Per task, the largest absolute logit difference and the prediction agreement between PyTorch and ORT."""
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    figures: dict[str, dict[str, list]] = {name: {"diff": [], "same": [], "count": []} for name in tasks}
    for batch in batches:
        feed = _feed(batch, input_names)
        with torch.inference_mode():
            expected = model(**{k: torch.from_numpy(v) for k, v in feed.items()}, tasks=tasks).logits
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
        for name in tasks:
            reference = expected[name].float().numpy()
            other = got[output_name(name)]
            if reference.shape != other.shape:
                raise ExportValidationError(
                    f"{path.name}: head {name!r} gives logits of shape {other.shape} in ONNX Runtime but "
                    f"{reference.shape} in PyTorch for the same batch."
                )
            task = model.config.get_task(name)
            token_level = task["task_type"] == "token_classification"
            count = int(feed["attention_mask"].sum()) if token_level else len(reference)
            difference = np.abs(reference - other)
            if token_level:  # padding positions are never read (and some encoders, e.g. ModernBERT, differ there)
                difference = difference[feed["attention_mask"].astype(bool)]
            figures[name]["diff"].append(float(difference.max()))
            figures[name]["same"].append(_agreement(task, reference, other, feed["attention_mask"]) * count)
            figures[name]["count"].append(count)
    return {
        name: {
            "max_abs_diff": max(values["diff"]),
            "agreement": sum(values["same"]) / max(1, sum(values["count"])),
        }
        for name, values in figures.items()
    }


def _check_fp32(path: Path, figures: dict[str, dict[str, float]]) -> None:
    failures = {t: f["max_abs_diff"] for t, f in figures.items() if not f["max_abs_diff"] <= FP32_TOLERANCE}
    if failures:
        raise ExportValidationError(
            f"{path}: ONNX Runtime's logits differ from PyTorch's beyond {FP32_TOLERANCE} on the validation "
            f"inputs for head(s) {failures} (max absolute difference per head); the export is not usable as is."
        )


def _set_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(path))


def quantize_int8(source: Path, target: Path, *, per_channel: bool = True, keep_fp32: Sequence[str] = ()) -> None:
    """Dynamic int8 quantization of `source`'s weights (activations quantized at run time).

    `per_channel`: one scale per output channel instead of per tensor (the default of `export_onnx`: on a
    trained MiniLM-L6 checkpoint per-tensor scales cost 0.7-3.5 points per task, per-channel none; see
    benchmarks/RESULTS.md). `keep_fp32`: regular expressions searched in each node's PyTorch module path (the
    dynamo exporter's name scopes joined by "/", e.g. `.../model.encoder.encoder.layer.3.output.dense/linear_5`)
    and in its node name (the TorchScript graph's, e.g. `/model/encoder/encoder/layer.3/output/dense/MatMul`);
    the matching nodes stay in float32, for layers whose quantization costs accuracy.
    """
    import ast
    import re

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load(str(source))
    patterns = [re.compile(p) for p in keep_fp32]

    def module_path(node: Any) -> str:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                return "/".join(ast.literal_eval(prop.value))
        return ""

    excluded = [
        node.name
        for node in proto.graph.node
        if patterns and any(p.search(module_path(node)) or p.search(node.name) for p in patterns)
    ]
    # The dynamo exporter records intermediate shapes that ONNX's own shape inference (run by the quantizer)
    # contradicts on some graphs ("Inferred shape and existing shape differ"): let the quantizer infer them.
    del proto.graph.value_info[:]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a generic "consider pre-processing" advice on the root logger
    try:
        quantize_dynamic(
            proto,
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            nodes_to_exclude=excluded,
            # ORT's fused operators (com.microsoft Attention, SkipLayerNormalization) have no ONNX shape inference
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)


def _write_card(model: Any, source_dir: Path | None, out_dir: Path, result: ExportResult) -> None:
    from .card import CARD_FILENAME, card_info_from_model, render_model_card

    source_card = source_dir / CARD_FILENAME if source_dir is not None else None
    if source_card is not None and source_card.is_file():
        text = source_card.read_text(encoding="utf-8")
    else:
        text = render_model_card(card_info_from_model(model))
    rows = "\n".join(
        f"| `{name}` | {size / 1e6:.1f} MB | "
        + ", ".join(
            f"{task}: {figures['agreement']:.3f} (max diff {figures['max_abs_diff']:.1e})"
            for task, figures in result.validation.get(name, {}).items()
        )
        + " |"
        for name, size in result.files.items()
    )
    outputs = ", ".join(f"`{name}`" for name in result.outputs.values())
    section = f"""

## ONNX

This folder holds an ONNX export made with `hf-mtl export`: one graph computing every head from one encoder
pass. It has no PyTorch weights: the usage above that loads the model with PyTorch (`AutoModel`,
`trust_remote_code`, the built-in pipelines) applies to the checkpoint it was exported from, not to this folder. Inputs: {", ".join(f"`{n}`" for n in result.inputs)} (`(batch, sequence)`, int64); outputs, one per
head: {outputs}. The tasks and label maps are in `config.json` and in the ONNX metadata (`{METADATA_TASKS_KEY}`).

| file | size | agreement with PyTorch on the export's validation inputs |
| --- | ---: | --- |
{rows}

```python
from transformers import pipeline
import hf_mtl  # registers the "multitask" pipeline

predict = pipeline("multitask", model="{out_dir.name}")  # runs on ONNX Runtime (pip install "hf_mtl[onnx]")
predict("Apple opened a store in Paris")
```
"""
    (out_dir / CARD_FILENAME).write_text(text.rstrip() + section, encoding="utf-8")


def export_onnx(
    model_or_dir: Any,
    out_dir: str | os.PathLike,
    quantize: str | None = None,
    tasks: str | Iterable[str] | None = None,
    opset: int | None = None,
    *,
    tokenizer: Any = None,
    per_channel: bool = True,
    keep_fp32: Sequence[str] = (),
    optimize: bool = False,
) -> ExportResult:
    """Export a `MultiTaskModel` (or the folder of one) to ONNX in `out_dir` and validate it (module docstring).

    Args:
        quantize: `None` (float32 only) or `"int8"` (also write `model.int8.onnx`, the folder's default then).
        tasks: heads to export (names, or a comma-separated string); default all. The graph's outputs and the
            folder's `config.json` hold only these.
        opset: ONNX opset version (default: the exporter's).
        tokenizer: the tokenizer to save with the export (default: the model's, as the pipeline finds it).
        per_channel, keep_fp32: int8 choices, see `quantize_int8`.
        optimize: also write `model.opt.onnx`, the graph with ONNX Runtime's transformer fusions (fused attention;
            BERT-style encoders, see `_export_fused_graph`), validated like `model.onnx`, and with `quantize`
            its int8 version `model.opt.int8.onnx`; those become the folder's default files.

    Raises `ExportValidationError` when a float32 head differs from PyTorch by more than `FP32_TOLERANCE`.
    """
    import onnxruntime  # noqa: F401 - fail before the (slow) export when the [onnx] extra is missing

    from .encoders import load_tokenizer_for
    from .preprocessing import effective_max_length

    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize={quantize!r} is not supported; use one of {list(QUANTIZATIONS)} or None.")
    source_dir = Path(os.fspath(model_or_dir)) if isinstance(model_or_dir, (str, os.PathLike)) else None
    model = _load_model(model_or_dir)
    if optimize:
        _optimizer_type(model.config.encoder)  # refuse before the (slow) export
    was_training = model.training
    model.eval()
    wanted = model.config.select_tasks(tasks)
    names = [name for name in model.config.task_names if name in wanted]  # outputs follow the config's task order
    tokenizer = load_tokenizer_for(model, tokenizer)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"export_onnx needs a fast tokenizer (its tokenizer.json is what the export runs); got {type(tokenizer).__name__}.")
    max_length = effective_max_length(tokenizer, None, model.config)
    input_names = ["input_ids", "attention_mask"]
    if "token_type_ids" in model._encoder_kwargs:
        input_names.append("token_type_ids")

    out = Path(os.fspath(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    fp32_path = out / FP32_FILE
    try:
        _export_graph(model, names, input_names, fp32_path, opset)
        batches = _validation_batches(tokenizer, max_length)
        validation = {FP32_FILE: _validate(model, names, fp32_path, batches, input_names)}
        _check_fp32(fp32_path, validation[FP32_FILE])
        files = [FP32_FILE]
        fused: dict[str, int] = {}
        if optimize:
            fused = _export_fused_graph(model, names, input_names, out / OPT_FILE, opset)
            validation[OPT_FILE] = _validate(model, names, out / OPT_FILE, batches, input_names)
            _check_fp32(out / OPT_FILE, validation[OPT_FILE])
            files.append(OPT_FILE)
        if quantize == "int8":
            for source, target in ((fp32_path, INT8_FILE), *(((out / OPT_FILE, OPT_INT8_FILE),) if optimize else ())):
                quantize_int8(source, out / target, per_channel=per_channel, keep_fp32=keep_fp32)
                validation[target] = _validate(model, names, out / target, batches, input_names)
                files.append(target)
    finally:
        if was_training:
            model.train()

    task_entries = [copy.deepcopy(model.config.get_task(name)) for name in names]
    metadata = {METADATA_TASKS_KEY: json.dumps(task_entries, default=str), "hf_mtl_inputs": json.dumps(input_names)}
    for name in files:
        _set_metadata(out / name, metadata)
    result = ExportResult(
        out_dir=out,
        files={name: (out / name).stat().st_size for name in files},
        inputs=input_names,
        outputs={name: output_name(name) for name in names},
        default_file=files[-1],
        validation=validation,
    )

    tokenizer.save_pretrained(out)
    config = copy.deepcopy(model.config)
    config.tasks = task_entries
    config.save_pretrained(out)
    config_path = out / "config.json"
    saved = json.loads(config_path.read_text(encoding="utf-8"))
    # the checkpoint's own pipeline code (if a save registered one) loads PyTorch weights, which this folder has not
    saved.pop("custom_pipelines", None)
    saved[ONNX_CONFIG_KEY] = {
        "file": result.default_file,
        "files": {
            name: {"quantization": quantize if "int8" in name else None, "fused": fused if "opt" in name else None}
            for name in files
        },
        "inputs": input_names,
        # what the torch-free runtime (hf_mtl.runtime) cannot ask PyTorch or transformers: which heads predict per
        # token, and which inputs the tokenizer gives (a RoBERTa tokenizer gives no token_type_ids)
        "token_level": [name for name in names if model.heads[name].token_level],
        "tokenizer_inputs": list(tokenizer.model_input_names),
        "outputs": result.outputs,
        "max_length": max_length,
        "validation": validation,
        "per_channel": per_channel if quantize else None,
        "keep_fp32": list(keep_fp32) if quantize else None,
    }
    config_path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    # the folder runs on ONNX Runtime: PyTorch weights or modeling code copied by save_pretrained do not belong
    for stray in ("model.safetensors", "pytorch_model.bin"):
        if (out / stray).exists() and stray not in files:
            (out / stray).unlink()
    _write_card(model, source_dir, out, result)
    return result


def read_export_config(export_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The `config.json` of an ONNX export folder (a plain dict), or None when the folder is not one."""
    path = Path(os.fspath(export_dir)) / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return config if isinstance(config, dict) and ONNX_CONFIG_KEY in config else None


def is_onnx_export(path: Any) -> bool:
    """Whether `path` is a folder written by `export_onnx`."""
    return isinstance(path, (str, os.PathLike)) and read_export_config(path) is not None


__all__ = [
    "ExportResult",
    "ExportValidationError",
    "FP32_TOLERANCE",
    "ONNX_CONFIG_KEY",
    "export_onnx",
    "is_onnx_export",
    "output_name",
    "quantize_int8",
    "read_export_config",
]
