"""Push a multi-task model to the Hugging Face Hub in one commit, with hf_mtl's model card.

transformers' own `push_to_hub` writes a generic README.md (and the Trainer's uploads a folder that may
hold checkpoints); here the weights, config, self-contained modeling code, tokenizer, our card and the
training-curves plot are saved into a temporary folder and sent as a single `create_commit`, so the card
that lands is ours.

- `upload_model(model, repo_id, ...)`: the primitive every push goes through.
- `push_model_to_hub`: installed as `MultiTaskModel.push_to_hub` by `import hf_mtl` (the modeling file
  itself stays free of hf_mtl imports, so saved checkpoints remain self-contained).
- `MultiTaskHubMixin`: `push_to_hub` and `create_model_card` for `MultiTaskTrainer`.
- `push_model_dir(path, repo_id)`: `hf-mtl push`, for a model folder written by training.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard

from .card import (
    CARD_FILENAME,
    card_info_from_model,
    card_info_from_trainer,
    is_hf_mtl_card,
    render_model_card,
    write_model_card,
)
from .plots import PLOT_FILENAME, plot_training_curves

#: files of a saved model folder that are not part of a published model
_SKIP_FILES = ("training_args.bin",)


def _api(api: Any = None) -> Any:
    return api if api is not None else HfApi()


def retarget_card(card_text: str, repo_id: str) -> str:
    """Point the usage snippet of an hf_mtl card at `repo_id`.

    A card rendered before the repository was known uses the model name as the model id in its snippet;
    quoted occurrences of that name become `repo_id`.
    """
    try:
        card = ModelCard(card_text, ignore_metadata_errors=True)
    except Exception:
        return card_text
    name = getattr(card.data, "model_name", None)
    if not name or name == repo_id:
        return card_text
    return re.sub(rf'"{re.escape(name)}"', f'"{repo_id}"', card_text)


def _load_tokenizer_for(model: Any) -> Any:
    """The tokenizer saved with the model, or its base encoder's; ValueError when neither loads."""
    from transformers import AutoTokenizer

    from .recipe import resolve_encoder

    candidates = []
    name_or_path = str(getattr(model, "name_or_path", "") or "")
    if name_or_path and Path(name_or_path).is_dir():
        candidates.append(name_or_path)
    base = getattr(model.config, "base_model_name_or_path", None)
    if base:
        candidates.append(resolve_encoder(base))
    for candidate in candidates:
        try:
            return AutoTokenizer.from_pretrained(candidate)
        except Exception:
            continue
    raise ValueError(
        f"cannot find a tokenizer for the model (tried {candidates or 'nothing'}); pass tokenizer=<the encoder's "
        "tokenizer> so the pushed model can be used with pipeline('multitask')."
    )


def upload_model(
    model: Any,
    repo_id: str,
    *,
    tokenizer: Any = None,
    card: str | None = None,
    plot: str | os.PathLike | None = None,
    extra_files: Mapping[str, str | os.PathLike] | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "50GB",
    create_repo: bool = True,
    api: Any = None,
) -> Any:
    """Create `repo_id` if needed and upload the model in one commit.

    Args:
        model: a `MultiTaskModel` (its `save_pretrained` writes config, weights and modeling code).
        tokenizer: saved alongside (it is what `pipeline("multitask", model=repo_id)` loads).
        card: README.md text; default: a card rendered from the model's config.
        plot: `training_curves.png` to include (the card embeds it by that name).
        extra_files: more files, `{path_in_repo: local_path}`.
        create_repo: create the repository first (off when the caller already did).
        api: an `HfApi`-like client (tests pass a recording fake).

    Returns:
        The `CommitInfo` of the commit.
    """
    api = _api(api)
    if create_repo:
        repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    if card is None:
        card = render_model_card(card_info_from_model(model, repo_id=repo_id))
    with tempfile.TemporaryDirectory(prefix="hf_mtl_push_") as tmp:
        folder = Path(tmp)
        model.save_pretrained(folder, max_shard_size=max_shard_size)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        (folder / CARD_FILENAME).write_text(card, encoding="utf-8")
        files = dict(extra_files or {})
        if plot is not None:
            files[PLOT_FILENAME] = plot
        for path_in_repo, local in files.items():
            target = folder / path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
        operations = [
            CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name not in _SKIP_FILES
        ]
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message or "Upload multi-task model with hf_mtl",
            commit_description=commit_description,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )


def _card_from_folder(folder: str | os.PathLike | None, repo_id: str) -> tuple[str | None, Path | None]:
    """An hf_mtl card (retargeted to `repo_id`) and its plot from a model folder, if it has them."""
    if not folder or not Path(folder).is_dir():
        return None, None
    card_path = Path(folder) / CARD_FILENAME
    if not is_hf_mtl_card(card_path):
        return None, None
    plot = Path(folder) / PLOT_FILENAME
    return retarget_card(card_path.read_text(encoding="utf-8"), repo_id), plot if plot.is_file() else None


