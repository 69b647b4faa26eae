"""One-commit Hub pushes (model, trainer, `push_to_hub=True` training with every `hub_strategy`, `hf-mtl push`),
recorded with a fake `huggingface_hub` client; transformers' own Hub client is made to fail if used."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers.modelcard
import transformers.trainer
import transformers.utils.hub
from conftest import make_model, raw_datasets
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, TrainerCallback

import hf_mtl.hub
from hf_mtl import MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments
from hf_mtl.card import card_info_from_model, render_model_card
from hf_mtl.cli import main
from hf_mtl.hub import retarget_card

MODEL_FILES = {"config.json", "model.safetensors", "configuration_multitask.py", "modeling_multitask.py",
               "tokenizer.json", "tokenizer_config.json", "README.md"}


class FakeHfApi:
    """Records `create_repo` and `create_commit` calls (file contents are read at commit time)."""

    def __init__(self) -> None:
        self.repos: list[dict] = []
        self.commits: list[dict] = []

    def create_repo(self, repo_id, *, token=None, private=None, exist_ok=False, **kwargs):
        self.repos.append({"repo_id": repo_id, "private": private, "exist_ok": exist_ok, "token": token})
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}")

    def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        files = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
        self.commits.append({"repo_id": repo_id, "files": files, "message": commit_message, **kwargs})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123")

    def card(self, index: int = 0) -> ModelCard:
        return ModelCard(self.commits[index]["files"]["README.md"].decode("utf-8"))


@pytest.fixture
def fake_api(monkeypatch):
    api = FakeHfApi()
    monkeypatch.setattr(hf_mtl.hub, "HfApi", lambda: api)

    def transformers_client():
        raise AssertionError("transformers' own Hub client was used")

    for module in (transformers.trainer, transformers.modelcard, transformers.utils.hub):
        monkeypatch.setattr(module, "hf_api", transformers_client)
    return api


def check_model_files(files: dict[str, bytes]) -> None:
    assert MODEL_FILES <= set(files)
    modeling = files["modeling_multitask.py"].decode()
    assert "import hf_mtl" not in modeling and "from hf_mtl" not in modeling  # self-contained code
    config = json.loads(files["config.json"])
    assert config["auto_map"]["AutoModel"] == "modeling_multitask.MultiTaskModel"
    # the predictor travels too: the "multitask" pipeline's code and the single-task views
    assert {"pipeline.py", "postprocessing.py", "encoders.py"} <= set(files)
    assert config["custom_pipelines"]["multitask"]["impl"] == "pipeline.MultiTaskPipeline"
    assert config["auto_map"]["AutoModelForTokenClassification"] == "modeling_multitask.MultiTaskForTokenClassification"
    assert "training_args.bin" not in files
    assert not [path for path in files if hf_mtl.hub.is_pickle_file(path)]


def test_model_push_is_one_commit_with_our_card(fake_api, tiny_model, tokenizer):
    tiny_model.push_to_hub("org/tiny", tokenizer=tokenizer, private=True, commit_message="first")
    assert fake_api.repos == [{"repo_id": "org/tiny", "private": True, "exist_ok": True, "token": None}]
    assert len(fake_api.commits) == 1
    commit = fake_api.commits[0]
    assert commit["repo_id"] == "org/tiny" and commit["message"] == "first"
    check_model_files(commit["files"])
    card = fake_api.card()
    assert "hf_mtl" in card.data.tags and card.data.library_name == "transformers"
    assert 'pipeline("multitask", model="org/tiny")' in card.text
    assert "This is the model card of a 🤗 transformers model" not in card.text  # not transformers' generic card


def test_model_push_keeps_the_card_and_plot_of_its_folder(fake_api, tiny_model, tokenizer, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    info = card_info_from_model(tiny_model)
    info.model_name = "my-tiny"
    info.plot = "training_curves.png"
    (tmp_path / "README.md").write_text(render_model_card(info), encoding="utf-8")
    (tmp_path / "training_curves.png").write_bytes(b"\x89PNG fake")
    loaded = MultiTaskModel.from_pretrained(tmp_path)
    loaded.push_to_hub("org/published", tags=["extra"])  # tokenizer found next to the weights
    files = fake_api.commits[0]["files"]
    check_model_files(files)
    assert files["training_curves.png"] == b"\x89PNG fake"
    card = fake_api.card()
    assert card.data.model_name == "my-tiny"
    assert 'model="org/published"' in card.text and 'model="my-tiny"' not in card.text  # snippet retargeted
    assert "extra" in card.data.tags and "hf_mtl" in card.data.tags


def test_upload_refuses_pickles_among_extra_files(fake_api, tiny_model, tokenizer, tmp_path):
    (tmp_path / "state.pt").write_bytes(b"pickle")
    with pytest.raises(ValueError, match=r"extra_files \['extra/state.pt'\] can hold pickles"):
        hf_mtl.hub.upload_model(tiny_model, "org/x", tokenizer=tokenizer, extra_files={"extra/state.pt": tmp_path / "state.pt"})
    assert fake_api.commits == [] and fake_api.repos == []


def test_retarget_card_leaves_foreign_cards_alone():
    assert retarget_card("# no front matter", "org/x") == "# no front matter"


@pytest.fixture
def trained_trainer(tmp_path, three_tasks, tokenizer):
    data = raw_datasets(16)
    args = MultiTaskTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=4, logging_steps=2,
        eval_strategy="steps", eval_steps=2, report_to="none", save_strategy="no", hub_model_id="org/trained",
        use_cpu=True, disable_tqdm=True,
    )
    trainer = MultiTaskTrainer(
        model=make_model(three_tasks), args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer,
    )
    trainer.train()
    trainer.evaluate()
    return trainer


def test_trainer_push_is_one_commit_with_card_plot_and_results(trained_trainer):
    api = FakeHfApi()
    trained_trainer.hub_api = api
    trained_trainer.push_to_hub(tags="experiment")
    assert [r["repo_id"] for r in api.repos] == ["org/trained"]
    assert len(api.commits) == 1 and api.commits[0]["message"] == "End of training"
    files = api.commits[0]["files"]
    check_model_files(files)
    assert files["training_curves.png"].startswith(b"\x89PNG")
    card = api.card()
    assert card.data.model_name == "trained"
    assert {r.task_name for r in card.data.eval_results} == {"sentiment", "topic", "ner"}
    assert {r.metric_type for r in card.data.eval_results if r.task_name == "ner"} == {
        "accuracy", "precision", "recall", "f1", "strict_precision", "strict_recall", "strict_f1"}
    assert "experiment" in card.data.tags
    assert "| `topic` | 16 |" in card.text  # training examples per task
    assert "optimizer steps | 4 |" in card.text
    # the card and plot are also left in the output directory, like transformers' push
    out = Path(trained_trainer.args.output_dir)
    assert (out / "README.md").read_bytes() == files["README.md"]
    assert (out / "training_curves.png").is_file()


def test_cli_push(fake_api, tiny_model, tokenizer, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert main(["push", str(tmp_path), "org/cli", "--private", "--commit-message", "via cli"]) == 0
    assert fake_api.repos[0]["private"] is True
    assert len(fake_api.commits) == 1 and fake_api.commits[0]["message"] == "via cli"
    check_model_files(fake_api.commits[0]["files"])
    assert "https://huggingface.co/org/cli/commit/0123" in capsys.readouterr().out


def test_cli_push_errors(fake_api, tmp_path, capsys):
    assert main(["push", str(tmp_path / "missing"), "org/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a saved model folder" in err
    assert fake_api.commits == []


# ---------------------------------------------------------------------------- push_to_hub=True training
PICKLES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth")


def live_trainer(tmp_path, tasks, tokenizer, callbacks=None, **overrides) -> MultiTaskTrainer:
    settings = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=4, logging_steps=1,
        save_strategy="steps", save_steps=2, report_to="none", push_to_hub=True, hub_model_id="org/live",
        hub_always_push=True, use_cpu=True, disable_tqdm=True,
    )
    settings.update(overrides)
    return MultiTaskTrainer(model=make_model(tasks), args=MultiTaskTrainingArguments(**settings),
                            train_dataset=raw_datasets(16), processing_class=tokenizer, callbacks=callbacks)


def load_commit_folder(files: dict[str, bytes], folder: Path, subfolder: str = "") -> Path:
    """Write the files of a commit under `subfolder` (default: the root) to `folder`."""
    prefix = f"{subfolder}/" if subfolder else ""
    for path, data in files.items():
        if path.startswith(prefix) and "/" not in path[len(prefix):]:
            (folder / path[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
            (folder / path[len(prefix):]).write_bytes(data)
    return folder


def assert_loads_with_weights_of(folder: Path, checkpoint: Path) -> None:
    model = AutoModel.from_pretrained(folder)
    assert isinstance(model, MultiTaskModel) and model.task_names == ["sentiment", "topic", "ner"]
    expected = load_file(checkpoint / "model.safetensors")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    assert AutoTokenizer.from_pretrained(folder)("a test")["input_ids"]


@pytest.mark.parametrize("strategy", ["every_save", "checkpoint", "all_checkpoints"])
def test_training_push_is_one_loadable_commit_per_save_without_pickles(fake_api, tmp_path, three_tasks, tokenizer,
                                                                        strategy):
    trainer = live_trainer(tmp_path, three_tasks, tokenizer, hub_strategy=strategy)
    trainer.train()
    out = Path(trainer.args.output_dir)
    assert [r["repo_id"] for r in fake_api.repos] == ["org/live"]
    assert [c["message"] for c in fake_api.commits] == ["Training in progress, step 2", "Training in progress, step 4"]
    for number, (commit, step) in enumerate(zip(fake_api.commits, (2, 4))):
        files = commit["files"]
        check_model_files(files)
        assert not [path for path in files if path.rsplit("/", 1)[-1] in PICKLES]
        assert "trainer_state.json" not in files and "multitask_state.json" not in files  # state only in subfolders
        card = fake_api.card(number)
        assert "hf_mtl" in card.data.tags and 'pipeline("multitask", model="org/live")' in card.text
        assert files["training_curves.png"].startswith(b"\x89PNG")
        assert_loads_with_weights_of(load_commit_folder(files, tmp_path / f"root-{step}"), out / f"checkpoint-{step}")
        subfolder = {"every_save": None, "checkpoint": "last-checkpoint", "all_checkpoints": f"checkpoint-{step}"}[strategy]
        subfolders = {path.split("/")[0] for path in files if "/" in path}
        assert subfolders == ({subfolder} if subfolder else set())
        if subfolder:
            saved = load_commit_folder(files, tmp_path / f"sub-{step}", subfolder)
            assert json.loads((saved / "trainer_state.json").read_text())["global_step"] == step
            assert (saved / "multitask_state.json").is_file()
            assert_loads_with_weights_of(saved, out / f"checkpoint-{step}")
            assert "no optimizer, scheduler or RNG state" in commit["commit_description"]
    # the output folder gets no pushed copies (transformers copies model files and training_args.bin there)
    assert not (out / "config.json").exists() and not (out / "training_args.bin").exists()
    trainer.save_model()  # with push_to_hub=True this pushes too (what `hf-mtl train` does at the end)
    assert len(fake_api.commits) == 3 and fake_api.commits[-1]["message"] == "Model save"
    check_model_files(fake_api.commits[-1]["files"])


def test_hub_strategy_end_pushes_only_at_the_end(fake_api, tmp_path, three_tasks, tokenizer):
    trainer = live_trainer(tmp_path, three_tasks, tokenizer, hub_strategy="end")
    trainer.train()
    assert fake_api.commits == [] and [r["repo_id"] for r in fake_api.repos] == ["org/live"]
    trainer.push_to_hub()
    assert len(fake_api.commits) == 1 and fake_api.repos == [fake_api.repos[0]]  # the repository is not re-created
    check_model_files(fake_api.commits[0]["files"])


class _SlowHub(FakeHfApi):
    """Its first commit waits until released, to see what training does meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.started = threading.Event()

    def create_commit(self, *args, **kwargs):
        self.started.set()
        assert self.release.wait(timeout=60)
        return super().create_commit(*args, **kwargs)


