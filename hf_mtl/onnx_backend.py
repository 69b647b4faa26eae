"""`OnnxMultiTaskModel`: an `hf_mtl.export_onnx` folder run on ONNX Runtime behind the model interface that
`MultiTaskPipeline` calls, so that `pipeline("multitask", model=<export folder>)` and `hf-mtl predict <export
folder>` run the pipeline's own pre- and postprocessing around an ONNX Runtime session.

The pipeline uses of a model only: `config` (tasks, label maps, encoder limits), `heads[name].token_level`,
`name_or_path` (where the tokenizer is), `eval()`/`train()`, `to(device)` and one call per batch,
`model(input_ids=..., attention_mask=..., token_type_ids=..., tasks=[...])` returning `.logits[name]`. This class
gives exactly that: a call feeds the graph's inputs (zeros for `token_type_ids` when the tokenizer gives none,
as the encoder's default) and asks the session for the requested heads' outputs only (`hf_mtl.runtime.run_session`,
which the torch-free `hf_mtl.runtime.OnnxPredictor` calls too).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from transformers import PreTrainedModel

from .configuration_multitask import MultiTaskConfig
from .export import ONNX_CONFIG_KEY, read_export_config
from .heads_multitask import head_class
from .runtime import create_session, export_file, run_session


class OnnxMultiTaskModel(PreTrainedModel):
    """The heads of an ONNX export, computed by ONNX Runtime (module docstring). Load it with `from_pretrained`."""

    config_class = MultiTaskConfig
    base_model_prefix = "onnx"
    main_input_name = "input_ids"
    #: the pipelines serving a model record themselves on it, for a later save to write their code into the
    #: checkpoint (`saved_pipelines` of hf_mtl's models); an export folder is not saved with code, so unused here
    saved_pipelines: ClassVar[dict[str, type]] = {}

    def __init__(self, config: MultiTaskConfig, session: Any = None, file: str | None = None) -> None:
        super().__init__(config)
        self.session = session
        self.file = file
        self.input_names = [i.name for i in session.get_inputs()] if session is not None else []
        #: what the pipeline reads of each head: its kind's class (`token_level`)
        self.heads = {t["name"]: head_class(t["task_type"], t["name"]) for t in config.tasks}

    @classmethod
    def serves(cls, path: Any) -> bool:
        """Whether `path` is an ONNX export folder (the pipeline then loads it with this class)."""
        return isinstance(path, (str, os.PathLike)) and read_export_config(path) is not None

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *args: Any,
        file: str | None = None,
        providers: Sequence[Any] | None = None,
        session_options: Any = None,
        intra_op_num_threads: int | None = None,
        **ignored: Any,  # the PyTorch loading options transformers' pipeline() passes (dtype, revision, ...)
    ) -> OnnxMultiTaskModel:
        """Load an export folder: `file` picks one of its ONNX files (default: the folder's, int8 when quantized)."""
        path = os.fspath(pretrained_model_name_or_path)
        described = read_export_config(path)
        if described is None:
            # a ValueError, so that pipeline() moves on to the PyTorch classes for an ordinary checkpoint
            raise ValueError(f"{path} is not an ONNX export folder (no config.json with an {ONNX_CONFIG_KEY!r} entry).")
        config = MultiTaskConfig.from_pretrained(path)
        onnx_path = export_file(path, described[ONNX_CONFIG_KEY], file)
        session = create_session(
            onnx_path, providers=providers, session_options=session_options, intra_op_num_threads=intra_op_num_threads
        )
        model = cls(config, session=session, file=onnx_path.name)
        model.name_or_path = path
        model.config.name_or_path = path
        return model

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def to(self, *args: Any, **kwargs: Any) -> OnnxMultiTaskModel:  # type: ignore[override]
        device = kwargs.get("device", args[0] if args else None)
        if device is not None and not isinstance(device, torch.dtype) and torch.device(device).type != "cpu":
            raise ValueError(
                f"{self.name_or_path} runs on ONNX Runtime's CPU provider; device={device!r} is not available here "
                "(load it with OnnxMultiTaskModel.from_pretrained(..., providers=[...]) for other execution providers)."
            )
        return self

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        tasks: list[str] | None = None,
    ) -> SimpleNamespace:
        """One session run for a padded batch; `.logits[name]` (float32 tensors sharing the session's arrays)."""
        names = list(tasks) if tasks is not None else self.config.task_names
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        batch = {k: v.cpu().numpy() for k, v in given.items() if v is not None}
        outputs = run_session(self.session, self.input_names, batch, names)
        return SimpleNamespace(logits={n: torch.from_numpy(o) for n, o in outputs.items()})


__all__ = ["OnnxMultiTaskModel", "create_session", "export_file"]
