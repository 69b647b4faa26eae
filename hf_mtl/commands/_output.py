"""What the commands print: progress lines, metric tables and predictions (one place for all commands)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries the results)."""
    print(message, file=sys.stderr, flush=True)


def format_metrics(metrics: Mapping[str, float], tasks: Sequence[Any], split: str, prefix: str = "eval") -> str:
    """A small table of each task's metrics (main metric first) and the average; `tasks` are task specs."""
    lines = [f"Evaluation on {split}:"]
    width = max(len(task.name) for task in tasks)
    for task in tasks:
        task_prefix = f"{prefix}_{task.name}_"
        found = {
            key[len(task_prefix):]: value for key, value in metrics.items()
            if key.startswith(task_prefix) and not key.endswith(("_runtime", "_per_second", "_loss"))
        }
        if not found:
            continue
        main = task.main_metric
        ordered = [main] + sorted(k for k in found if k != main) if main in found else sorted(found)
        lines.append(f"  {task.name:<{width}}  " + "  ".join(f"{k} {found[k]:.4f}" for k in ordered))
    if f"{prefix}_average" in metrics:
        lines.append(f"  {'average':<{width}}  {metrics[f'{prefix}_average']:.4f} (mean of the main metrics)")
    return "\n".join(lines)


def describe_result(result: Any) -> str:
    """One head's pipeline output in a few words: `label (score)`, a score, or the entities found."""
    if isinstance(result, dict) and "label" in result:
        return f"{result['label']} ({result['score']:.2f})"
    if isinstance(result, dict) and "score" in result:
        return f"{result['score']:.3f}"
    if isinstance(result, list) and all(isinstance(r, dict) and ("entity_group" in r or "entity" in r) for r in result):
        if not result:
            return "(no entities)"
        return ", ".join(f"{r['word']} [{r.get('entity_group', r.get('entity'))}]" for r in result)
    if isinstance(result, list):
        return ", ".join(describe_result(r) for r in result)
    return str(result)


def print_predictions(texts: Sequence[str], predictions: Sequence[Mapping[str, Any]], stream: TextIO | None = None) -> None:
    """Every head's prediction per text, under the heading `Predictions of the saved model:`."""
    out = stream or sys.stdout
    print("Predictions of the saved model:", file=out)
    for text, result in zip(texts, predictions):
        print(f"  {text}", file=out)
        for task_name, value in result.items():
            print(f"    {task_name}: {describe_result(value)}", file=out)


def print_training_result(recipe: Any, result: Any, stream: TextIO | None = None) -> None:
    """The end of `hf-mtl train`/`quickstart`: the evaluation table, where the model went, the predictions."""
    out = stream or sys.stdout
    if result.metrics:
        print(format_metrics(result.metrics, recipe.task_specs, "validation"), file=out)
    print(f"Saved the model, its card (README.md) and training_curves.png to {result.output_dir}", file=out)
    if result.predictions:
        print_predictions(recipe.predict, result.predictions, stream=out)


def format_trials(trials: Sequence[Any], task_names: Sequence[str], objective: str) -> str:
    """A table of search trials (`hf_mtl.search.TrialRow`): number, objective, each task's main score, the
    hyperparameters (`task_weight_<task>` shown as `w_<task>`)."""
    params = list(dict.fromkeys(key for trial in trials for key in trial.params))  # in the order they are drawn
    short = {key: "w_" + key[len("task_weight_"):] if key.startswith("task_weight_") else key for key in params}
    header = ["trial", objective, *task_names, *(short[k] for k in params)]

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    rows = [
        [str(t.number) + ("" if t.state == "COMPLETE" else f" ({t.state.lower()})"), cell(t.objective),
         *(cell(t.task_scores.get(name)) for name in task_names), *(cell(t.params.get(k)) for k in params)]
        for t in trials
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in [header, *rows])