def test_training_goes_on_while_a_push_uploads(monkeypatch, tmp_path, three_tasks, tokenizer):
    api = _SlowHub()
    monkeypatch.setattr(hf_mtl.hub, "HfApi", lambda: api)
    seen = {}

    class Observe(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:  # the step-2 push is still uploading: training did not wait for it
                seen["started"], seen["commits"] = api.started.wait(timeout=60), len(api.commits)
                api.release.set()

    trainer = live_trainer(tmp_path, three_tasks, tokenizer, hub_always_push=False, callbacks=[Observe()])
    trainer.train()  # ends by waiting for the push in flight
    assert seen == {"started": True, "commits": 0}
    # as in transformers, the step-4 save was not pushed while step 2's upload was in flight
    assert [c["message"] for c in api.commits] == ["Training in progress, step 2"]


def test_a_checkpoint_that_would_not_load_is_not_pushed(fake_api, tmp_path, three_tasks, tokenizer, caplog):
    trainer = live_trainer(tmp_path, three_tasks, tokenizer)
    checkpoint = tmp_path / "checkpoint-7"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "modeling_multitask.MultiTaskModel"}}))
    (checkpoint / "pytorch_model.bin").write_bytes(b"pickle")
    trainer._push_from_checkpoint(str(checkpoint))
    trainer._finish_current_push()
    assert fake_api.commits == []
    assert "lacks ['modeling_multitask.py', 'model.safetensors']" in caplog.text


