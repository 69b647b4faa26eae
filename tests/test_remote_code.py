"""A saved checkpoint carries its predictor: where hf_mtl cannot be imported, `pipeline("multitask", model=dir,
trust_remote_code=True)` runs the checkpoint's copy of the pipeline, and the built-in `text-classification` /
`token-classification` pipelines run one head through the `auto_map` views, with the results of the installed
hf_mtl pipeline. Checked on a `save_pretrained` folder, on the model `hf-mtl train` writes and on a
`MultiTaskTrainer` checkpoint (`checkpoint-N`); old checkpoints without that code keep loading with hf_mtl."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import NER_LABELS, make_model, run_isolated, tiny_bert_config
from transformers import BertModel, pipeline

from hf_mtl import MultiTaskPipeline, SequenceClassificationTask, TokenClassificationTask
from hf_mtl.cli import main

#: the code every save copies into the checkpoint (the multi-task pipeline's module and its relative imports)
PIPELINE_FILES = ("pipeline.py", "postprocessing.py", "encoders.py")

TEXTS = [
    "Anna lives in Oslo.",
    "an awful film",
    "Grzegorz Brzeczyszczykiewicz flew from Reykjavik to Antananarivo with Aeroflot",  # many sub-words per word
    "Apple opened a store in Paris and I love it",
]
#: longer than the maximum length: token heads read it in strided windows, classification heads its start
LONG = " ".join(["Anna met Bob in Oslo and they talked about the weather for a while."] * 45)
PAIRS = [{"text": "a great film", "text_pair": "really great?"}, {"text": "Oslo", "text_pair": ""}]
STRATEGIES = ("none", "simple", "first", "average", "max")

#: (inputs, call arguments) of the multi-task pipeline: every argument family of its interface
MULTITASK_CALLS: list[tuple[Any, dict[str, Any]]] = [
    (TEXTS[0], {}),
    (TEXTS, {}),
    *[(TEXTS, {"tasks": "ner", "aggregation_strategy": s}) for s in STRATEGIES],
    (TEXTS, {"top_k": None}),
    (TEXTS, {"top_k": 2, "function_to_apply": "sigmoid"}),
    ([LONG, TEXTS[0]], {}),
    ([LONG], {"stride": 8, "aggregation_strategy": "simple", "truncation": True}),
    ([LONG], {"tasks": ["ner"], "aggregation_strategy": "none", "stride": 4}),
    (PAIRS + TEXTS, {}),
    (TEXTS * 3 + [LONG], {"batch_size": 2}),
    ([["Anna", "lives", "in", "Oslo"], ["an", "awful", "film"]], {"is_split_into_words": True}),
    (TEXTS, {"ignore_labels": [], "aggregation_strategy": "first"}),
]
TEXT_CLASSIFICATION_CALLS = [(TEXTS, {}), (TEXTS, {"top_k": None}), (PAIRS, {})]
TOKEN_CLASSIFICATION_CALLS = [(TEXTS, {"aggregation_strategy": s}) for s in STRATEGIES]

#: runs in a fresh interpreter where `import hf_mtl` fails: every job's pipeline built with trust_remote_code
RUNNER = textwrap.dedent(
    """
    import json, sys

    sys.modules["hf_mtl"] = None  # `import hf_mtl` (and of any hf_mtl module) raises ImportError from here on
    try:
        import hf_mtl  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("hf_mtl is importable")

    import numpy as np
    from transformers import pipeline

    jobs_path, out_path = sys.argv[1:3]
    out = []
    for job in json.load(open(jobs_path)):
        predictor = pipeline(job["task"], model=job["model"], trust_remote_code=True, **job["init"])
        out.append({
            "pipeline": type(predictor).__module__,
            "model": type(predictor.model).__module__,
            "results": [predictor(inputs, **kwargs) for inputs, kwargs in job["calls"]],
        })
        if job.get("resave"):  # saved again from the checkpoint's code: it must carry the pipeline again
            predictor.model.save_pretrained(job["resave"])
            predictor.tokenizer.save_pretrained(job["resave"])
    loaded = sorted(name for name, module in sys.modules.items() if module is not None and name.split(".")[0] == "hf_mtl")
    assert not loaded, loaded
    json.dump(out, open(out_path, "w"), default=lambda v: v.item() if isinstance(v, np.generic) else v.tolist())
    """
)


def _run_without_hf_mtl(tmp_path: Path, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run `jobs` in a subprocess that cannot import hf_mtl: besides the `sys.modules` block, its working
    directory and import path hold no hf_mtl source tree (PYTHONPATH is dropped; the editable install's finder
    is what the block defeats)."""
    work = tmp_path / "no_hf_mtl"
    work.mkdir()
    (work / "jobs.json").write_text(json.dumps(jobs))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = run_isolated(
        [sys.executable, "-c", RUNNER, str(work / "jobs.json"), str(work / "out.json")], env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((work / "out.json").read_text())


def _assert_same(ours: Any, theirs: Any, where: str) -> None:
    """Equal structures, equal labels and words, numbers within float32 rounding."""
    if isinstance(ours, float) or isinstance(theirs, float):
        assert math.isclose(ours, theirs, rel_tol=1e-5, abs_tol=1e-6), f"{where}: {ours} != {theirs}"
    elif isinstance(ours, dict):
        assert isinstance(theirs, dict) and list(ours) == list(theirs), f"{where}: keys {list(ours)} != {theirs}"
        for key in ours:
            _assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, (list, tuple)):
        assert isinstance(theirs, (list, tuple)) and len(ours) == len(theirs), f"{where}: {ours!r:.200} != {theirs!r:.200}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _assert_same(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else v.tolist()))


