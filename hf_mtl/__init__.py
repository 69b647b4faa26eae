"""hf_mtl: multi-task fine-tuning of Hugging Face encoders with named heads.

`import hf_mtl` is cheap: it imports neither torch nor transformers. Its public names are loaded on first use
(module `__getattr__`, as transformers does), and its registration with transformers happens as soon as it can
matter (`hf_mtl.registration`): `AutoConfig`/`AutoModel` load hf_mtl checkpoints without `trust_remote_code`,
`pipeline("multitask", ...)` works, and saved checkpoints carry the (self-contained) modeling code for
environments without hf_mtl. `hf_mtl.runtime.OnnxPredictor` runs ONNX exports without torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import registration as _registration

__version__ = "0.1.0"

#: public name -> the module defining it (imported on first access)
_LAZY_NAMES = {
    "annotate_dataset": "annotate",
    "merge_lora_checkpoint": "lora_checkpoint",
    "DistillationConfig": "distillation",
    "FAMO": "balancers_adaptive",
    "DynamicWeightAverage": "balancers_adaptive",
    "UncertaintyWeighting": "balancers_adaptive",
    "AnnealedBatchSampler": "sampling",
    "SearchSpace": "search",
    "apply_best_run": "search",
    "default_search_space": "search",
    "worst_task_objective": "search",
    "InvalidInputError": "pipeline",
    "LossBalancer": "balancers",
    "MultiTaskBatchSampler": "sampling",
    "MultiTaskConfig": "configuration_multitask",
    "MultiTaskDataCollator": "collator",
    "MultiTaskDataset": "sampling",
    "MultiTaskForSequenceClassification": "modeling_multitask",
    "MultiTaskForTokenClassification": "modeling_multitask",
    "MultiTaskModel": "modeling_multitask",
    "MultiTaskModelOutput": "modeling_multitask",
    "MultiTaskPipeline": "pipeline",
    "MultiTaskPredictionOutput": "evaluation",
    "MultiTaskTaskView": "modeling_multitask",
    "MultiTaskTrainer": "trainer",
    "MultiTaskTrainingArguments": "training_args",
    "SequenceClassificationTask": "tasks",
    "StaticWeights": "balancers",
    "Task": "tasks",
    "TaskModelOutput": "modeling_multitask",
    "TokenClassificationTask": "tasks",
    "WordLevelTask": "tasks",
    "compute_task_metrics": "metrics",
    "export_onnx": "export",
    "prepare_dataset": "preprocessing",
    "prepare_datasets": "preprocessing",
    "register_loss_balancer": "balancers",
    "register_pipeline": "pipeline",
    "register_sampling_strategy": "sampling",
    "register_task_kind": "tasks",
    "task_from_config": "tasks",
    "tasks_from_config": "tasks",
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the eager imports
    from .annotate import annotate_dataset
    from .balancers import LossBalancer, StaticWeights, register_loss_balancer
    from .balancers_adaptive import FAMO, DynamicWeightAverage, UncertaintyWeighting
    from .collator import MultiTaskDataCollator
    from .configuration_multitask import MultiTaskConfig
    from .distillation import DistillationConfig
    from .evaluation import MultiTaskPredictionOutput
    from .lora_checkpoint import merge_lora_checkpoint
    from .export import export_onnx
    from .metrics import compute_task_metrics
    from .modeling_multitask import (
        MultiTaskForSequenceClassification,
        MultiTaskForTokenClassification,
        MultiTaskModel,
        MultiTaskModelOutput,
        MultiTaskTaskView,
        TaskModelOutput,
    )
    from .pipeline import InvalidInputError, MultiTaskPipeline, register_pipeline
    from .preprocessing import prepare_dataset, prepare_datasets
    from .sampling import AnnealedBatchSampler, MultiTaskBatchSampler, MultiTaskDataset, register_sampling_strategy
    from .search import SearchSpace, apply_best_run, default_search_space, worst_task_objective
    from .tasks import (
        SequenceClassificationTask,
        Task,
        TokenClassificationTask,
        WordLevelTask,
        register_task_kind,
        task_from_config,
        tasks_from_config,
    )
    from .trainer import MultiTaskTrainer
    from .training_args import MultiTaskTrainingArguments


def __getattr__(name: str) -> Any:
    """A public name, imported on first access; the first one also registers hf_mtl with transformers."""
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        if name.isidentifier() and not name.startswith("__"):  # a submodule, as after the eager `import hf_mtl`
            try:
                return importlib.import_module(f".{name}", __name__)
            except ModuleNotFoundError as err:
                if err.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _registration.register_all()
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


_registration.install()

__all__ = [
    "DistillationConfig",
    "InvalidInputError",
    "LossBalancer",
    "MultiTaskBatchSampler",
    "MultiTaskConfig",
    "MultiTaskDataCollator",
    "MultiTaskDataset",
    "MultiTaskForSequenceClassification",
    "MultiTaskForTokenClassification",
    "MultiTaskModel",
    "MultiTaskModelOutput",
    "MultiTaskPipeline",
    "MultiTaskPredictionOutput",
    "MultiTaskTaskView",
    "MultiTaskTrainer",
    "MultiTaskTrainingArguments",
    "SequenceClassificationTask",
    "StaticWeights",
    "UncertaintyWeighting",
    "DynamicWeightAverage",
    "FAMO",
    "AnnealedBatchSampler",
    "Task",
    "SearchSpace",
    "TaskModelOutput",
    "TokenClassificationTask",
    "WordLevelTask",
    "annotate_dataset",
    "apply_best_run",
    "compute_task_metrics",
    "default_search_space",
    "export_onnx",
    "merge_lora_checkpoint",
    "prepare_dataset",
    "prepare_datasets",
    "register_loss_balancer",
    "register_sampling_strategy",
    "register_task_kind",
    "task_from_config",
    "tasks_from_config",
    "worst_task_objective",
]
