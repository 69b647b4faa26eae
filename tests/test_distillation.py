"""Born-again distillation from single-task teachers (hf_mtl.distillation): the loss of each task kind, teacher
annealing, label mapping, the checks on teachers, the teacher-logit cache, and the recipe / card side."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import NER_LABELS, make_model, raw_datasets, tiny_bert_config, write_tiny_recipe_files
from transformers import BertForSequenceClassification, BertForTokenClassification

from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments, SequenceClassificationTask, TokenClassificationTask
from hf_mtl.distillation import (
    GOLD_WEIGHT_LOG_KEY,
    TEACHER_LOGITS_COLUMN,
    DistillationConfig,
    Distiller,
    Teacher,
)

SENTIMENT = SequenceClassificationTask("sentiment", ["negative", "positive"])
NER = TokenClassificationTask("ner", NER_LABELS)


def softmax(xs, t=1.0):
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def seq_teacher(labels, seed=1, **config):
    torch.manual_seed(seed)
    cfg = tiny_bert_config(id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)}, **config)
    return BertForSequenceClassification(cfg).eval()


def token_teacher(labels=NER_LABELS, seed=2):
    torch.manual_seed(seed)
    cfg = tiny_bert_config(id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    return BertForTokenClassification(cfg).eval()


def args_for(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, per_device_train_batch_size=4,
                    max_steps=4, logging_steps=1, save_strategy="no", learning_rate=1e-3)
    defaults.update(kwargs)
    return MultiTaskTrainingArguments(**defaults)


# ---------------------------------------------------------------------------- loss formulas
def test_single_label_loss_is_soft_cross_entropy_at_temperature_times_t_squared():
    student, teacher, t = [1.0, 2.0, 0.0], [0.0, 1.0, 3.0], 2.0
    task = SequenceClassificationTask("topic", ["a", "b", "c"])
    expected = -sum(p * math.log(q) for p, q in zip(softmax(teacher, t), softmax(student, t))) * t * t
    got = task.distillation_loss(torch.tensor([student]), torch.tensor([teacher]), {}, t)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_multi_label_loss_is_bce_to_the_teachers_sigmoid():
    task = SequenceClassificationTask("tags", ["x", "y"], problem_type="multi_label_classification")
    student, teacher, t = [0.5, -1.0], [2.0, 0.0], 1.5
    terms = []
    for s, u in zip(student, teacher):
        p, q = sigmoid(u / t), sigmoid(s / t)
        terms.append(-(p * math.log(q) + (1 - p) * math.log(1 - q)))
    got = task.distillation_loss(torch.tensor([student]), torch.tensor([teacher]), {}, t)
    assert got.item() == pytest.approx(sum(terms) / 2 * t * t, rel=1e-5)


def test_regression_loss_is_mse_to_the_teacher_whatever_the_temperature():
    task = SequenceClassificationTask("score", problem_type="regression")
    got = task.distillation_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [0.0]]), {}, 4.0)
    assert got.item() == pytest.approx((1 + 9) / 2)


def test_token_loss_counts_only_the_labelled_positions():
    task = TokenClassificationTask("chunks", ["O", "B-NP", "I-NP"])
    student = torch.tensor([[[1.0, 0.0, 0.0], [9.0, 9.0, 0.0], [0.0, 2.0, 1.0]]])
    teacher = torch.tensor([[[0.0, 1.0, 0.0], [-5.0, 5.0, 0.0], [1.0, 1.0, 1.0]]])
    labels = torch.tensor([[0, -100, 2]])  # the middle sub-word is a continuation: not scored
    ce = lambda s, u: -sum(p * math.log(q) for p, q in zip(softmax(u), softmax(s)))  # noqa: E731
    expected = (ce([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]) + ce([0.0, 2.0, 1.0], [1.0, 1.0, 1.0])) / 2
    got = task.distillation_loss(student, teacher, {"labels": labels}, 1.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    none = task.distillation_loss(student, teacher, {"labels": torch.full((1, 3), -100)}, 1.0)
    assert none.item() == 0.0


# ---------------------------------------------------------------------------- schedule
def test_teacher_annealing_goes_from_teacher_to_gold():
    config = DistillationConfig(teachers={"sentiment": "unused"})
    assert [config.gold_weight(p) for p in (0.0, 0.25, 1.0, 1.5)] == [0.0, 0.25, 1.0, 1.0]
    constant = DistillationConfig(teachers={"sentiment": "unused"}, schedule="constant", teacher_weight=0.3)
    assert constant.gold_weight(0.0) == constant.gold_weight(1.0) == pytest.approx(0.7)
    assert DistillationConfig(teachers={"x": "y"}, schedule="constant").gold_weight(0.4) == 0.5
    with pytest.raises(ValueError, match="schedule must be one of"):
        DistillationConfig(teachers={"x": "y"}, schedule="cosine")
    with pytest.raises(ValueError, match="teacher_weight is for schedule='constant'"):
        DistillationConfig(teachers={"x": "y"}, teacher_weight=0.2)
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        DistillationConfig(teachers={"x": "y"}, temperature=0)


def test_the_loss_mixes_gold_and_teacher_by_the_step(tokenizer):
    distiller = Distiller(DistillationConfig(teachers={"sentiment": seq_teacher(["negative", "positive"])}),
                          [SENTIMENT], tokenizer)
    student, teacher = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    gold = torch.tensor(0.7)
    distill = SENTIMENT.distillation_loss(student, teacher, {}, 1.0)
    at = lambda step: distiller.loss(SENTIMENT, gold, student, teacher, {}, SimpleNamespace(global_step=step, max_steps=4))  # noqa: E731
    assert at(0).item() == pytest.approx(distill.item())
    assert at(1).item() == pytest.approx(0.25 * 0.7 + 0.75 * distill.item())
    assert at(4).item() == pytest.approx(0.7)


# ---------------------------------------------------------------------------- teachers
def test_teacher_labels_are_matched_by_name_and_reordered(tokenizer):
    model = seq_teacher(["positive", "negative"])  # the task's labels, the other way round
    teacher = Teacher(SENTIMENT, model)
    assert teacher.permutation == [1, 0]
    inputs = dict(tokenizer(["a fine film", "dull"], padding=True, return_tensors="pt"))
    with torch.no_grad():
        raw = model(**inputs).logits
        mapped = teacher.logits(inputs)
    assert torch.equal(mapped, raw[:, [1, 0]])
    assert Teacher(SENTIMENT, seq_teacher(["negative", "positive"])).permutation is None


def test_a_teacher_with_other_labels_is_refused_naming_both_sets():
    with pytest.raises(ValueError, match=r"Task 'sentiment': the teacher .* has labels \['neg', 'pos'\], the task has "
                                         r"labels \['negative', 'positive'\]"):
        Teacher(SENTIMENT, seq_teacher(["neg", "pos"]))
    with pytest.raises(ValueError, match="needs a token-classification teacher"):
        Teacher(NER, seq_teacher(NER_LABELS))
    with pytest.raises(KeyError, match=r"names task\(s\) \['nope'\]"):
        Distiller(DistillationConfig(teachers={"nope": seq_teacher(["a", "b"])}), [SENTIMENT], None)


def test_a_teacher_with_another_tokenizer_is_refused(tmp_path, tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1, "film": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    other = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]")
    folder = tmp_path / "teacher"
    seq_teacher(["negative", "positive"]).save_pretrained(folder)
    other.save_pretrained(folder)
    with pytest.raises(ValueError, match=r"Task 'sentiment': the teacher .* uses another tokenizer .*share one tokenizer"):
        Distiller(DistillationConfig(teachers={"sentiment": str(folder)}), [SENTIMENT], tokenizer)
    tokenizer.save_pretrained(folder)  # the student's tokenizer: accepted
    Distiller(DistillationConfig(teachers={"sentiment": str(folder)}), [SENTIMENT], tokenizer)


def test_a_head_of_an_hf_mtl_checkpoint_is_a_teacher(tmp_path, tokenizer, three_tasks):
    folder = tmp_path / "mtl"
    source = make_model(three_tasks, seed=3).eval()
    source.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    renamed = SequenceClassificationTask("polarity", ["negative", "positive"])
    for spec in (f"{folder}::sentiment", {"path": str(folder), "task": "sentiment"}):
        teacher = Teacher(renamed, spec)
        assert teacher.head == "sentiment" and teacher.multitask
    assert Teacher(SENTIMENT, str(folder)).head == "sentiment"  # same name: found without naming it
    with pytest.raises(ValueError, match=r"with heads \['sentiment', 'topic', 'ner'\] and none is named 'polarity'"):
        Teacher(renamed, str(folder))
    assert Teacher(renamed, source.task_view("sentiment")).head == "sentiment"  # a loaded view: its own head
    inputs = dict(tokenizer(["a fine film"], return_tensors="pt"))
    with torch.no_grad():
        expected = source(**inputs, task_name="sentiment").logits
        assert torch.allclose(Teacher(renamed, f"{folder}::sentiment").logits(inputs), expected, atol=1e-6)


# ---------------------------------------------------------------------------- cache and training
class CountingTeacher:
    """A teacher model whose forward passes are counted."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        model.register_forward_hook(lambda *a: setattr(self, "calls", self.calls + 1))


