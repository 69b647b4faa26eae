"""How hf_mtl registers itself with transformers without importing torch or transformers on `import hf_mtl`.

What `import hf_mtl` promises (and did eagerly, at the cost of importing torch and transformers, ~6 s on a busy
machine): `AutoConfig`/`AutoModel` load hf_mtl checkpoints without `trust_remote_code`, `pipeline("multitask")`
works (on PyTorch checkpoints and ONNX export folders), and `MultiTaskModel.push_to_hub` is hf_mtl's one-commit
push. Now `import hf_mtl` only installs hooks (`install()`), each of which does its part when the module it
concerns is imported, by whatever route and in whichever order:

- `transformers.models.auto.configuration_auto` imported (now or later): `"multitask"` is added to `AutoConfig`'s
  lazy table the way transformers lists its own model types (a model type -> class name, resolved from a module
  on first use). The first lookup (`AutoConfig`/`AutoModel.from_pretrained` of an hf_mtl checkpoint) imports
  hf_mtl's modeling and pipeline modules, which registers everything for real;
- `transformers.pipelines` imported: the `"multitask"` task is added as transformers registers its own tasks
  lazily, with `impl` a dotted path (`"hf_mtl.pipeline.MultiTaskPipeline"`, imported by `pipeline()` on use);
- `hf_mtl.modeling_multitask` imported: `MultiTaskConfig`/`MultiTaskModel` are registered with `AutoConfig`/
  `AutoModel` and for the auto classes of saved checkpoints, and `push_to_hub` is hf_mtl's;
- `hf_mtl.pipeline` imported: the ONNX Runtime backend joins `MODEL_BACKENDS` and `register_pipeline()` runs
  (which replaces the lazy task entry by the real one, updating it in place for a `pipeline()` call under way).

Touching any torch-side attribute of `hf_mtl` (`hf_mtl.MultiTaskModel`, ...) imports the pipeline module, hence all
of the above (`register_all`). The hooks run after a module has been executed, never in the middle of it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: `MultiTaskConfig.model_type` and `hf_mtl.pipeline.PIPELINE_TASK` (tests check they agree)
MODEL_TYPE = "hf_mtl"
PIPELINE_TASK = "multitask"
#: where transformers' `pipeline()` imports the pipeline class from, on first use
PIPELINE_IMPL = "hf_mtl.pipeline.MultiTaskPipeline"

_AFTER_IMPORT: dict[str, list[Callable[[ModuleType], None]]] = {}
#: the lazy `"multitask"` task entry, updated in place once the real one is registered
_lazy_task_entry: dict[str, Any] | None = None


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a module with pending callbacks, it asks the other finders for its spec and makes
    the spec's loader run the callbacks once the module has been executed."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _AFTER_IMPORT:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _run_callbacks(fullname, module)

        loader.exec_module = exec_module  # a file loader belongs to this one spec
        return spec


_FINDER = _AfterImportFinder()


def _run_callbacks(name: str, module: ModuleType) -> None:
    for callback in _AFTER_IMPORT.pop(name, []):
        try:
            callback(module)
        except Exception as err:  # a failed registration must not break the import of someone else's module
            warnings.warn(f"hf_mtl could not register itself on import of {name}: {err!r}", RuntimeWarning, stacklevel=2)


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Run `callback(module)` once module `name` has been imported: now if it already is, else after its import."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    _AFTER_IMPORT.setdefault(name, []).append(callback)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


# ---------------------------------------------------------------------------- transformers' lazy tables
class _LazyConfigModule:
    """Stands in `AutoConfig`'s table for the module holding `MultiTaskConfig`: the first lookup imports hf_mtl's
    pipeline (and with it the model), which registers everything for real."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        register_all()
        from . import configuration_multitask

        return getattr(configuration_multitask, name)


def _add_lazy_config(configuration_auto: ModuleType) -> None:
    mapping = configuration_auto.CONFIG_MAPPING
    if MODEL_TYPE in mapping:
        return
    mapping._mapping[MODEL_TYPE] = "MultiTaskConfig"
    mapping._modules[configuration_auto.model_type_to_module_name(MODEL_TYPE)] = _LazyConfigModule()