def push_model_to_hub(
    self: Any,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "50GB",
    tags: list[str] | None = None,
    tokenizer: Any = None,
    card: str | None = None,
    plot: str | os.PathLike | None = None,
    api: Any = None,
) -> Any:
    """Upload the model, its tokenizer, modeling code and hf_mtl model card to `repo_id` in one commit.

    The card is `card` if given; else the hf_mtl card (and `training_curves.png`) of the folder the model
    was loaded from, if any; else one rendered from the model's config. The tokenizer defaults to the one
    saved with the model or its base encoder's. Other arguments are those of transformers' `push_to_hub`.
    """
    if card is None:
        card, found_plot = _card_from_folder(getattr(self, "name_or_path", None), repo_id)
        plot = plot if plot is not None else found_plot
    if card is None:
        card = render_model_card(card_info_from_model(self, repo_id=repo_id))
    if tags:
        parsed = ModelCard(card, ignore_metadata_errors=True)
        parsed.data.tags = list(dict.fromkeys([*(parsed.data.tags or []), *tags]))
        card = str(parsed)
    if tokenizer is None:
        tokenizer = _load_tokenizer_for(self)
    return upload_model(
        self, repo_id, tokenizer=tokenizer, card=card, plot=plot, commit_message=commit_message,
        commit_description=commit_description, private=private, token=token, revision=revision,
        create_pr=create_pr, max_shard_size=max_shard_size, api=api,
    )


def push_model_dir(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    api: Any = None,
) -> Any:
    """Push a model folder written by `hf-mtl train` (model, tokenizer, card, plot) in one commit."""
    from transformers import AutoTokenizer

    from .modeling_multitask import MultiTaskModel

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: not a saved model folder (no config.json).")
    model = MultiTaskModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return push_model_to_hub(
        model, repo_id, private=private, token=token, revision=revision, commit_message=commit_message,
        tokenizer=tokenizer, api=api,
    )


class MultiTaskHubMixin:
    """Hub integration for `MultiTaskTrainer` (inherit it before `transformers.Trainer`).

    `create_model_card` writes hf_mtl's card and `training_curves.png` into `args.output_dir`, and
    `push_to_hub` uploads model, tokenizer, card and plot in one commit. Set `trainer.recipe` to the
    `Recipe` that configured the run for the card to describe the data sources.
    """

    recipe: Any = None
    #: the client used for pushes (None: `huggingface_hub.HfApi()`); tests set a recording fake
    hub_api: Any = None

    def create_model_card(self, repo_id: str | None = None, **kwargs: Any) -> Path | None:
        """Write the hf_mtl model card and training plot into `args.output_dir` (main process only).

        transformers' keyword arguments (`language`, `license`, `tags`, `dataset`, ...) are accepted; `tags`
        are added to the card's tags and `license`/`language` fill in what the recipe does not set.
        """
        if not self.is_world_process_zero():  # type: ignore[attr-defined]
            return None
        output_dir = Path(self.args.output_dir)  # type: ignore[attr-defined]
        plot = self.plot_training_curves(output_dir / PLOT_FILENAME)
        info = card_info_from_trainer(self, recipe=self.recipe, plot=PLOT_FILENAME if plot else None,
                                      repo_id=repo_id)
        tags = kwargs.get("tags")
        if tags:
            info.tags = [*info.tags, *([tags] if isinstance(tags, str) else tags)]
        if kwargs.get("license") and not info.license:
            info.license = kwargs["license"]
        if kwargs.get("language") and not info.language:
            language = kwargs["language"]
            info.language = [language] if isinstance(language, str) else list(language)
        if kwargs.get("model_name"):
            info.model_name = kwargs["model_name"]
        return write_model_card(output_dir, info)

    def plot_training_curves(self, path: str | os.PathLike) -> Path | None:
        """Save `training_curves.png` from the log history; None when nothing was logged yet."""
        history = self.state.log_history  # type: ignore[attr-defined]
        if not any("loss" in entry or "eval_average" in entry for entry in history):
            return None
        metrics = {t.name: t.main_metric for t in self.tasks}  # type: ignore[attr-defined]
        return plot_training_curves(history, metrics, path)

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Upload the model, tokenizer, hf_mtl card and training plot to `args.hub_model_id` in one commit.

        The model is also saved to `args.output_dir` (with the card and plot), as transformers does.
        `blocking` is accepted for compatibility; the upload always completes before returning.
        `kwargs` go to `create_model_card`. Returns the `CommitInfo` (None on non-main processes).
        """
        args = self.args  # type: ignore[attr-defined]
        self.callback_handler.on_push_begin(args, self.state, self.control)  # type: ignore[attr-defined]
        self.save_model(_internal_call=True)  # type: ignore[attr-defined]
        if not self.is_world_process_zero():  # type: ignore[attr-defined]
            return None
        api = _api(self.hub_api)
        token = token if token is not None else args.hub_token
        repo_name = args.hub_model_id or Path(args.output_dir).absolute().name
        private = private if private is not None else args.hub_private_repo
        repo_id = api.create_repo(repo_name, token=token, private=private, exist_ok=True).repo_id
        card_path = self.create_model_card(repo_id=repo_id, **kwargs)
        plot = Path(args.output_dir) / PLOT_FILENAME
        model = self.accelerator.unwrap_model(self.model)  # type: ignore[attr-defined]
        return upload_model(
            model,
            repo_id,
            tokenizer=self.processing_class,  # type: ignore[attr-defined]
            card=card_path.read_text(encoding="utf-8") if card_path else None,
            plot=plot if plot.is_file() else None,
            commit_message=commit_message,
            token=token,
            revision=revision if revision is not None else args.hub_revision,
            create_repo=False,
            api=api,
        )


__all__ = [
    "MultiTaskHubMixin",
    "push_model_dir",
    "push_model_to_hub",
    "retarget_card",
    "upload_model",
]
