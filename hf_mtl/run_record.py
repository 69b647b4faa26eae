"""The trainer's record of a training run: the facts the model card shows that only training knows.

`MultiTaskTrainer.run_record` is created with the trainer and filled as it goes (data sizes, the batch
mix of its batch sampler, the sampling strategy, the loss balancer); the job layer (or a user) adds where
the data came from and the card settings. The card is built from this record, never by re-deriving them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunRecord:
    """Facts about a training run, for the model card.

    Attributes:
        train_sizes / eval_sizes: prepared rows per task.
        batch_shares: the share of training batches each task gets (from the batch sampler the trainer built).
        sampling: the sampling strategy's `describe()`: name, settings, a sentence for the card.
        loss_balancer: the loss balancer's `describe()`: name, settings, current per-task weights, a sentence.
        data_sources: per task, `description`, `dataset_id`, `dataset_config`, `dataset_split`.
        card_settings: the card's own settings (model name, license, ...), when given.
    """

    train_sizes: dict[str, int] = field(default_factory=dict)
    eval_sizes: dict[str, int] = field(default_factory=dict)
    batch_shares: dict[str, float] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    loss_balancer: dict[str, Any] = field(default_factory=dict)
    data_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    card_settings: Any = None


__all__ = ["RunRecord"]
