"""One-commit Hub pushes (model, trainer, `hf-mtl push`), recorded with a fake `huggingface_hub` client."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import make_model, raw_datasets
from huggingface_hub import ModelCard

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
    return api


def check_model_files(files: dict[str, bytes]) -> None:
    assert MODEL_FILES <= set(files)
    modeling = files["modeling_multitask.py"].decode()
    assert "import hf_mtl" not in modeling and "from hf_mtl" not in modeling  # self-contained code
    config = json.loads(files["config.json"])
    assert config["auto_map"]["AutoModel"] == "modeling_multitask.MultiTaskModel"
    assert "training_args.bin" not in files


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
