"""Checkpoints holding unmerged LoRA adapters: `merge_lora_checkpoint(src, out)` (what `hf-mtl merge` runs) writes
a plain checkpoint with the adapters merged into the encoder weights, the tokenizer copied along.

Only trainer checkpoints (`checkpoint-N`, which keep the adapters so that training can resume) and
`save_pretrained(dir, merge_lora=False)` hold unmerged adapters; the default save already merges them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .lora import has_unmerged_lora, parameter_counts


@dataclass
class MergeResult:
    """What `merge_lora_checkpoint` did: where it wrote, whether there were adapters, the LoRA settings."""

    out_dir: Path
    had_adapters: bool
    lora: dict | None
    parameters: int

    def summary(self) -> str:
        if not self.had_adapters:
            return f"No unmerged LoRA adapters: saved a copy to {self.out_dir} ({self.parameters:,} parameters)."
        settings = ", ".join(f"{k}={v}" for k, v in (self.lora or {}).items() if k != "merged")
        return f"Merged the LoRA adapters ({settings}) into the encoder: {self.out_dir} ({self.parameters:,} parameters)."


def merge_lora_checkpoint(src: str | os.PathLike, out: str | os.PathLike) -> MergeResult:
    """Load the multi-task checkpoint `src`, merge its LoRA adapters (if any) and save it, with its tokenizer
    when one loads from `src`, to `out` (which must not be `src`)."""
    from transformers import AutoTokenizer

    from .modeling_multitask import MultiTaskModel

    if Path(src).resolve() == Path(out).resolve():
        raise ValueError(f"merge writes a new folder: OUT must differ from CHECKPOINT ({src}).")
    model = MultiTaskModel.from_pretrained(os.fspath(src))
    had_adapters = has_unmerged_lora(model)
    model.merge_lora()
    model.save_pretrained(out)
    try:
        AutoTokenizer.from_pretrained(os.fspath(src)).save_pretrained(out)
    except (OSError, ValueError):  # a checkpoint saved without its tokenizer: nothing to copy
        pass
    return MergeResult(Path(out), had_adapters, model.config.lora, parameter_counts(model)["total"])


__all__ = ["MergeResult", "merge_lora_checkpoint"]
