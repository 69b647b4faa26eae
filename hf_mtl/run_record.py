"""The record of a training run: the facts a model card shows that only training knows.

`MultiTaskTrainer` creates one as `trainer.run_record` and fills in what it sees (data sizes, the batch mix
of its sampler, the sampling strategy and loss balancer it uses); whoever configured the run (the job layer
from a recipe, or a user) adds where the data came from and the card's free-form settings. `hf_mtl.card`
renders the card from this record, the model and the training arguments; it never looks at a recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .card import CardSettings


@dataclass
class RunRecord:
    """What a training run records for its model card.

    Attributes:
        train_sizes, eval_sizes: task name -> number of prepared training / evaluation examples.
        batch_shares: task name -> expected share of training batches, as the trainer's batch sampler draws them.
        sampling: the sampling strategy's description: `{"name": "temperature", "temperature": 2.0, ...}`
            (the keys a strategy's settings have; `max_examples_per_task` when tasks are capped).
        loss_balancer: the loss balancer's description: `{"name": ..., "weights": {task: weight}, ...}`.
        data_sources: task name -> where its data came from, for the card's task table and `model-index`:
            `description` (one line naming the data), `dataset_id` (the Hub dataset read, if any),
            `dataset_config`, `dataset_split` (the split evaluated on, by its name in that dataset) and
            `copy_of` (the Hub dataset that local files are a copy of, listed among the card's datasets).
        distillation: the distillation settings (`hf_mtl.distillation.Distiller.describe`): `schedule`,
            `temperature`, `teacher_weight`, and per task its teacher's `source`, `head` and validation `scores`;
            empty without distillation.
        parameters: `{"trainable": n, "total": m}` parameter counts of the model as trained (with LoRA adapters,
            only the adapters and the heads are trainable; `hf_mtl.lora.parameter_counts`).
        card_settings: the card's free-form fields (`hf_mtl.card.CardSettings`: name, license, texts, ...).
    """

    train_sizes: dict[str, int] = field(default_factory=dict)
    eval_sizes: dict[str, int] = field(default_factory=dict)
    batch_shares: dict[str, float] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    loss_balancer: dict[str, Any] = field(default_factory=dict)
    data_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    distillation: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)
    card_settings: CardSettings | None = None


__all__ = ["RunRecord"]
