"""Model card rendering (front matter parsed back), the training-curves plot, shipped template and data."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hf_mtl.card import (
    ModelCardInfo,
    TaskCardInfo,
    card_info_from_model,
    is_hf_mtl_card,
    render_model_card,
    template_text,
    write_model_card,
)
from hf_mtl.plots import extract_curves, extract_weights, plot_training_curves
from hf_mtl.tasks import SequenceClassificationTask, TokenClassificationTask

ROOT = Path(__file__).resolve().parents[1]
NER = ["O", "B-PER", "I-PER"]

EVAL = {
    "eval_sentiment_accuracy": 0.91234,
    "eval_sentiment_macro_f1": 0.9,
    "eval_sentiment_loss": 0.3,
    "eval_ner_f1": 0.75,
    "eval_ner_precision": 0.7,
    "eval_ner_recall": 0.8,
    "eval_ner_accuracy": 0.95,
    "eval_ner_strict_f1": 0.72,
    "eval_ner_strict_precision": 0.66,
    "eval_ner_strict_recall": 0.79,
    "eval_ner_runtime": 1.5,
    "eval_average": 0.83117,
    "eval_loss": 0.4,
}


from hf_mtl.balancers import StaticWeights  # noqa: E402
from hf_mtl.sampling import sampling_strategy  # noqa: E402


def make_info(**overrides) -> ModelCardInfo:
    tasks = [
        TaskCardInfo.from_task(SequenceClassificationTask("sentiment", ["negative", "positive"]),
                               data="SST-2", dataset_id="stanfordnlp/sst2", num_train=100, batch_share=0.25),
        TaskCardInfo.from_task(TokenClassificationTask("ner", NER), data="my NER | files", num_train=300,
                               batch_share=0.75, weight=2.0),
    ]
    kwargs = dict(
        model_name="demo-model", tasks=tasks, base_model="sentence-transformers/all-MiniLM-L6-v2", eval_results=EVAL,
        sampling=sampling_strategy("temperature")([100, 300], 8, temperature=2.0, max_examples_per_task=1000,
                                                 task_names=["sentiment", "ner"]).describe(),
        loss_balancer=StaticWeights(["sentiment", "ner"], {"ner": 2.0}).describe(),
        hyperparameters={"learning rate": "5e-05", "seed": 42}, repo_id="user/demo-model", language=["en"],
        license="apache-2.0", tags=["demo"], plot="training_curves.png",
    )
    kwargs.update(overrides)
    return ModelCardInfo(**kwargs)


def test_one_template_and_the_example_card_rendered_from_it_is_up_to_date():
    shipped = (ROOT / "hf_mtl" / "templates" / "model_card.md.j2").read_text(encoding="utf-8")
    assert template_text() == shipped
    # model_cards/ documents the template and shows a rendered card; it holds no second copy of the template
    assert not list((ROOT / "model_cards").glob("*.j2"))
    spec = importlib.util.spec_from_file_location("render_example_card", ROOT / "tools" / "render_example_card.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert (ROOT / "model_cards" / "example_card.md").read_text(encoding="utf-8") == script.render(), (
        "model_cards/example_card.md is out of date: run python tools/render_example_card.py"
    )
    assert script.main(["--check"]) == 0
    # every variable the template reads from a task or the card is documented
    documented = (ROOT / "model_cards" / "README.md").read_text(encoding="utf-8")
    body = re.sub(r"\{#.*?#\}", "", shipped, flags=re.S)  # not the comment
    for name in sorted(set(re.findall(r"\b((?:card|task)\.[a-z_]+)", body))):
        assert f"`{name}`" in documented, name


def test_card_front_matter_parses_back():
    card = ModelCard(render_model_card(make_info()))
    data = card.data
    assert data.library_name == "transformers"
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.tags == ["hf_mtl", "multi-task", "text-classification", "token-classification", "demo"]
    assert data.datasets == ["stanfordnlp/sst2"]
    assert data.license == "apache-2.0" and data.language == ["en"]
    results = {(r.task_name, r.metric_type): r for r in data.eval_results}
    # one result per task and metric; losses and runtimes are not metrics
    assert sorted(results) == sorted([
        ("sentiment", "accuracy"), ("sentiment", "macro_f1"),
        ("ner", "accuracy"), ("ner", "precision"), ("ner", "recall"), ("ner", "f1"),
        ("ner", "strict_f1"), ("ner", "strict_precision"), ("ner", "strict_recall"),
    ])
    assert results[("ner", "strict_f1")].metric_name == "Strict F1"
    sentiment = results[("sentiment", "accuracy")]
    assert sentiment.metric_value == 0.9123 and sentiment.task_type == "text-classification"
    assert sentiment.dataset_type == "stanfordnlp/sst2" and sentiment.dataset_split == "validation"
    ner = results[("ner", "f1")]
    assert ner.task_type == "token-classification" and ner.dataset_name == "my NER | files"
    assert ner.dataset_type == "my-ner-files"
    assert data.model_name == "demo-model"


def test_card_body():
    text = render_model_card(make_info())
    body = text.split("---", 2)[2]
    assert "# demo-model" in body
    assert "| `ner` | token classification | `O`, `B-PER`, `I-PER` | my NER \\| files |" in body  # `|` escaped
    # token classification: the headline (conlleval) F1 first, then the strict figures
    assert ("| Task | Accuracy | Macro F1 | F1 | Precision | Recall | Strict F1 | Strict precision | Strict recall |"
            in body)
    assert "| `sentiment` | **0.9123** | 0.9000 | - | - | - | - | - | - |" in body  # main metric in bold
    assert "| `ner` | 0.9500 | - | **0.7500** | 0.7000 | 0.8000 | 0.7200 | 0.6600 | 0.7900 |" in body
    note = " ".join(body.split("Token classification (`ner`):", 1)[1].split("\n\n", 1)[0].split())
    assert "count whole entities by the rules of the CoNLL evaluation script `conlleval`" in note
    assert "well-formed in the task's tag scheme (`ner`: IOB2; seqeval's strict mode)" in note
    assert "*Accuracy* is the share of words tagged right" in note
    assert "Average of the headline metrics: **0.8312**" in body
    assert "![Training loss and evaluation metric per task over training steps](training_curves.png)" in body
    assert 'pipeline("multitask", model="user/demo-model")' in body
    # the no-install route (the repository's own code) comes first, with what trusting that code means
    usage = body.split("## Usage", 1)[1].split("## Training", 1)[0]
    remote = usage.index('pipeline("multitask", model="user/demo-model", trust_remote_code=True)')
    assert usage.index("pip install transformers") < remote < usage.index("import hf_mtl")
    assert "The code that runs is those files" in " ".join(usage.split())
    assert 'model_kwargs={"task_name": "<task>"}' in usage
    assert "T = 2 (`temperature` sampling)" in body and "at most 1000 examples per epoch" in body
    assert "| `ner` | 300 | 75.0% | 2.0 |" in body
    assert "| learning rate | 5e-05 |" in body
    for section in ("## Tasks", "## Evaluation results", "## Usage", "## Training", "## Intended use",
                    "## Limitations", "## Framework versions"):
        assert section in body
    assert "\n\n\n" not in text


def test_card_of_a_tagger_without_entities_shows_word_accuracy_as_its_headline():
    pos = TaskCardInfo.from_task(TokenClassificationTask("pos", ["NN", "VB", "DT"]))
    assert pos.tag_scheme is None and pos.main_metric == "accuracy"
    info = make_info(tasks=[pos], eval_results={"eval_pos_accuracy": 0.9, "eval_average": 0.9})
    body = render_model_card(info).split("---", 2)[2]
    assert "| Task | Accuracy |" in body and "| `pos` | **0.9000** |" in body
    assert "conlleval" not in body  # no entity scores, nothing to explain


def test_card_without_results_or_plot_and_with_a_local_base_model(tmp_path):
    info = make_info(eval_results={}, plot=None, base_model=str(tmp_path), repo_id=None, datasets=())
    text = render_model_card(info)
    card = ModelCard(text)
    assert card.data.base_model is None  # a local path is not a Hub model id
    assert card.data.eval_results is None
    assert "No evaluation results were recorded" in text
    assert "training_curves.png" not in text
    assert 'model="demo-model"' in text


def test_metric_keys_of_tasks_whose_names_prefix_each_other():
    tasks = [TaskCardInfo.from_task(TokenClassificationTask(name, NER)) for name in ("ner", "ner_x")]
    info = ModelCardInfo(model_name="m", tasks=tasks, eval_results={"eval_ner_f1": 0.5, "eval_ner_x_f1": 0.25})
    assert info.task_metrics() == {"ner": {"f1": 0.5}, "ner_x": {"f1": 0.25}}


def test_write_card_and_recognise_it(tmp_path, tiny_model):
    path = write_model_card(tmp_path, card_info_from_model(tiny_model, repo_id="org/tiny"))
    assert path == tmp_path / "README.md" and is_hf_mtl_card(path)
    card = ModelCard.load(path)
    assert card.data.model_name == "tiny" and "sentiment" in card.text and "topic" in card.text
    (tmp_path / "other.md").write_text("---\nlibrary_name: transformers\n---\n# generic\n", encoding="utf-8")
    assert not is_hf_mtl_card(tmp_path / "other.md")
    assert not is_hf_mtl_card(tmp_path / "missing.md")


# ---------------------------------------------------------------------------- plot
HISTORY = [
    {"loss": 1.5, "sentiment_loss": 0.7, "ner_loss": 2.1, "learning_rate": 1e-4, "step": 10},
    {"loss": 0.9, "sentiment_loss": 0.4, "learning_rate": 8e-5, "step": 20},
    {"eval_sentiment_accuracy": 0.8, "eval_ner_f1": 0.4, "eval_average": 0.6, "eval_loss": 0.7, "step": 20},
    {"loss": 0.5, "sentiment_loss": 0.2, "ner_loss": 0.9, "step": 30},
    {"eval_sentiment_accuracy": 0.9, "eval_ner_f1": 0.7, "eval_average": 0.8, "step": 30},
    {"train_runtime": 12.0, "step": 30},
]


def test_extract_curves():
    losses, metrics = extract_curves(HISTORY, {"sentiment": "accuracy", "ner": "f1"})
    assert losses == {
        "sentiment": [(10, 0.7), (20, 0.4), (30, 0.2)],
        "ner": [(10, 2.1), (30, 0.9)],
        "all tasks": [(10, 1.5), (20, 0.9), (30, 0.5)],
    }
    assert metrics == {
        "sentiment (accuracy)": [(20, 0.8), (30, 0.9)],
        "ner (f1)": [(20, 0.4), (30, 0.7)],
        "average": [(20, 0.6), (30, 0.8)],
    }


@pytest.mark.parametrize("history", [HISTORY, []])
def test_plot_training_curves_writes_a_png(tmp_path, history):
    path = plot_training_curves(history, {"sentiment": "accuracy", "ner": "f1"}, tmp_path / "sub" / "curves.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_logged_loss_weights_get_their_own_panel(tmp_path):
    history = [dict(e) for e in HISTORY]
    history[0].update(sentiment_loss_weight=1.0, ner_loss_weight=1.0)
    history[3].update(sentiment_loss_weight=1.4, ner_loss_weight=0.6)
    assert extract_weights(history, ["sentiment", "ner"]) == {
        "sentiment": [(10, 1.0), (30, 1.4)], "ner": [(10, 1.0), (30, 0.6)]
    }
    assert extract_weights(HISTORY, ["sentiment", "ner"]) == {}  # static weights are not logged: no panel
    widths = []
    for name, entries in (("with", history), ("without", HISTORY)):
        data = plot_training_curves(entries, {"sentiment": "accuracy", "ner": "f1"}, tmp_path / f"{name}.png").read_bytes()
        widths.append(int.from_bytes(data[16:20], "big"))  # PNG IHDR width
    assert widths[0] > widths[1] * 1.3


def test_card_states_an_adaptive_balancer_its_settings_and_final_weights():
    import torch

    from hf_mtl.balancers_adaptive import DynamicWeightAverage

    balancer = DynamicWeightAverage(["sentiment", "ner"], temperature=3.0, window_steps=10)
    balancer.weight.copy_(torch.tensor([1.23456, 0.76544]))
    tasks = make_info().tasks
    tasks[1].weight = round(0.76544, 4)
    body = render_model_card(make_info(loss_balancer=balancer.describe(), tasks=tasks)).split("---", 2)[2]
    text = " ".join(body.split())
    assert "Dynamic Weight Average (`dwa`, Liu et al. 2019): every 10 optimizer steps" in text
    assert "T = 3; weights at the time: sentiment 1.23, ner 0.765." in text
    assert "| `ner` | 300 | 75.0% | 0.7654 |" in body


# ---------------------------------------------------------------------------- quickstart data
def test_shipped_quickstart_data_is_what_the_generator_writes():
    from hf_mtl.data.quickstart_data import QUICKSTART_DIR, render_files

    files = render_files()
    for name, content in files.items():
        assert (QUICKSTART_DIR / name).read_text(encoding="utf-8") == content, (
            f"{name} differs from the generator's output: run python -m hf_mtl.data.quickstart_data"
        )
    train = files["sentiment.train.tsv"].splitlines()[1:]
    assert len(train) == 320 and len(set(train)) == 320
    labels = [line.split("\t")[1] for line in train]
    assert 0.35 < labels.count("positive") / len(labels) < 0.65
    # no text is shared between the train and validation splits
    for task, suffix in (("sentiment", "tsv"), ("topic", "csv")):
        train_lines = set(files[f"{task}.train.{suffix}"].splitlines()[1:])
        assert not train_lines & set(files[f"{task}.validation.{suffix}"].splitlines()[1:])
