"""Shared helpers of the benchmark scripts: machine description, peak-memory sampling, tables, JSON."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the (monotone) peak
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine_info() -> dict[str, Any]:
    """Cores, GPU, library versions and the load on the machine when the run started."""
    import torch
    import transformers

    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average_at_start": load,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class PeakMemory:
    """Peak resident memory (and CUDA memory, on a GPU) above the level at entry, sampled every few ms.

    Resident memory is process-wide, so the figure includes whatever the measured code allocates
    (activations, tokenizer buffers, outputs); it is a side-by-side comparison, not an absolute footprint.
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak_bytes = 0
        self.cuda_peak_bytes = None

    def __enter__(self) -> "PeakMemory":
        import gc

        import torch

        gc.collect()
        self._cuda = torch.cuda.is_available()
        if self._cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_base = torch.cuda.memory_allocated()
        self._base = _rss_bytes()
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.peak_bytes = self._peak - self._base
        if self._cuda:
            import torch

            torch.cuda.synchronize()
            self.cuda_peak_bytes = torch.cuda.max_memory_allocated() - self._cuda_base

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """A Markdown table: columns are `(key, header, format)`; missing values print as '-'."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(columns))) + " |"
    lines = [head, rule]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append("-" if value is None else format(value, fmt) if fmt else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_line(name: str, value: float | None, target: float, higher_is_better: bool = True) -> dict[str, Any]:
    """One ratio against its target, with a met/not-met verdict."""
    met = None if value is None else (value >= target if higher_is_better else value <= target)
    return {"name": name, "value": value, "target": target, "met": met}


def targets_table(targets: list[dict[str, Any]]) -> str:
    rows = [
        {
            "name": t["name"],
            "value": None if t["value"] is None else f"{t['value']:.2f}x",
            "target": f">= {t['target']:.2f}x",
            "met": {True: "yes", False: "**no**", None: "-"}[t["met"]],
            "rounds": ", ".join(f"{x:.2f}" for x in t.get("per_round", [])) or None,
        }
        for t in targets
    ]
    return table(rows, [("name", "ratio", ""), ("value", "measured", ""), ("target", "target", ""), ("met", "met", ""),
                        ("rounds", "per round", "")])


def setup_run(threads: int | None = None) -> None:
    """Torch's thread count (when given) and quiet transformers/datasets logging and progress bars."""
    import datasets
    from transformers.utils import logging as hf_logging

    if threads:
        import torch

        torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def finish(name: str, payload: dict[str, Any], out: str | None = None) -> dict[str, Any]:
    """Add the closing load average, write the JSON and say where."""
    payload["load_average_at_end"] = load_average()
    print(f"\nwrote {write_json(name, payload, out)}")
    return payload


def write_json(name: str, payload: dict[str, Any], out: str | None = None) -> Path:
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