def test_teacher_logits_are_computed_once_and_reused(tmp_path, tokenizer):
    tasks = [SENTIMENT, NER]
    data = raw_datasets(12)
    data = {"sentiment": data["sentiment"], "ner": data["ner"]}
    sentiment, ner = CountingTeacher(seq_teacher(["positive", "negative"])), CountingTeacher(token_teacher())
    config = DistillationConfig(teachers={"sentiment": sentiment.model, "ner": ner.model}, batch_size=5)
    trainer = MultiTaskTrainer(model=make_model(tasks), args=args_for(tmp_path, save_strategy="steps", save_steps=2),
                               train_dataset=data, processing_class=tokenizer, distillation=config)
    assert (sentiment.calls, ner.calls) == (3, 3)  # 12 rows in batches of 5, once
    assert trainer.distiller.teacher_forwards == 6
    prepared = trainer.train_datasets
    row = prepared["sentiment"][0]
    inputs = {k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        assert torch.allclose(torch.tensor(row[TEACHER_LOGITS_COLUMN]), sentiment.model(**inputs).logits[0, [1, 0]],
                              atol=1e-5)
    sentiment.calls -= 1  # the check's own forward
    ner_row = prepared["ner"][0]
    assert len(ner_row[TEACHER_LOGITS_COLUMN]) == len(ner_row["input_ids"])
    assert len(ner_row[TEACHER_LOGITS_COLUMN][0]) == len(NER_LABELS)
    # a rerun (or a resumed run) with the same data and teachers loads the cache: no teacher forward
    again = MultiTaskTrainer(model=make_model(tasks), args=args_for(tmp_path), train_dataset=data,
                             processing_class=tokenizer, distillation=config)
    assert (sentiment.calls, ner.calls) == (3, 3) and again.distiller.teacher_forwards == 0
    assert again.train_datasets["ner"][TEACHER_LOGITS_COLUMN] == prepared["ner"][TEACHER_LOGITS_COLUMN]
    # other weights: another cache entry
    with torch.no_grad():
        sentiment.model.classifier.bias.add_(1.0)
    MultiTaskTrainer(model=make_model(tasks), args=args_for(tmp_path), train_dataset=data,
                     processing_class=tokenizer, distillation=config)
    assert (sentiment.calls, ner.calls) == (6, 3)

    # training: batches carry the teacher logits, no teacher runs, λ is logged from 0 to 1
    batch = trainer.data_collator([{**prepared["ner"][i], "task_name": "ner"} for i in range(3)])
    assert batch[TEACHER_LOGITS_COLUMN].shape == (*batch["labels"].shape, len(NER_LABELS))
    trainer.train()
    assert (sentiment.calls, ner.calls) == (6, 3)
    weights = [entry[GOLD_WEIGHT_LOG_KEY] for entry in trainer.state.log_history if GOLD_WEIGHT_LOG_KEY in entry]
    assert weights == [0.25, 0.5, 0.75, 1.0]  # logged after steps 1..4 of 4
    # resuming: the cache is read again, and λ continues from the checkpoint's step
    resumed = MultiTaskTrainer(model=make_model(tasks), args=args_for(tmp_path), train_dataset=data,
                               processing_class=tokenizer, distillation=config)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    assert (sentiment.calls, ner.calls) == (6, 3) and resumed.distiller.teacher_forwards == 0
    assert [e[GOLD_WEIGHT_LOG_KEY] for e in resumed.state.log_history if GOLD_WEIGHT_LOG_KEY in e][-2:] == [0.75, 1.0]
    assert trainer.run_record.distillation["schedule"] == "linear"
    assert set(trainer.run_record.distillation["teachers"]) == {"sentiment", "ner"}


def test_compute_loss_is_the_distillation_loss_with_teacher_weight_one(tmp_path, tokenizer):
    config = DistillationConfig(teachers={"sentiment": seq_teacher(["negative", "positive"])}, schedule="constant",
                                teacher_weight=1.0, temperature=2.0)
    model = make_model([SENTIMENT, NER])
    data = raw_datasets(8)
    trainer = MultiTaskTrainer(model=model, args=args_for(tmp_path), train_dataset=data_without_topic(data),
                               processing_class=tokenizer, distillation=config)
    model.eval()  # no dropout: the same logits twice
    batch = trainer.data_collator([{**trainer.train_datasets["sentiment"][i], "task_name": "sentiment"} for i in range(4)])
    loss = trainer.compute_loss(model, batch)
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        logits = model(**inputs, task_name="sentiment").logits
    expected = SENTIMENT.distillation_loss(logits, batch[TEACHER_LOGITS_COLUMN], batch, 2.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # the ner batch has no teacher: gold only
    ner_batch = trainer.data_collator([{**trainer.train_datasets["ner"][i], "task_name": "ner"} for i in range(2)])
    assert TEACHER_LOGITS_COLUMN not in ner_batch
    with torch.no_grad():
        gold = model(**{k: v for k, v in ner_batch.items() if k != "task_name"}, task_name="ner").loss
        assert trainer.compute_loss(model, ner_batch).item() == pytest.approx(gold.item(), rel=1e-5)


def data_without_topic(data):
    return {"sentiment": data["sentiment"], "ner": data["ner"]}


# ---------------------------------------------------------------------------- recipes, jobs and the card
def write_recipe(folder, encoder, distillation, **training):
    import yaml

    write_tiny_recipe_files(folder)
    recipe = {
        "encoder": str(encoder),
        "output_dir": str(folder / "model"),
        "num_threads": 1,
        "tasks": [
            {"name": "sentiment", "type": "sequence_classification", "labels": ["neg", "pos"],
             "data": {"files": {"train": "s.tsv", "validation": "s.tsv"}}},
            {"name": "ner", "type": "token_classification", "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
             "data": {"files": {"train": "n.conll", "validation": "n.conll"}}},
        ],
        "training": {"max_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1, "eval_strategy": "no",
                     "save_strategy": "no", "report_to": "none", "max_length": 32, "use_cpu": True, **training},
        "distillation": distillation,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def test_the_distillation_block_is_checked_with_key_paths(tmp_path):
    from hf_mtl.recipe import RecipeError, load_recipe

    path = write_recipe(tmp_path, "enc", {"teachers": {"sentiment": "teachers/s", "ner": "mtl::tagger"},
                                          "schedule": "constant", "teacher_weight": 0.25, "temperature": 2})
    recipe = load_recipe(path)
    assert recipe.distillation == {
        "teachers": {"sentiment": str(tmp_path / "teachers" / "s"), "ner": f"{tmp_path / 'mtl'}::tagger"},
        "schedule": "constant", "teacher_weight": 0.25, "temperature": 2.0,
    }
    config = recipe.distillation_config()
    assert isinstance(config, DistillationConfig) and config.gold_weight(0.5) == 0.75
    assert load_recipe(path, ["distillation={teachers: train}"]).distillation["teachers"] == {
        "sentiment": "train", "ner": "train"}
    dict_form = load_recipe(path, ["distillation.teachers={sentiment: {path: m, task: polarity}}"])
    assert dict_form.distillation["teachers"] == {"sentiment": {"path": str(tmp_path / "m"), "task": "polarity"}}
    for override, message in [
        ("distillation.temprature=2", "distillation.temprature: unknown key; did you mean 'temperature'?"),
        ("distillation.teachers={topic: x}", "distillation.teachers.topic: not a task of the recipe"),
        ("distillation.schedule=cosine", "distillation.schedule: 'cosine' is not one of linear, constant"),
        ("distillation.schedule=linear", "distillation.teacher_weight: is for schedule='constant'"),
        ("distillation.temperature=0", "distillation.temperature: must be a number > 0"),
        ("distillation.teachers=all", "distillation.teachers: expected `train` or a mapping"),
        ("distillation.teachers={sentiment: {path: m, head: x}}", "distillation.teachers.sentiment.head: unknown key"),
    ]:
        with pytest.raises(RecipeError, match=message):
            load_recipe(path, [override])


def test_recipe_with_a_given_teacher(tmp_path, tiny_encoder, tokenizer):
    from hf_mtl.jobs import train_recipe
    from hf_mtl.recipe import load_recipe

    folder = tmp_path / "teachers" / "sst"
    seq_teacher(["pos", "neg"]).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "eval_results.json").write_text('{"eval_accuracy": 0.875, "eval_loss": 0.3}', encoding="utf-8")
    result = train_recipe(load_recipe(write_recipe(tmp_path, tiny_encoder, {"teachers": {"sentiment": "teachers/sst"}})))
    trainer = result.trainer
    assert set(trainer.distiller.teachers) == {"sentiment"}  # ner: gold labels only
    assert TEACHER_LOGITS_COLUMN in trainer.train_datasets["sentiment"].column_names
    assert TEACHER_LOGITS_COLUMN not in trainer.train_datasets["ner"].column_names
    assert trainer.distiller.teachers["sentiment"].permutation == [1, 0]
    card = (result.output_dir / "README.md").read_text(encoding="utf-8")
    assert f"| `sentiment` | {folder} | Accuracy 0.8750 |" in card  # outside the output folder: its path
    assert "with λ rising linearly over training from 0" in card and "temperature T = 1" in card


def test_recipe_trains_its_teachers_first(tmp_path, tiny_encoder):
    from hf_mtl.jobs import train_recipe
    from hf_mtl.recipe import load_recipe

    recipe = load_recipe(write_recipe(tmp_path, tiny_encoder, {"teachers": "train", "temperature": 2},
                                      eval_strategy="steps", eval_steps=2))
    lines = []
    result = train_recipe(recipe, progress=lines.append)
    out = result.output_dir
    for task in ("sentiment", "ner"):
        teacher = out / "teachers" / task
        assert (teacher / "model.safetensors").is_file() and (teacher / "eval_results.json").is_file()
        assert any(line.startswith(f"hf-mtl: training the teacher of task {task!r}") for line in lines)
    trainer = result.trainer
    assert {t: d["source"] for t, d in trainer.run_record.distillation["teachers"].items()} == {
        "sentiment": str(out / "teachers" / "sentiment"), "ner": str(out / "teachers" / "ner")}
    weights = [e[GOLD_WEIGHT_LOG_KEY] for e in trainer.state.log_history if GOLD_WEIGHT_LOG_KEY in e]
    assert weights == [0.5, 1.0]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "### Distillation" in card and "Born-again multi-task distillation" in card
    assert "| `sentiment` | teachers/sentiment | Accuracy " in card and "| `ner` | teachers/ner | F1 " in card
    assert "temperature T = 2" in card
    assert (out / "training_curves.png").is_file()
