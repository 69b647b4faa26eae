"""`training_curves.png`: per-task training loss and per-task evaluation metric over steps, drawn from a
Trainer's `state.log_history`, so people can look at a picture instead of reading logs; plus each task's loss
weight when the loss balancer logged it (`<task>_loss_weight`: learned or adaptive balancers). A run that
distils from teachers also shows the gold-label weight λ (`distill_gold_weight`) on the loss plot's right axis."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .distillation import GOLD_WEIGHT_LOG_KEY

PLOT_FILENAME = "training_curves.png"

Curve = list[tuple[int, float]]


def extract_curves(
    log_history: Sequence[Mapping[str, Any]], main_metrics: Mapping[str, str]
) -> tuple[dict[str, Curve], dict[str, Curve]]:
    """Training-loss and eval-metric curves from `trainer.state.log_history`.

    Args:
        log_history: the Trainer's log entries (training logs carry `loss` and `<task>_loss`; eval logs
            carry `eval_<task>_<metric>`), each with `step`.
        main_metrics: task name -> its headline metric (`task.main_metric`).

    Returns:
        `(losses, metrics)`: `{"<task>" or "all tasks": [(step, loss), ...]}` and
        `{"<task> (<metric>)" or "average": [(step, value), ...]}`, keeping only series with points.
    """
    losses: dict[str, Curve] = {name: [] for name in main_metrics}
    losses["all tasks"] = []
    metrics: dict[str, Curve] = {f"{name} ({metric})": [] for name, metric in main_metrics.items()}
    metrics["average"] = []
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        if "loss" in entry:
            losses["all tasks"].append((step, float(entry["loss"])))
        for name, metric in main_metrics.items():
            if f"{name}_loss" in entry:
                losses[name].append((step, float(entry[f"{name}_loss"])))
            if f"eval_{name}_{metric}" in entry:
                metrics[f"{name} ({metric})"].append((step, float(entry[f"eval_{name}_{metric}"])))
        if "eval_average" in entry:
            metrics["average"].append((step, float(entry["eval_average"])))
    return {k: v for k, v in losses.items() if v}, {k: v for k, v in metrics.items() if v}


def extract_weights(log_history: Sequence[Mapping[str, Any]], task_names: Sequence[str]) -> dict[str, Curve]:
    """Each task's loss weight over steps (`<task>_loss_weight` in training logs), keeping tasks with points."""
    weights: dict[str, Curve] = {name: [] for name in task_names}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for name in task_names:
            if f"{name}_loss_weight" in entry:
                weights[name].append((step, float(entry[f"{name}_loss_weight"])))
    return {k: v for k, v in weights.items() if v}


def extract_gold_weight(log_history: Sequence[Mapping[str, Any]]) -> Curve:
    """`[(step, λ), ...]`: distillation's gold-label weight as logged (empty for a run without distillation)."""
    return [(e["step"], float(e[GOLD_WEIGHT_LOG_KEY])) for e in log_history if GOLD_WEIGHT_LOG_KEY in e and "step" in e]


def plot_training_curves(
    log_history: Sequence[Mapping[str, Any]],
    main_metrics: Mapping[str, str],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Draw the curves of `extract_curves` side by side (and those of `extract_weights` when there are any)
    and save them as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; a no-op when a backend is already chosen
    from matplotlib.figure import Figure  # Figure (not pyplot): no global state, safe in any thread

    losses, metrics = extract_curves(log_history, main_metrics)
    weights = extract_weights(log_history, list(main_metrics))
    figure = Figure(figsize=(16.5 if weights else 11, 4.2), dpi=110, layout="constrained")
    loss_ax, metric_ax, *weight_ax = figure.subplots(1, 3 if weights else 2)
    for name, points in losses.items():
        steps, values = zip(*points)
        style = {"linestyle": "--", "color": "0.4", "linewidth": 1.2} if name == "all tasks" else {"linewidth": 1.8}
        loss_ax.plot(steps, values, label=name, **style)
    loss_ax.set(title="Training loss per task", xlabel="step", ylabel="loss")
    gold_weight = extract_gold_weight(log_history)
    if gold_weight:
        gold_ax = loss_ax.twinx()
        steps, values = zip(*gold_weight)
        gold_ax.plot(steps, values, color="black", linestyle=":", linewidth=1.5, label="gold weight λ (distillation)")
        gold_ax.set(ylim=(-0.02, 1.02), ylabel="gold-label weight λ")
        gold_ax.legend(fontsize=8, loc="upper center")
    for name, points in metrics.items():
        steps, values = zip(*points)
        style = {"linestyle": "--", "color": "0.4"} if name == "average" else {}
        metric_ax.plot(steps, values, marker="o", markersize=4, label=name, **style)
    metric_ax.set(title="Evaluation metric per task", xlabel="step", ylabel="score")
    for ax in weight_ax:
        for name, points in weights.items():
            steps, values = zip(*points)
            ax.plot(steps, values, label=name, linewidth=1.8)
        ax.set(title="Loss weight per task", xlabel="step", ylabel="weight")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for ax, series in ((loss_ax, losses), (metric_ax, metrics)):
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data logged", ha="center", va="center", transform=ax.transAxes, color="0.5")
    if title:
        figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


__all__ = ["PLOT_FILENAME", "extract_curves", "extract_gold_weight", "extract_weights", "plot_training_curves"]