def _check_checkpoint(tmp_path: Path, checkpoint: Path) -> None:
    """Both routes without hf_mtl give the installed hf_mtl pipeline's results, call for call."""
    for name in PIPELINE_FILES:
        assert (checkpoint / name).is_file(), f"{checkpoint} lacks {name}"
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["custom_pipelines"]["multitask"]["impl"] == "pipeline.MultiTaskPipeline"

    ours = pipeline("multitask", model=str(checkpoint))  # hf_mtl installed: its own pipeline, no trust needed
    assert type(ours) is MultiTaskPipeline
    tasks = ours.model.config.tasks
    sequence_tasks = [t["name"] for t in tasks if t["task_type"] == "sequence_classification"]
    token_tasks = [t["name"] for t in tasks if t["task_type"] == "token_classification"]

    resaved = tmp_path / "resaved"
    jobs = [{"task": "multitask", "model": str(checkpoint), "init": {}, "calls": MULTITASK_CALLS, "resave": str(resaved)}]
    expected = [[ours(inputs, **kwargs) for inputs, kwargs in MULTITASK_CALLS]]
    views: list[tuple[str, str]] = []
    for i, name in enumerate(sequence_tasks):  # the first by default, the others picked with task_name
        views.append(("text-classification", name))
        jobs.append({
            "task": "text-classification", "model": str(checkpoint),
            "init": {} if i == 0 else {"model_kwargs": {"task_name": name}}, "calls": TEXT_CLASSIFICATION_CALLS,
        })
        expected.append([[r[name] for r in ours(inputs, tasks=name, **kwargs)] for inputs, kwargs in TEXT_CLASSIFICATION_CALLS])
    views.append(("token-classification", token_tasks[0]))
    jobs.append({"task": "token-classification", "model": str(checkpoint), "init": {}, "calls": TOKEN_CLASSIFICATION_CALLS})
    expected.append([
        [r[token_tasks[0]] for r in ours(inputs, tasks=token_tasks[0], **kwargs)] for inputs, kwargs in TOKEN_CLASSIFICATION_CALLS
    ])

    outputs = _run_without_hf_mtl(tmp_path, jobs)
    assert outputs[0]["pipeline"].startswith("transformers_modules.") and outputs[0]["pipeline"].endswith(".pipeline")
    assert outputs[0]["model"].endswith(".modeling_multitask")
    for job, output, want in zip(jobs, outputs, expected):
        assert output["model"].startswith("transformers_modules."), output
        calls = job["calls"]
        assert len(output["results"]) == len(calls)
        for (inputs, kwargs), got, wanted in zip(calls, output["results"], _as_json(want)):
            _assert_same(got, wanted, f"{job['task']} {job['init']} {kwargs} on {str(inputs)[:40]}")
    # the copy saved where hf_mtl is absent carries the same code and predicts the same
    assert all((resaved / name).is_file() for name in PIPELINE_FILES)
    assert json.loads((resaved / "config.json").read_text())["custom_pipelines"] == config["custom_pipelines"]
    _assert_same(_as_json(pipeline("multitask", model=str(resaved))(TEXTS)), _as_json(expected[0][1]), "resaved")


def test_saved_checkpoint_predicts_without_hf_mtl(tmp_path, tokenizer):
    tasks = [
        SequenceClassificationTask("single", ["a", "b", "c"]),
        TokenClassificationTask("ner", NER_LABELS),
        SequenceClassificationTask("multi", ["x", "y", "z"], problem_type="multi_label_classification"),
        SequenceClassificationTask("score", problem_type="regression"),
    ]
    checkpoint = tmp_path / "ckpt"
    make_model(tasks).save_pretrained(checkpoint)
    short = tokenizer.__class__.from_pretrained(tokenizer.name_or_path, model_max_length=32)  # LONG is windowed
    short.save_pretrained(checkpoint)
    _check_checkpoint(tmp_path, checkpoint)


def test_trained_checkpoints_predict_without_hf_mtl(tmp_path, tokenizer):
    from test_cli import write_recipe

    encoder = tmp_path / "encoder"
    BertModel(tiny_bert_config()).save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    recipe = write_recipe(tmp_path, encoder)
    assert main(["train", str(recipe), "--set", "training.save_strategy=steps", "--set", "training.save_steps=2"]) == 0
    model_dir = tmp_path / "model"
    checkpoint = model_dir / "checkpoint-2"  # saved by MultiTaskTrainer during the run
    assert (checkpoint / "trainer_state.json").is_file()
    # the final model `hf-mtl train` writes, and the checkpoint
    for folder, work in ((model_dir, tmp_path / "final"), (checkpoint, tmp_path / "mid")):
        work.mkdir()
        _check_checkpoint(work, folder)


def test_checkpoints_without_the_pipeline_code_still_load_with_hf_mtl(tmp_path, tokenizer):
    """Checkpoints saved before the pipeline's code was copied (no custom_pipelines, no view auto_map entries)."""
    model = make_model([SequenceClassificationTask("s", ["a", "b"]), TokenClassificationTask("ner", NER_LABELS)])
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    expected = pipeline("multitask", model=str(tmp_path))(TEXTS)
    for name in PIPELINE_FILES:
        (tmp_path / name).unlink()
    config = json.loads((tmp_path / "config.json").read_text())
    del config["custom_pipelines"]
    config["auto_map"] = {k: v for k, v in config["auto_map"].items() if k in ("AutoConfig", "AutoModel")}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert pipeline("multitask", model=str(tmp_path))(TEXTS) == expected
    # and a save of the loaded model writes the code again
    again = tmp_path / "again"
    pipeline("multitask", model=str(tmp_path)).model.save_pretrained(again)
    assert all((again / name).is_file() for name in PIPELINE_FILES)
    assert "multitask" in json.loads((again / "config.json").read_text())["custom_pipelines"]
    shutil.rmtree(again)