def test_stage_checkpoint_leaves_out_pickles_and_keeps_state_for_the_subfolder(tmp_path):
    checkpoint = tmp_path / "checkpoint-3"
    (checkpoint / "global_step3").mkdir(parents=True)  # e.g. DeepSpeed's optimizer shards
    names = ["config.json", "model.safetensors", "modeling_multitask.py", "tokenizer.json", "trainer_state.json",
             "multitask_state.json", "README.md", "optimizer.pt", "scheduler.pt", "rng_state_0.pth", "scaler.pt",
             "training_args.bin", "extra.pkl"]
    for name in names:
        (checkpoint / name).write_text(name)
    staged = tmp_path / "staged"
    hf_mtl.hub.stage_checkpoint(checkpoint, staged, state_files=("trainer_state.json", "multitask_state.json"),
                                subfolder="last-checkpoint")
    model_files = {"config.json", "model.safetensors", "modeling_multitask.py", "tokenizer.json"}
    assert {p.name for p in staged.iterdir() if p.is_file()} == model_files
    assert {p.name for p in (staged / "last-checkpoint").iterdir()} == model_files | {"trainer_state.json",
                                                                                      "multitask_state.json"}
    assert (staged / "last-checkpoint" / "config.json").read_text() == "config.json"


def test_resuming_from_a_pushed_checkpoint_says_the_optimizer_starts_over(fake_api, tmp_path, three_tasks, tokenizer,
                                                                         caplog):
    trainer = live_trainer(tmp_path, three_tasks, tokenizer, hub_strategy="checkpoint")
    trainer.train()
    local = Path(trainer.args.output_dir) / "checkpoint-4"
    pushed = load_commit_folder(fake_api.commits[-1]["files"], tmp_path / "downloaded", "last-checkpoint")
    for checkpoint, warned in ((local, False), (pushed, True)):
        caplog.clear()
        resumed = live_trainer(tmp_path / checkpoint.name, three_tasks, tokenizer, max_steps=6, push_to_hub=False)
        resumed.train(resume_from_checkpoint=str(checkpoint))
        assert resumed.state.global_step == 6
        assert ("has no optimizer or scheduler state (scheduler.pt)" in caplog.text) is warned
