"""hf_mtl: multi-task fine-tuning of Hugging Face encoders with named heads."""

from .configuration_multitask import MultiTaskConfig
from .modeling_multitask import MultiTaskModel, MultiTaskModelOutput, TaskModelOutput

__version__ = "0.1.0"