def _drop_lazy_config() -> None:
    configuration_auto = sys.modules.get("transformers.models.auto.configuration_auto")
    if configuration_auto is None:
        return
    mapping = configuration_auto.CONFIG_MAPPING
    module_name = configuration_auto.model_type_to_module_name(MODEL_TYPE)
    if isinstance(mapping._modules.get(module_name), _LazyConfigModule):
        # the registered class (`_extra_content`) answers from now on; the stand-in module stays, as a lookup under
        # way may still read it
        mapping._mapping.pop(MODEL_TYPE, None)


def _add_lazy_task(pipelines: ModuleType) -> None:
    global _lazy_task_entry
    registry = pipelines.PIPELINE_REGISTRY
    if PIPELINE_TASK in registry.supported_tasks:
        return
    auto_model = getattr(pipelines, "AutoModel", None)  # imported by transformers.pipelines when torch is there
    _lazy_task_entry = {"impl": PIPELINE_IMPL, "pt": (auto_model,) if auto_model is not None else (), "type": "text"}
    registry.supported_tasks[PIPELINE_TASK] = _lazy_task_entry


# ---------------------------------------------------------------------------- hf_mtl's own modules
def _push_to_hub(self: Any, *args: Any, **kwargs: Any) -> Any:
    """hf_mtl's one-commit push with its model card (`hf_mtl.hub.push_model_to_hub`; same arguments)."""
    from .hub import push_model_to_hub

    return push_model_to_hub(self, *args, **kwargs)


def _register_model(modeling: ModuleType) -> None:
    from transformers import AutoConfig, AutoModel

    config_class, model_class = modeling.MultiTaskConfig, modeling.MultiTaskModel
    _drop_lazy_config()
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    # Saved checkpoints get an `auto_map` and a copy of the model's code (and of the pipeline's:
    # MultiTaskPreTrainedModel.save_pretrained).
    config_class.register_for_auto_class()
    model_class.register_for_auto_class("AutoModel")
    # One-commit Hub push with hf_mtl's model card, installed here so modeling_multitask.py stays self-contained.
    model_class.push_to_hub = _push_to_hub


def _register_pipeline(pipeline: ModuleType) -> None:
    # `pipeline("multitask", model=<ONNX export folder>)` runs it on ONNX Runtime (onnxruntime is imported on load).
    from .onnx_backend import OnnxMultiTaskModel

    if OnnxMultiTaskModel not in pipeline.MODEL_BACKENDS:
        pipeline.MODEL_BACKENDS.append(OnnxMultiTaskModel)
    # `transformers.pipeline("multitask", ...)` and the single-task views of `MultiTaskModel.task_view`.
    from transformers.pipelines import PIPELINE_REGISTRY

    tasks = PIPELINE_REGISTRY.supported_tasks
    if _lazy_task_entry is not None and tasks.get(PIPELINE_TASK) is _lazy_task_entry:
        del tasks[PIPELINE_TASK]  # replaced, not overwritten (which transformers warns about)
    pipeline.register_pipeline()
    real = tasks.get(PIPELINE_TASK)
    if _lazy_task_entry is not None and real is not None and real is not _lazy_task_entry:
        # a pipeline() call under way holds the lazy entry: it reads the real model classes
        _lazy_task_entry.clear()
        _lazy_task_entry.update(real)


def install() -> None:
    """The hooks of `import hf_mtl` (module docstring); idempotent."""
    when_imported("transformers.models.auto.configuration_auto", _add_lazy_config)
    when_imported("transformers.pipelines", _add_lazy_task)
    when_imported("hf_mtl.modeling_multitask", _register_model)
    when_imported("hf_mtl.pipeline", _register_pipeline)


def register_all() -> None:
    """Everything `import hf_mtl` used to register eagerly, now (imports torch and transformers)."""
    importlib.import_module("hf_mtl.pipeline")  # imports the model's module too: both hooks run


__all__ = ["MODEL_TYPE", "PIPELINE_IMPL", "PIPELINE_TASK", "install", "register_all", "when_imported"]
