"""Adaptive loss balancers: task weights that are learned or follow the task losses during training.

- `UncertaintyWeighting` (`"uncertainty"`, Kendall et al. 2018): a learned log-variance per task.
- `DynamicWeightAverage` (`"dwa"`, Liu et al. 2019): weights from how fast each task's loss falls.
- `FAMO` (`"famo"`, Liu et al. 2023): weights that favour the task whose log-loss improves least, from
  learned logits updated once per optimizer step (needs `all_tasks_per_step=True`).

All keep their state in parameters and buffers (checkpointed as safetensors, restored on resume), and the
ones that follow the losses update it in `end_step`, from per-task losses summed over processes, so every
process weighs the same. Their weights are logged as `<task>_loss_weight` and their `description()` states
the settings and the weights at the time (at the end of training: the final weights, for the model card).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .balancers import LossBalancer, register_loss_balancer


def _weights_text(names: Sequence[str], weights: torch.Tensor) -> str:
    return ", ".join(f"{name} {w:.3g}" for name, w in zip(names, weights.tolist()))


class UncertaintyWeighting(LossBalancer):
    """`"uncertainty"`: homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, 2018).

    One learned log-variance s_t per task; a batch of task t contributes `exp(-s_t) * L_t + s_t`. This is
    the common simplified form (no 1/2 factors: the classification form of the paper, also used for every
    task by most implementations); s_t settles near log L_t, so a task's weight is about 1 / its loss.

    The s_t are a parameter group of the trainer's optimizer (no weight decay), their gradients averaged over
    processes like the model's. Works with single-task batches (a task's s_t moves on its batches only) and
    with `all_tasks_per_step`.

    Args:
        task_names: the model's tasks.
        init: initial s_t (0: every weight 1).
        lr: learning rate of the s_t (the trainer's schedule applies to it); None: the optimizer's. The default
            is larger than a fine-tuning learning rate, which would barely move them.
    """

    def __init__(self, task_names: Sequence[str], init: float = 0.0, lr: float | None = 0.01):
        super().__init__(task_names)
        if lr is not None and not lr > 0:
            raise ValueError(f"loss_balancer_kwargs['lr'] = {lr!r}; expected a number > 0 or None.")
        self.init, self.lr = float(init), (float(lr) if lr is not None else None)
        self.log_variance = torch.nn.Parameter(torch.full((len(self.task_names),), self.init))
        self._index = {name: i for i, name in enumerate(self.task_names)}

    def forward(self, task_losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for name, loss in task_losses.items():
            s = self.log_variance[self._index[name]]
            term = torch.exp(-s) * loss + s
            total = term if total is None else total + term
        if total is None:
            raise ValueError("UncertaintyWeighting got no task losses.")
        return total

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, torch.exp(-self.log_variance.detach()).tolist()))

    def param_groups(self) -> list[dict[str, Any]]:
        groups = super().param_groups()
        if self.lr is not None:
            for group in groups:
                group["lr"] = self.lr
        return groups

    def settings(self) -> dict[str, Any]:
        return {"init": self.init, "lr": self.lr}

    def description(self) -> str:
        weights = _weights_text(self.task_names, torch.exp(-self.log_variance.detach()))
        return (
            "Each task's loss L is weighted by learned uncertainty (`uncertainty`, Kendall et al. 2018): "
            f"exp(-s) * L + s, one s per task learned with the model (initial s {self.init:g}, learning rate "
            f"{self.lr if self.lr is not None else 'that of the model'}); weights exp(-s) at the time: {weights}."
        )


class _StepLosses(LossBalancer):
    """Base of the balancers that follow each task's loss: `forward` weighs each task's loss by the fixed
    weights of the current step (`weight` buffer) and records the (detached) losses; `end_step` sums them over
    processes and hands each task's mean loss of the step to `update(mean, seen)`."""

    def __init__(self, task_names: Sequence[str]):
        super().__init__(task_names)
        n = len(self.task_names)
        self._index = {name: i for i, name in enumerate(self.task_names)}
        self.register_buffer("weight", torch.ones(n))
        # losses of the current optimizer step on this process: [sum, count] per task (zero at checkpoints,
        # which are written after the step)
        self.register_buffer("step_losses", torch.zeros(n, 2))

    def forward(self, task_losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for name, loss in task_losses.items():
            index = self._index[name]
            if torch.is_grad_enabled():  # training passes only
                self.step_losses[index, 0] += loss.detach().float()
                self.step_losses[index, 1] += 1
            weight = self.weight[index]
            term = loss * weight.to(loss.dtype)
            total = term if total is None else total + term
        if total is None:
            raise ValueError(f"{type(self).__name__} got no task losses.")
        return total

    def end_step(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        totals = reduce(self.step_losses.clone())
        self.step_losses.zero_()
        seen = totals[:, 1] > 0
        mean = torch.where(seen, totals[:, 0] / totals[:, 1].clamp(min=1), torch.zeros_like(totals[:, 0]))
        with torch.no_grad():
            self.update(mean, seen)

    def update(self, mean: torch.Tensor, seen: torch.Tensor) -> None:
        """Update the state after an optimizer step from each task's mean loss in it (`seen`: tasks that had
        batches in it)."""
        raise NotImplementedError

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.weight.tolist()))


class DynamicWeightAverage(_StepLosses):
    """`"dwa"`: Dynamic Weight Average (Liu, Johns & Davison, 2019).

    Training is cut into windows of `window_steps` optimizer steps (the paper's windows are epochs). With
    L_t(k) task t's mean training loss over window k, the weights during window k+1 are
    `n * softmax_t(r_t / T)`, r_t = L_t(k) / L_t(k-1): a task whose loss falls more slowly gets more weight;
    they average 1. The first two windows use weights 1. A task without batches in a window keeps its
    previous mean. The default window is long enough for every task to get batches with single-task batches
    (with `all_tasks_per_step` each step has them all, and shorter windows work).

    Args:
        task_names: the model's tasks.
        temperature: T (> 0); large T approaches equal weights (the paper uses 2).
        window_steps: optimizer steps per window (>= 1).
    """

    def __init__(self, task_names: Sequence[str], temperature: float = 2.0, window_steps: int = 50):
        super().__init__(task_names)
        if not temperature > 0:
            raise ValueError(f"loss_balancer_kwargs['temperature'] = {temperature!r}; expected a number > 0.")
        if isinstance(window_steps, bool) or not isinstance(window_steps, int) or window_steps < 1:
            raise ValueError(f"loss_balancer_kwargs['window_steps'] = {window_steps!r}; expected an integer >= 1.")
        self.temperature, self.window_steps = float(temperature), int(window_steps)
        n = len(self.task_names)
        self.register_buffer("window_losses", torch.zeros(n, 2))  # this window's [sum, count] over processes
        self.register_buffer("previous_means", torch.full((2, n), float("nan")))  # windows k-1 and k
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def update(self, mean: torch.Tensor, seen: torch.Tensor) -> None:
        self.window_losses[:, 0] += torch.where(seen, mean, torch.zeros_like(mean))
        self.window_losses[:, 1] += seen.float()
        self.steps += 1
        if int(self.steps) % self.window_steps:
            return
        sums, counts = self.window_losses[:, 0], self.window_losses[:, 1]
        means = torch.where(counts > 0, sums / counts.clamp(min=1), self.previous_means[1])
        self.previous_means[0] = self.previous_means[1].clone()
        self.previous_means[1] = means
        self.window_losses.zero_()
        before, now = self.previous_means[0], self.previous_means[1]
        known = torch.isfinite(before) & torch.isfinite(now) & (before > 0)
        if not bool(known.any()):
            return
        ratio = torch.where(known, now / before.clamp(min=1e-12), torch.ones_like(now))
        self.weight.copy_(len(self.task_names) * torch.softmax(ratio / self.temperature, dim=0))

    def settings(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "window_steps": self.window_steps}

    def description(self) -> str:
        return (
            "Task losses are weighted by Dynamic Weight Average (`dwa`, Liu et al. 2019): every "
            f"{self.window_steps} optimizer steps each task's weight becomes n * softmax(r / T) with r the ratio of "
            f"its mean loss over the last two windows and T = {self.temperature:g}; weights at the time: "
            f"{_weights_text(self.task_names, self.weight)}."
        )


class FAMO(_StepLosses):
    """`"famo"`: Fast Adaptive Multitask Optimization (Liu, Liu, Jin, Stone & Liu, NeurIPS 2023), O(1) per step.

    Learned logits w give z = softmax(w). The update direction FAMO takes is the gradient of
    `sum_t z_t / c * log(L_t - min_t)`, c = sum_t z_t / (L_t - min_t), i.e. task t's loss gradient times
    `z_t / (c * (L_t - min_t))` (these weights sum to 1). Here each task's loss is scaled by n times that
    weight (weights average 1, as with static weights of 1, because the trainer averages the step's batches).
    After each optimizer step, the logits take one Adam step (learning rate `w_lr`, weight decay `gamma`)
    along `J_softmax(w)^T delta`, delta_t the fall in task t's log-loss.

    Adapted to single-task batches: every optimizer step must hold a batch of every task, so this balancer
    requires `all_tasks_per_step=True`. The reference measures delta on the same batch before and after the
    step (one extra forward pass); here delta_t is the fall between task t's mean loss in the previous step and
    in this one (different batches: noisier, no extra pass), and the weights used during a step come from the
    losses of the step before it (the first step weighs every task 1). All of it is summed over processes.

    Args:
        task_names: the model's tasks.
        gamma: weight decay of the logits (the reference's regularisation coefficient).
        w_lr: learning rate of the logits.
        min_losses: task name -> the lowest loss the task can reach (default 0).
    """

    EPS = 1e-8
    BETAS = (0.9, 0.999)

    def __init__(
        self,
        task_names: Sequence[str],
        gamma: float = 0.01,
        w_lr: float = 0.025,
        min_losses: Mapping[str, float] | None = None,
    ):
        super().__init__(task_names)
        for key, value in (("gamma", gamma), ("w_lr", w_lr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"loss_balancer_kwargs[{key!r}] = {value!r}; expected a number >= 0.")
        given = dict(min_losses or {})
        unknown = [k for k in given if k not in self.task_names]
        if unknown:
            raise KeyError(f"min_losses has key(s) {unknown} that are not tasks of the model; its tasks are {self.task_names}.")
        self.gamma, self.w_lr = float(gamma), float(w_lr)
        self.min_losses = {name: float(given.get(name, 0.0)) for name in self.task_names}
        n = len(self.task_names)
        self.register_buffer("logits", torch.zeros(n))
        self.register_buffer("exp_avg", torch.zeros(n))
        self.register_buffer("exp_avg_sq", torch.zeros(n))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("previous_losses", torch.full((n,), float("nan")))

    @classmethod
    def from_training_args(cls, task_names: Sequence[str], args: Any) -> FAMO:
        if not getattr(args, "all_tasks_per_step", False):
            raise ValueError(
                "loss_balancer='famo' needs every task's loss in every optimizer step, and batches hold one task "
                "each: set all_tasks_per_step=True (training arguments, or `all_tasks_per_step: true` in a recipe's "
                "training section) so that each step accumulates one batch of every task."
            )
        return super().from_training_args(task_names, args)

    def _shifted_log(self, losses: torch.Tensor) -> torch.Tensor:
        floor = torch.tensor([self.min_losses[n] for n in self.task_names], device=losses.device)
        return torch.log((losses - floor).clamp(min=0) + self.EPS)

    def update(self, mean: torch.Tensor, seen: torch.Tensor) -> None:
        current = torch.where(seen, mean, self.previous_losses)
        known = seen & torch.isfinite(self.previous_losses)
        if bool(known.any()):
            delta = torch.where(known, self._shifted_log(self.previous_losses) - self._shifted_log(current),
                                torch.zeros_like(current))
            z = torch.softmax(self.logits, dim=0)
            grad = z * (delta - (z * delta).sum()) + self.gamma * self.logits  # J_softmax^T delta, plus L2 (Adam)
            beta1, beta2 = self.BETAS
            self.adam_steps += 1
            step = int(self.adam_steps)
            self.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (self.exp_avg_sq / (1 - beta2**step)).sqrt() + self.EPS
            self.logits -= self.w_lr * (self.exp_avg / (1 - beta1**step)) / denom
        self.previous_losses.copy_(current)
        known = torch.isfinite(current)  # a task without training data has no loss: it keeps weight 1
        if bool(known.any()):
            z = torch.softmax(self.logits, dim=0)
            scaled = torch.where(known, z / torch.exp(self._shifted_log(current.nan_to_num(1.0))), torch.zeros_like(z))
            self.weight.copy_(torch.where(known, known.sum() * scaled / scaled.sum(), torch.ones_like(z)))

    def settings(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "w_lr": self.w_lr, "min_losses": dict(self.min_losses)}

    def description(self) -> str:
        return (
            "Task losses are weighted by FAMO (`famo`, Liu et al. 2023), one batch of every task per optimizer "
            f"step: learned logits (learning rate {self.w_lr:g}, weight decay {self.gamma:g}) favour the tasks "
            "whose log-loss falls least, each step; weights (n times FAMO's, averaging 1) at the time: "
            f"{_weights_text(self.task_names, self.weight)}; logits softmax: "
            f"{_weights_text(self.task_names, torch.softmax(self.logits, dim=0))}."
        )


register_loss_balancer("uncertainty", UncertaintyWeighting)
register_loss_balancer("dwa", DynamicWeightAverage)
register_loss_balancer("famo", FAMO)

__all__ = ["DynamicWeightAverage", "FAMO", "UncertaintyWeighting"]
