"""Data file formats as an extension point: a format registered from outside the package (the example of
docs/extending.md, run as it is written there) works through a recipe end to end, like the built-in ones."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import pytest
import yaml

from hf_mtl.data import DATA_FORMATS, DataFileError, data_format_names, infer_format, load_task_data, read_file
from hf_mtl.data.loaders import register_data_format
from hf_mtl.recipe import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def registry():
    """Restores the registered formats after the test (registrations are process-wide)."""
    saved = dict(DATA_FORMATS)
    yield DATA_FORMATS
    DATA_FORMATS.clear()
    DATA_FORMATS.update(saved)


def docs_example() -> str:
    """The Python block of the "A new data file format" section of docs/extending.md."""
    text = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    section = text.split("## A new data file format", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


@pytest.fixture
def json_format(registry):
    """Run the docs' example as the user's own module would be imported."""
    module = types.ModuleType("my_formats")
    exec(compile(docs_example(), "docs/extending.md (json format example)", "exec"), module.__dict__)
    return module


def write_recipe(folder: Path, data: dict, **task) -> Path:
    recipe = {
        "encoder": "some/encoder",
        "output_dir": "out",
        "tasks": [{"name": "sentiment", "type": "sequence_classification", "labels": ["negative", "positive"],
                   "data": data, **task}],
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def test_a_format_registered_outside_hf_mtl_reads_through_a_recipe(tmp_path, json_format):
    rows = [{"review": "a great film", "stars": 1}, {"review": "a dull film", "stars": 0}] * 3
    (tmp_path / "train.json").write_text(json.dumps({"rows": rows}), encoding="utf-8")
    (tmp_path / "dev.json").write_text(json.dumps({"rows": rows[:2]}), encoding="utf-8")
    path = write_recipe(tmp_path, {"files": {"train": "train.json", "validation": "dev.json"}, "field": "rows",
                                   "rename": {"review": "text", "stars": "label"},
                                   "label_map": {0: "negative", 1: "positive"}})
    recipe = load_recipe(path)
    assert data_format_names()[-1] == "json" and infer_format("x.JSON") == "json"
    source = recipe.source_of("sentiment")
    assert source.format == "json" and source.reader_options == {"field": "rows"}  # inferred from the suffix
    data = load_task_data(source, recipe.tasks[0].task, ("train", "validation"))
    assert len(data["train"]) == 6 and len(data["validation"]) == 2
    assert data["train"][0] == {"text": "a great film", "label": "positive"}

    # the recipe checks the registered options: kind, and options of other formats
    with pytest.raises(RecipeError, match=r"tasks\[0\]\.data\.field: expected a string, got list"):
        load_recipe(path, ["tasks[0].data.field=[a]"])
    with pytest.raises(RecipeError, match=r"tasks\[0\]\.data\.header: does not apply to json files \(options for "
                                          r"json: field, encoding\)"):
        load_recipe(path, ["tasks[0].data.header=false"])
    with pytest.raises(RecipeError, match=r"tasks\[0\]\.data\.field: does not apply to csv files"):
        load_recipe(path, ["tasks[0].data.format=csv"])
    # errors of the reader name the file, through the data source's error like the built-in readers'
    (tmp_path / "dev.json").write_text('{"rows": [1, 2]}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"dev\.json: expected a JSON array of objects"):
        load_task_data(source, recipe.tasks[0].task, ("validation",), required=())


def test_builtin_formats_are_registrations(registry):
    assert data_format_names() == ("conll", "csv", "tsv", "jsonl", "parquet")
    assert DATA_FORMATS["tsv"].defaults == {"delimiter": "\t", "quotechar": None}
    assert DATA_FORMATS["conll"].word_tags and not DATA_FORMATS["csv"].word_tags
    with pytest.raises(DataFileError, match=r"x\.dat: unknown format 'dat'; expected one of \['conll', 'csv'"):
        read_file("x.dat", "dat")


def test_registration_is_checked(registry):
    def reader(path):
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="data format 'csv' is already registered"):
        register_data_format("csv", reader)
    with pytest.raises(ValueError, match=r"suffixes already claimed by other formats \{'\.txt': 'conll'\}"):
        register_data_format("lines", reader, suffixes=[".txt"])
    with pytest.raises(ValueError, match="option 'n' has kind 'integer'"):
        register_data_format("lines", reader, options={"n": "integer"})
    with pytest.raises(ValueError, match=r"suffixes \['txt'\] must start with a dot"):
        register_data_format("lines", reader, suffixes=["txt"])
    # replace=True takes the suffix over from the format that had it
    register_data_format("lines", reader, suffixes=[".txt"], replace=True)
    assert infer_format("a.txt") == "lines" and ".txt" not in DATA_FORMATS["conll"].suffixes
