"""Loss balancing: how the task losses of a training batch become the loss that is backpropagated.

`MultiTaskTrainer` hands each training batch's task losses (the heads' own per-batch means) to a
`LossBalancer` and backpropagates what it returns. A balancer is a `torch.nn.Module`, so a learned one simply
has `nn.Parameter`s: the trainer adds them to the optimizer, averages their gradients over processes, saves
its parameters and buffers in every checkpoint (`loss_balancer.safetensors`, never a pickle) and restores them
on resume. Its `describe()` (name, settings, current per-task weights) goes to the checkpoint's JSON state and
the trainer's run record, for the model card; `log_values()` to the training logs.

Evaluation and prediction losses never go through the balancer: they are the heads' own.

Balancers are registered by name (`register_loss_balancer`); `MultiTaskTrainingArguments.loss_balancer`
picks one, `loss_balancer_kwargs` holds its settings. `"static"` (`StaticWeights`: each task's loss times
`task_weights[task]`) is the default.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .registry import Registry


class LossBalancer(torch.nn.Module, ABC):
    """Turns a training batch's task losses into the loss to backpropagate.

    A subclass implements `forward(task_losses)` and `current_weights()`, and optionally `settings()`
    (its constructor settings, JSON values), `description()` (a sentence for the model card),
    `log_values()` and `from_training_args()`. Learned state lives in parameters and buffers: they are what
    checkpoints save (as safetensors) and a resumed run restores.

    Args:
        task_names: the model's tasks, in order.
    """

    def __init__(self, task_names: Sequence[str]):
        super().__init__()
        self.task_names = list(task_names)

    @abstractmethod
    def forward(self, task_losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss to backpropagate, from the task losses of one training forward pass (task name -> the
        head's scalar loss; today one task per batch, and gradient accumulation calls it once per batch)."""

    @abstractmethod
    def current_weights(self) -> dict[str, float]:
        """The weight each task's loss currently gets (for logs and the model card)."""

    def settings(self) -> dict[str, Any]:
        """The balancer's settings (JSON values), as given to its constructor."""
        return {}

    def end_step(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Called by the trainer after every optimizer step, on every process (default: nothing). A balancer
        that adapts to the losses it saw (e.g. `"dwa"`, `"famo"`) updates its buffers here; `reduce(tensor)`
        sums a tensor over processes (the identity in a single-process run), so every process keeps the same
        state and a checkpoint (process 0's buffers) holds all of it."""

    def description(self) -> str:
        """One sentence for the model card saying how task losses are combined."""
        return f"Task losses are combined by the `{self.name}` loss balancer."

    def log_values(self) -> dict[str, float]:
        """Values added to every training log: by default each task's current weight as `<task>_loss_weight`."""
        return {f"{name}_loss_weight": round(weight, 6) for name, weight in self.current_weights().items()}

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer parameter groups of the balancer's trainable parameters (no weight decay; other
        settings, such as the learning rate and its schedule, are the optimizer's)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "weight_decay": 0.0}] if params else []

    def describe(self) -> dict[str, Any]:
        """For checkpoints, logs and the model card: name, settings, current per-task weights, a sentence."""
        return {
            "name": self.name,
            "settings": self.settings(),
            "weights": self.current_weights(),
            "description": self.description(),
        }

    @property
    def name(self) -> str:
        """The name the balancer is registered under (its import path `module:QualName` if unregistered)."""
        return _BALANCERS.name_of(type(self))

    @classmethod
    def from_training_args(cls, task_names: Sequence[str], args: Any) -> LossBalancer:
        """The balancer the training arguments ask for: `cls(task_names, **loss_balancer_kwargs)`.

        `task_weights` are the static balancer's; another balancer refuses weights other than 1 rather than
        ignore them (override this to use them)."""
        weighted = {k: v for k, v in (getattr(args, "task_weights", None) or {}).items() if v != 1.0}
        if weighted:
            raise ValueError(
                f"task_weights {weighted} are the weights of the 'static' loss balancer; "
                f"loss_balancer={_BALANCERS.name_of(cls)!r} does not use them. Leave task_weights out, or pass the "
                "balancer's own settings in loss_balancer_kwargs."
            )
        return cls(task_names, **dict(getattr(args, "loss_balancer_kwargs", None) or {}))


class StaticWeights(LossBalancer):
    """`"static"`: each task's loss times a fixed weight.

    Args:
        task_names: the model's tasks.
        task_weights: weight per task name (default 1.0; from `task_weights` in the training arguments).
    """

    def __init__(self, task_names: Sequence[str], task_weights: Mapping[str, float] | None = None):
        super().__init__(task_names)
        given = dict(task_weights or {})
        unknown = [k for k in given if k not in self.task_names]
        if unknown:
            raise KeyError(
                f"task_weights has key(s) {unknown} that are not tasks of the model; its tasks are {self.task_names}."
            )
        for name, weight in given.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
                raise ValueError(f"task_weights[{name!r}] = {weight!r}; expected a number >= 0.")
        self.weights = {name: float(given.get(name, 1.0)) for name in self.task_names}

    @classmethod
    def from_training_args(cls, task_names: Sequence[str], args: Any) -> StaticWeights:
        kwargs = {"task_weights": getattr(args, "task_weights", None), **(getattr(args, "loss_balancer_kwargs", None) or {})}
        return cls(task_names, **kwargs)

    def forward(self, task_losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for name, loss in task_losses.items():
            weight = self.weights[name]
            # a weight of 1 leaves the head's loss as it is (no multiplication, so not even a rounding step)
            term = loss * weight if weight != 1.0 else loss
            total = term if total is None else total + term
        if total is None:
            raise ValueError("StaticWeights got no task losses.")
        return total

    def current_weights(self) -> dict[str, float]:
        return dict(self.weights)

    def settings(self) -> dict[str, Any]:
        return {"task_weights": dict(self.weights)}

    def description(self) -> str:
        return "Each batch's loss is its task's loss times the task's loss weight."

    def log_values(self) -> dict[str, float]:
        return {}  # constant: the card shows them, every log line need not


# ---------------------------------------------------------------------------- registry
_BALANCERS: Registry[type[LossBalancer]] = Registry("loss balancer", LossBalancer, "register_loss_balancer")


def register_loss_balancer(name: str, cls: type[LossBalancer]) -> type[LossBalancer]:
    """Make a `LossBalancer` subclass available as `loss_balancer=name` (arguments, recipes); returns the class."""
    return _BALANCERS.register(name, cls)


def loss_balancer_class(value: str | type[LossBalancer], field: str = "loss_balancer") -> type[LossBalancer]:
    """The balancer class a name, import path `module:ClassName` or class stands for."""
    return _BALANCERS.resolve(value, field)


def loss_balancer_name(value: str | type[LossBalancer], field: str = "loss_balancer") -> str:
    """The name a balancer is recorded under in arguments, checkpoints and cards."""
    return _BALANCERS.name_of(loss_balancer_class(value, field))


def loss_balancers() -> list[str]:
    """The registered balancer names (built-ins first)."""
    return _BALANCERS.names()


register_loss_balancer("static", StaticWeights)

# the adaptive built-ins ("uncertainty", "dwa", "famo") register themselves; imported here so that every
# import of the registry sees them (the module is complete by now, so the circular import is harmless)
from . import balancers_adaptive  # noqa: E402,F401

__all__ = [
    "LossBalancer",
    "StaticWeights",
    "loss_balancer_class",
    "loss_balancer_name",
    "loss_balancers",
    "register_loss_balancer",
]
