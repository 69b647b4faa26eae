"""hf_mtl: multi-task fine-tuning of Hugging Face encoders with named heads.

`import hf_mtl` registers the model with transformers' auto classes, so `AutoConfig`/`AutoModel`
load hf_mtl checkpoints without `trust_remote_code`, and saved checkpoints carry the (self-contained)
modeling code for environments without hf_mtl.
"""

from transformers import AutoConfig, AutoModel

from .annotate import annotate_dataset
from .balancers import LossBalancer, StaticWeights, register_loss_balancer
from .balancers_adaptive import FAMO, DynamicWeightAverage, UncertaintyWeighting
from .collator import MultiTaskDataCollator
from .configuration_multitask import MultiTaskConfig
from .distillation import DistillationConfig
from .evaluation import MultiTaskPredictionOutput
from .export import export_onnx
from .lora_checkpoint import merge_lora_checkpoint
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

__version__ = "0.1.0"

AutoConfig.register(MultiTaskConfig.model_type, MultiTaskConfig, exist_ok=True)
AutoModel.register(MultiTaskConfig, MultiTaskModel, exist_ok=True)
# Saved checkpoints get an `auto_map` and a copy of the model's code (and of the pipeline's: MultiTaskPreTrainedModel.save_pretrained).
MultiTaskConfig.register_for_auto_class()
MultiTaskModel.register_for_auto_class("AutoModel")
# One-commit Hub push with hf_mtl's model card, installed here so modeling_multitask.py stays self-contained.
from .hub import push_model_to_hub as _push_model_to_hub  # noqa: E402

MultiTaskModel.push_to_hub = _push_model_to_hub
# `pipeline("multitask", model=<ONNX export folder>)` runs it on ONNX Runtime (onnxruntime is imported on load).
from .onnx_backend import OnnxMultiTaskModel  # noqa: E402
from .pipeline import MODEL_BACKENDS as _MODEL_BACKENDS  # noqa: E402

if OnnxMultiTaskModel not in _MODEL_BACKENDS:
    _MODEL_BACKENDS.append(OnnxMultiTaskModel)
# `transformers.pipeline("multitask", ...)` and the single-task views of `MultiTaskModel.task_view`.
register_pipeline()

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
