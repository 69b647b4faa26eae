"""Layering runs one way: commands -> jobs -> recipe -> the library (trainer, card, hub, data, encoders).

The card is built from card settings and the trainer's record of the run, never from a recipe; the
tokenizer of a model is looked up in one place; no command imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import make_model, raw_datasets
from huggingface_hub import ModelCard

from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments
from hf_mtl.card import CardSettings, card_info_from_trainer, render_model_card
from hf_mtl.encoders import load_tokenizer_for, tokenizer_sources

PACKAGE = Path(__file__).resolve().parents[1] / "hf_mtl"
#: the layers above the library: they may import it, it may not import them
UPPER = {"recipe", "jobs", "cli", "__main__", "commands"}


def imported_modules(path: Path) -> set[str]:
    """The hf_mtl modules a file imports (relative imports resolved), e.g. {"recipe", "commands.train"}."""
    package = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - (node.level - 1)])
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] if node.module else [".".join(base + [a.name]) for a in node.names]
            elif (node.module or "").startswith("hf_mtl"):
                names = [node.module.removeprefix("hf_mtl").lstrip(".")]
            else:
                continue
            found.update(n for n in names if n)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("hf_mtl.") for a in node.names if a.name.startswith("hf_mtl."))
    return found


def test_the_library_never_imports_the_recipe_job_or_command_layers():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if module.split(".")[0] in UPPER:
            continue
        upward = {m for m in imported_modules(path) if m.split(".")[0] in UPPER}
        if upward:
            offenders[module] = sorted(upward)
    assert offenders == {}


def test_commands_only_import_the_library_and_their_own_helpers():
    for path in (PACKAGE / "commands").glob("*.py"):
        siblings = {m for m in imported_modules(path) if m.startswith("commands.")}
        assert siblings <= {"commands._common", "commands._output"}, (path.name, siblings)
    assert not hasattr(MultiTaskTrainer, "recipe")  # nothing sets the recipe on a trainer from outside


def test_the_card_is_built_from_card_settings_and_the_run_record(tmp_path, three_tasks, tokenizer):
    data = raw_datasets(8)
    args = MultiTaskTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True,
                                      task_sampling_strategy="temperature", sampling_temperature=3.0)
    trainer = MultiTaskTrainer(model=make_model(three_tasks), args=args, train_dataset=data,
                               eval_dataset={"ner": data["ner"]}, processing_class=tokenizer)
    record = trainer.run_record
    assert record.train_sizes == {"sentiment": 8, "topic": 8, "ner": 8} and record.eval_sizes == {"ner": 8}
    record.data_sources = {
        "sentiment": {"description": "SST-2", "dataset_id": "stanfordnlp/sst2", "dataset_config": None,
                      "dataset_split": "validation"},
        "ner": {"description": "CoNLL-2003 (local files)", "dataset_id": None, "dataset_split": "validation",
                "copy_of": "lhoestq/conll2003"},
    }
    record.card_settings = CardSettings(model_name="from-settings", license="mit", language=("en",),
                                        example_text="Anna lives in Oslo.")
    trainer.get_train_dataloader()  # builds the batch sampler, which records the batch mix and the strategy
    assert record.sampling["name"] == "temperature" and record.sampling["settings"]["temperature"] == 3.0
    assert record.batch_shares and abs(sum(record.batch_shares.values()) - 1) < 1e-9
    record.batch_shares = {"sentiment": 0.5, "topic": 0.25, "ner": 0.25}
    info = card_info_from_trainer(trainer)
    tasks = {t.name: t for t in info.tasks}
    assert (tasks["sentiment"].data, tasks["sentiment"].dataset_id) == ("SST-2", "stanfordnlp/sst2")
    assert tasks["topic"].data == "-" and tasks["topic"].dataset_id is None  # no source recorded
    assert [t.batch_share for t in info.tasks] == [0.5, 0.25, 0.25]
    assert [(t.num_train, t.num_eval) for t in info.tasks] == [(8, None), (8, None), (8, 8)]
    assert "T = 3 (`temperature` sampling)" in info.sampling_description  # the strategy's own sentence
    assert info.model_name == "from-settings" and info.example_text == "Anna lives in Oslo."
    card = ModelCard(render_model_card(info))
    assert card.data.license == "mit" and card.data.language == ["en"]
    # the Hub dataset read, then the one the local files are a copy of
    assert card.data.datasets == ["stanfordnlp/sst2", "lhoestq/conll2003"]
    assert "| `sentiment` | 8 | 50.0% | 1.0 |" in card.text
    assert 'mtl("Anna lives in Oslo.")' in card.text


def test_one_tokenizer_lookup_finds_an_embedded_encoder_offline(tmp_path, three_tasks, minilm_dir):
    """A model that only names its base encoder by Hub id gets the embedded copy's tokenizer, offline, in the
    trainer, the pipeline and Hub pushes alike (they used to look it up three different ways)."""
    from transformers import pipeline

    import hf_mtl  # noqa: F401 - registers the pipeline

    model = make_model(three_tasks)
    model.config.base_model_name_or_path = "sentence-transformers/all-MiniLM-L6-v2"
    assert tokenizer_sources(model) == [minilm_dir]
    args = MultiTaskTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = MultiTaskTrainer(model=model, args=args)
    assert trainer.processing_class.name_or_path == minilm_dir
    assert pipeline("multitask", model=model).tokenizer.name_or_path == minilm_dir
    # a saved model's own folder comes first: the tokenizer it was trained with
    trainer.processing_class.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    assert tokenizer_sources(loaded) == [str(tmp_path), minilm_dir]
    assert load_tokenizer_for(loaded).name_or_path == str(tmp_path)

    model.config.base_model_name_or_path = None
    with pytest.raises(ValueError, match=r"none could be loaded .*; pass processing_class=<the encoder's tokenizer>"):
        MultiTaskTrainer(model=model, args=args)


#: modules that import neither torch nor transformers when imported (`import hf_mtl`, `hf-mtl --help` and the
#: torch-free `hf_mtl.runtime` rest on them): they may import those lazily, inside functions, and at module level
#: only each other
TORCH_FREE = {
    "__init__", "__main__", "cli", "commands", "registration", "runtime", "inference", "postprocessing",
    "task_types", "encoders", "export", "search",
}
HEAVY = ("torch", "transformers", "datasets", "accelerate")


def module_level_imports(path: Path) -> tuple[set[str], set[str]]:
    """(hf_mtl modules, other top-level packages) a file imports at module level (not inside functions, nor
    under `if TYPE_CHECKING:`)."""
    package = path.relative_to(PACKAGE).parent.parts
    ours, others = set(), set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = list(package[: len(package) - (node.level - 1)])
                    for a in node.names:
                        name = ".".join(base + ([node.module] if node.module else [a.name]))
                        exists = (PACKAGE / name.replace(".", "/")).with_suffix(".py").exists() or (PACKAGE / name.replace(".", "/")).is_dir()
                        ours.add(name if exists else ".".join(base) or "__init__")  # else: a name of the package
                else:
                    others.add((node.module or "").split(".")[0])
            elif isinstance(node, ast.Import):
                others.update(a.name.split(".")[0] for a in node.names)
            for field in ("body", "orelse", "handlers", "finalbody"):
                visit(getattr(node, field, []))

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return ours, others


def test_the_torch_free_modules_import_no_torch_at_module_level():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if module.split(".")[0] not in TORCH_FREE:
            continue
        ours, others = module_level_imports(path)
        bad = sorted({m for m in ours if m.split(".")[0] not in TORCH_FREE} | {m for m in others if m in HEAVY})
        if bad:
            offenders[module] = bad
    assert offenders == {}
