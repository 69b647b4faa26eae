"""Push a multi-task model to the Hugging Face Hub: one loadable model folder per commit, with hf_mtl's card.

transformers' own pushes write a generic README.md, and `TrainingArguments(push_to_hub=True)` makes the
Trainer upload `output_dir` and each checkpoint with `upload_folder`: two commits per save, pickles
(`training_args.bin`, `optimizer.pt`, `rng_state.pth`, ...) and, between commits, a `config.json` whose
`auto_map` names modeling files not uploaded yet. Every hf_mtl push instead stages a complete model folder
(config, safetensors weights, the self-contained modeling code, tokenizer, our card, the training-curves
plot), checks that it loads, and sends it as a single `create_commit`; no file that can hold a pickle is
ever sent.

- `upload_model(model, repo_id, ...)`: the push of a model object (saved into a temporary folder).
- `push_model_to_hub`: installed as `MultiTaskModel.push_to_hub` by `import hf_mtl` (the modeling file
  itself stays free of hf_mtl imports, so saved checkpoints remain self-contained).
- `MultiTaskHubMixin`: `push_to_hub`, `create_model_card` and the pushes of `push_to_hub=True` training
  (every `hub_strategy`) for `MultiTaskTrainer`.
- `push_model_dir(path, repo_id)`: `hf-mtl push`, for a model folder written by training.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from transformers.trainer_utils import HubStrategy, SaveStrategy
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, logging
from transformers.utils.hub import PushInProgress

from .card import (
    CARD_FILENAME,
    card_info_from_model,
    card_info_from_trainer,
    is_hf_mtl_card,
    render_model_card,
    write_model_card,
)
from .encoders import load_tokenizer_for
from .plots import PLOT_FILENAME, plot_training_curves

logger = logging.get_logger(__name__)

#: suffixes of files that can hold pickles (unpickling can run code): no push uploads them
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
#: where `hub_strategy="checkpoint"` puts the latest checkpoint (transformers' name)
LAST_CHECKPOINT_DIR = "last-checkpoint"


def is_pickle_file(name: str | os.PathLike) -> bool:
    """Whether a file name has a suffix of a format that can hold pickles (never published)."""
    return os.fspath(name).lower().endswith(PICKLE_SUFFIXES)


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


def check_loadable(folder: str | os.PathLike) -> None:
    """ValueError unless `folder` holds a loadable model: `config.json`, every modeling file its `auto_map`
    names, and its safetensors weights (all shards of an index)."""
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise ValueError(f"{folder} is not a loadable model folder: it has no {CONFIG_NAME}.")
    auto_map = json.loads(config_path.read_text(encoding="utf-8")).get("auto_map") or {}
    missing = []
    for references in auto_map.values():
        for reference in references if isinstance(references, (list, tuple)) else [references]:
            # "module.Class"; "repo--module.Class" names code kept in another repository
            if reference and "--" not in reference:
                module = reference.rsplit(".", 1)[0].replace(".", "/") + ".py"
                if not (folder / module).is_file() and module not in missing:
                    missing.append(module)
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        missing += [shard for shard in shards if not (folder / shard).is_file()]
    elif not (folder / SAFE_WEIGHTS_NAME).is_file():
        missing.append(SAFE_WEIGHTS_NAME)
    if missing:
        raise ValueError(f"{folder} is not a loadable model folder: it lacks {missing}.")


def _commit_operations(folder: Path) -> list[CommitOperationAdd]:
    """One add per file under `folder` (paths relative to it); files that can hold pickles are left out."""
    return [
        CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not is_pickle_file(path.name)
    ]


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
    """Create `repo_id` if needed and upload the model in one commit (a folder checked to load, no pickles).

    Args:
        model: a `MultiTaskModel` (its `save_pretrained` writes config, weights and modeling code).
        tokenizer: saved alongside (it is what `pipeline("multitask", model=repo_id)` loads).
        card: README.md text; default: a card rendered from the model's config.
        plot: `training_curves.png` to include (the card embeds it by that name).
        extra_files: more files, `{path_in_repo: local_path}` (a pickle suffix is a ValueError).
        create_repo: create the repository first (off when the caller already did).
        api: an `HfApi`-like client (tests pass a recording fake).

    Returns:
        The `CommitInfo` of the commit.
    """
    _refuse_pickles(extra_files)
    api = _api(api)
    if create_repo:
        repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    if card is None:
        card = render_model_card(card_info_from_model(model, repo_id=repo_id))
    files = dict(extra_files or {})
    if plot is not None:
        files[PLOT_FILENAME] = plot
    with tempfile.TemporaryDirectory(prefix="hf_mtl_push_") as tmp:
        folder = Path(tmp)
        stage_model_folder(folder, model, tokenizer=tokenizer, card=card, files=files, max_shard_size=max_shard_size)
        return api.create_commit(
            repo_id=repo_id,
            operations=_commit_operations(folder),
            commit_message=commit_message or "Upload multi-task model with hf_mtl",
            commit_description=commit_description,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )


def _refuse_pickles(extra_files: Mapping[str, str | os.PathLike] | None) -> None:
    pickles = [path for path in (extra_files or {}) if is_pickle_file(path)]
    if pickles:
        raise ValueError(f"extra_files {pickles} can hold pickles (suffixes {PICKLE_SUFFIXES}); hf_mtl never uploads "
                         "those, since loading one can run code. Convert them to safetensors or JSON.")


def stage_model_folder(
    folder: Path,
    model: Any,
    *,
    tokenizer: Any = None,
    card: str,
    files: Mapping[str, str | os.PathLike] | None = None,
    max_shard_size: int | str | None = "50GB",
) -> None:
    """Write the folder of one model push: the model (config, weights, modeling code), its tokenizer, the card as
    README.md and `files` (`{path_in_repo: local_path}`); ValueError unless the result loads (`check_loadable`)."""
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    (folder / CARD_FILENAME).write_text(card, encoding="utf-8")
    for path_in_repo, local in (files or {}).items():
        target = folder / path_in_repo
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
    check_loadable(folder)


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
    if tokenizer is None:  # the pushed model must be usable with pipeline("multitask"): it needs one
        tokenizer = load_tokenizer_for(self)
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
    from .modeling_multitask import MultiTaskModel

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: not a saved model folder (no config.json).")
    model = MultiTaskModel.from_pretrained(folder)  # the folder's tokenizer, card and plot go with it
    return push_model_to_hub(
        model, repo_id, private=private, token=token, revision=revision, commit_message=commit_message, api=api,
    )


def stage_checkpoint(
    checkpoint: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    state_files: tuple[str, ...],
    subfolder: str | None = None,
) -> None:
    """Copy a Trainer checkpoint into the folder of one push.

    The root gets the checkpoint's model files (config, weights, modeling code, tokenizer), without its
    training-state files (`state_files`) or a README.md (the push writes its own card); `subfolder`, if given,
    gets the model files and the training-state files. Files that can hold pickles (`optimizer.pt`,
    `scheduler.pt`, `rng_state*.pth`, `training_args.bin`, ...) and sub-folders are never copied. Copies, not
    links: the Trainer may delete (`save_total_limit`) or rewrite the checkpoint while the upload runs.
    """
    checkpoint, folder = Path(checkpoint), Path(folder)
    files = [p for p in sorted(checkpoint.iterdir()) if p.is_file() and not is_pickle_file(p.name)]
    targets = [folder] + ([folder / subfolder] if subfolder else [])
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
    for path in files:
        if path.name == CARD_FILENAME:
            continue
        root_copy = None
        if path.name not in state_files:
            root_copy = shutil.copy2(path, folder / path.name)
        if subfolder:
            target = folder / subfolder / path.name
            try:  # the root's copy again: same bytes, one copy on disk
                os.link(root_copy, target) if root_copy is not None else shutil.copy2(path, target)
            except OSError:  # no hard links on this file system
                shutil.copy2(path, target)


def _log_push_failure(future: Future) -> None:
    error = future.exception()
    if error is not None:
        logger.error(f"hf_mtl: a checkpoint push to the Hub failed: {type(error).__name__}: {error}")


class MultiTaskHubMixin:
    """Hub integration for `MultiTaskTrainer` (inherit it before `transformers.Trainer`).

    `create_model_card` writes hf_mtl's card and `training_curves.png` into `args.output_dir`, and
    `push_to_hub` uploads model, tokenizer, card and plot in one commit. With `push_to_hub=True` in the
    training arguments, every save is pushed the same way (see `_push_from_checkpoint`), through
    `hub_api` too: transformers' own Hub calls (`init_hf_repo`, `_push_from_checkpoint`) are replaced.
    The card describes the run from `trainer.run_record` (fill its `data_sources` and `card_settings` for the
    card to name the data and carry a license, texts, ...).
    """

    #: the client used for pushes (None: `huggingface_hub.HfApi()`); tests set a recording fake
    hub_api: Any = None
    #: the pushes of `push_to_hub=True` training, one at a time on one background thread
    _hub_push_executor: ThreadPoolExecutor | None = None

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Create (or find) `args.hub_model_id`, or a repository named after `output_dir`, as transformers
        does, but through `hub_api`; sets `hub_model_id` to its full id. Main process only."""
        if not self.is_world_process_zero():  # type: ignore[attr-defined]
            return
        args = self.args  # type: ignore[attr-defined]
        repo_name = args.hub_model_id or Path(args.output_dir).absolute().name
        token = token if token is not None else args.hub_token
        private = private if private is not None else args.hub_private_repo
        self.hub_model_id = _api(self.hub_api).create_repo(repo_name, token=token, private=private, exist_ok=True).repo_id
        self.push_in_progress = None

    def create_model_card(self, repo_id: str | None = None, **kwargs: Any) -> Path | None:
        """Write the hf_mtl model card and training plot into `args.output_dir` (main process only).

        transformers' keyword arguments (`language`, `license`, `tags`, `dataset`, ...) are accepted; `tags`
        are added to the card's tags and `license`/`language` fill in what the recipe does not set.
        """
        if not self.is_world_process_zero():  # type: ignore[attr-defined]
            return None
        return self._write_model_card(Path(self.args.output_dir), repo_id=repo_id, **kwargs)  # type: ignore[attr-defined]

    def _write_model_card(self, folder: Path, repo_id: str | None = None, **kwargs: Any) -> Path:
        """The card (and `training_curves.png`, once something was logged) of the run so far, into `folder`."""
        plot = self.plot_training_curves(folder / PLOT_FILENAME)
        info = card_info_from_trainer(self, plot=PLOT_FILENAME if plot else None, repo_id=repo_id)
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
        return write_model_card(folder, info)

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
        Checkpoint pushes still uploading are waited for first, so this commit lands last. `blocking` is
        accepted for compatibility; the upload always completes before returning. `kwargs` go to
        `create_model_card`. Returns the `CommitInfo` (None on non-main processes).
        """
        args = self.args  # type: ignore[attr-defined]
        self.callback_handler.on_push_begin(args, self.state, self.control)  # type: ignore[attr-defined]
        token = token if token is not None else args.hub_token
        if getattr(self, "hub_model_id", None) is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)  # type: ignore[attr-defined]
        if not self.is_world_process_zero():  # type: ignore[attr-defined]
            return None
        self._finish_current_push()  # type: ignore[attr-defined]
        repo_id = self.hub_model_id
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
            api=_api(self.hub_api),
        )

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Push a checkpoint just saved, when `push_to_hub=True` (replaces transformers' two `upload_folder`s).

        One commit per save, in the background (training goes on while it uploads; like transformers, a save
        whose predecessor is still uploading is not pushed unless `hub_always_push=True`, which queues it).
        The commit holds the checkpoint's model folder at the repository root (config, safetensors weights,
        modeling code, tokenizer) with the card and plot of the run so far. `hub_strategy="checkpoint"` adds
        `last-checkpoint/`, `"all_checkpoints"` `checkpoint-<step>/`: the model files plus `trainer_state.json`
        and `multitask_state.json`, but not the optimizer, scheduler, scaler or RNG state, which are pickles:
        such a folder records the run and warm-starts one, it does not resume it exactly. A checkpoint that
        would not load (no safetensors weights, e.g. DeepSpeed without gathered weights) is skipped with a warning.
        """
        args = self.args  # type: ignore[attr-defined]
        if not self.is_world_process_zero() or args.hub_strategy == HubStrategy.END:  # type: ignore[attr-defined]
            return
        pending = getattr(self, "push_in_progress", None)
        if not args.hub_always_push and pending is not None and not pending.is_done():
            return
        self.callback_handler.on_push_begin(args, self.state, self.control)  # type: ignore[attr-defined]
        from transformers.trainer import TRAINER_STATE_NAME

        from .trainer import MULTITASK_STATE_NAME

        subfolder = {
            HubStrategy.CHECKPOINT: LAST_CHECKPOINT_DIR,
            HubStrategy.ALL_CHECKPOINTS: Path(checkpoint_folder).name,
        }.get(args.hub_strategy)
        staging = Path(tempfile.mkdtemp(prefix="hf_mtl_push_"))
        try:
            stage_checkpoint(checkpoint_folder, staging, state_files=(TRAINER_STATE_NAME, MULTITASK_STATE_NAME),
                             subfolder=subfolder)
            check_loadable(staging)
            self._write_model_card(staging, repo_id=self.hub_model_id)
        except ValueError as error:
            shutil.rmtree(staging, ignore_errors=True)
            logger.warning(f"Not pushing {checkpoint_folder} to the Hub: {error}")
            return
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if args.save_strategy == SaveStrategy.STEPS:
            message = f"Training in progress, step {self.state.global_step}"  # type: ignore[attr-defined]
        else:
            message = f"Training in progress, epoch {int(self.state.epoch)}"  # type: ignore[attr-defined]
        description = (
            f"The model at step {self.state.global_step} at the root"  # type: ignore[attr-defined]
            + (f"; {subfolder}/ holds its weights and training state (no optimizer, scheduler or RNG state: "
               "those are pickles, which hf_mtl never uploads)." if subfolder else ".")
        )
        if self._hub_push_executor is None:
            self._hub_push_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf_mtl_push")
        job = self._hub_push_executor.submit(self._commit_staged, staging, message, description)
        job.add_done_callback(_log_push_failure)
        if pending is None or pending.is_done():
            self.push_in_progress = PushInProgress([job])
        else:
            pending.jobs.append(job)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """transformers' loader, which silently starts a fresh optimizer and learning-rate schedule when the
        checkpoint has no `scheduler.pt`: say so, since a checkpoint pushed by hf_mtl (no pickles) has none."""
        from transformers.trainer import SCHEDULER_NAME

        if checkpoint is not None and not os.path.isfile(os.path.join(checkpoint, SCHEDULER_NAME)):
            logger.warning(
                f"{checkpoint} has no optimizer or scheduler state ({SCHEDULER_NAME}): the weights, step and "
                "batch order resume, but the optimizer and the learning-rate schedule start over. Checkpoints "
                "pushed to the Hub by hf_mtl hold no such state (it is pickled); resume from the local checkpoint "
                "to continue exactly."
            )
        super()._load_optimizer_and_scheduler(checkpoint)  # type: ignore[misc]

    def _commit_staged(self, staging: Path, message: str, description: str) -> Any:
        """Send a staged push folder as one commit, then delete it (runs on the push thread)."""
        args = self.args  # type: ignore[attr-defined]
        try:
            return _api(self.hub_api).create_commit(
                repo_id=self.hub_model_id,
                operations=_commit_operations(staging),
                commit_message=message,
                commit_description=description,
                token=args.hub_token,
                revision=args.hub_revision,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)


__all__ = [
    "LAST_CHECKPOINT_DIR",
    "MultiTaskHubMixin",
    "PICKLE_SUFFIXES",
    "check_loadable",
    "is_pickle_file",
    "push_model_dir",
    "push_model_to_hub",
    "retarget_card",
    "stage_checkpoint",
    "stage_model_folder",
    "upload_model",
]
