"""Token-classification metrics: tag-scheme detection, entity scores per scheme, and a cross-check of the
headline precision/recall/F1 against the conlleval rules run as a perl script (tests/conlleval_rules.pl).

Hand cases state what conlleval counts (words, gold chunks, predicted chunks, correct chunks, words tagged
right), worked out by hand from the script's published rules, and hf_mtl's scores; the slow test checks a
real fine-tuned MiniLM's CoNLL-2003 predictions against the perl script.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hf_mtl import TokenClassificationTask, compute_task_metrics
from hf_mtl.metrics import token_metrics, word_sequences
from hf_mtl.modeling_multitask import IGNORE_INDEX
from hf_mtl.tag_schemes import detect_tag_scheme

HERE = Path(__file__).resolve().parent
CONLLEVAL = HERE / "conlleval_rules.pl"
PERL = shutil.which("perl")
needs_perl = pytest.mark.skipif(PERL is None, reason="perl is not installed: the conlleval cross-check needs it")
CONLL_DIR = HERE.parents[1] / "shared" / "data" / "conll2003"
CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

IOB2_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
IOB1_LABELS = ["O", "I-PER", "B-PER", "I-LOC"]  # LOC has no B-: only IOB1 allows that
IOE2_LABELS = ["O", "I-PER", "E-PER"]
IOE1_LABELS = ["O", "I-PER", "E-PER", "I-LOC"]  # LOC has no E-: only IOE1 allows that
IOBES_LABELS = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
BILOU_LABELS = ["O", "B-PER", "I-PER", "L-PER", "U-PER"]


# ---------------------------------------------------------------------------- helpers
def model_outputs(sentences, labels):
    """(logits, label ids) as a tagging head gives them: one row per sentence, a special token first,
    padding after, -100 wherever no word starts."""
    lid = {label: i for i, label in enumerate(labels)}
    width = max(len(gold) for gold, _ in sentences) + 2
    gold_ids = np.full((len(sentences), width), IGNORE_INDEX)
    pred_ids = np.zeros((len(sentences), width), dtype=int)
    for row, (gold, pred) in enumerate(sentences):
        gold_ids[row, 1:1 + len(gold)] = [lid[t] for t in gold]
        pred_ids[row, 1:1 + len(pred)] = [lid[t] for t in pred]
    return np.eye(len(labels))[pred_ids] * 5.0, gold_ids


def scores(sentences, labels):
    logits, gold = model_outputs(sentences, labels)
    return token_metrics(logits, gold, dict(enumerate(labels)))


def run_conlleval(sentences, *, know_s: bool = False) -> dict[str, float]:
    """tests/conlleval_rules.pl on `[(gold tags, predicted tags), ...]`: its counts and its scores as fractions."""
    lines = []
    for gold, pred in sentences:
        lines += [f"w{i} {g} {p}" for i, (g, p) in enumerate(zip(gold, pred))] + [""]
    command = [PERL, str(CONLLEVAL)] + (["-s"] if know_s else [])
    done = subprocess.run(command, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    counts = re.search(r"processed (\d+) tokens with (\d+) phrases; found: (\d+) phrases; correct: (\d+)\.",
                       done.stdout)
    rates = re.search(r"accuracy: ([\d.]+)%; precision: ([\d.]+)%; recall: ([\d.]+)%; FB1: ([\d.]+)", done.stdout)
    assert counts and rates, done.stdout
    tokens, gold_chunks, found, correct = map(int, counts.groups())
    accuracy, precision, recall, fb1 = (float(x) / 100 for x in rates.groups())
    return {"tokens": tokens, "gold": gold_chunks, "found": found, "correct": correct,
            "accuracy": accuracy, "precision": precision, "recall": recall, "f1": fb1}


def f1_of(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Case:
    """Sentences `[(gold, predicted)]` with what conlleval counts and what hf_mtl reports, worked out by hand.

    conlleval: (words, gold chunks, predicted chunks, correct chunks, words tagged right); `lenient` and
    `strict`: (precision, recall) of hf_mtl's `precision`/`recall` and `strict_precision`/`strict_recall`.
    """

    labels: list[str] | None  # None: a tag set hf_mtl does not take (perl only)
    sentences: list
    conlleval: tuple[int, int, int, int, int]
    lenient: tuple[float, float] | None = None
    strict: tuple[float, float] | None = None
    know_s: bool = False  # run the perl script with -s


# IOB2 sentences, each a rule of conlleval (the comment says what it finds in the prediction, and what
# strict IOB2 finds)
IOB2_CASES = {
    # an entity that starts with I- is an entity: PER 0-1, right; strict: none
    "i_start": Case(IOB2_LABELS, [(["B-PER", "I-PER", "O"], ["I-PER", "I-PER", "O"])], (3, 1, 1, 1, 2),
                    lenient=(1, 1), strict=(0, 0)),
    # the type changes inside: PER 0 and LOC 1, both wrong; strict: PER 0 (I-LOC starts nothing), wrong
    "type_change": Case(IOB2_LABELS, [(["B-PER", "I-PER"], ["B-PER", "I-LOC"])], (2, 1, 2, 0, 1),
                        lenient=(0, 0), strict=(0, 0)),
    # B- inside an entity splits it: ORG 0 and ORG 1-2, both wrong (strict too)
    "b_inside": Case(IOB2_LABELS, [(["B-ORG", "I-ORG", "I-ORG"], ["B-ORG", "B-ORG", "I-ORG"])], (3, 1, 2, 0, 2),
                     lenient=(0, 0), strict=(0, 0)),
    # adjacent entities of one type (gold B B) read as one (B I): PER 0-1, wrong (strict too)
    "adjacent": Case(IOB2_LABELS, [(["B-PER", "B-PER", "O"], ["B-PER", "I-PER", "O"])], (3, 2, 1, 0, 2),
                     lenient=(0, 0), strict=(0, 0)),
    # I- after an entity of another type starts an entity: PER 0 and LOC 1, both right; strict: PER 0 only
    "i_after_other_type": Case(IOB2_LABELS, [(["B-PER", "B-LOC", "O"], ["B-PER", "I-LOC", "O"])], (3, 2, 2, 2, 2),
                               lenient=(1, 1), strict=(1, 1 / 2)),
    # an I- start the lenient reading adds, wrongly: strict precision (and F1) is then the higher one
    "strict_higher": Case(IOB2_LABELS, [(["B-PER", "O", "O"], ["B-PER", "O", "I-LOC"])], (3, 1, 2, 1, 2),
                          lenient=(1 / 2, 1), strict=(1, 1)),
    # a sentence break ends an entity like an O: the I-LOC that opens the second sentence does not continue
    # the LOC that closes the first one: LOC and LOC, both right; strict: the second is not an entity
    "sentence_break": Case(IOB2_LABELS, [(["O", "B-LOC"], ["O", "B-LOC"]), (["B-LOC", "O"], ["I-LOC", "O"])],
                           (4, 2, 2, 2, 3), lenient=(1, 1), strict=(1, 1 / 2)),
}

CASES = {
    **IOB2_CASES,
    # all of the above in one file: 6 of 12 predicted chunks right, of 10 gold ones; strict: 3 of 7, of 10
    "iob2_all": Case(IOB2_LABELS, [s for case in IOB2_CASES.values() for s in case.sentences], (21, 10, 12, 6, 14),
                     lenient=(6 / 12, 6 / 10), strict=(3 / 7, 3 / 10)),
    # IOB1: B-PER after O is ill-formed but conlleval takes it (all 3 entities right); strict IOB1 drops
    # it and starts PER at the second B-PER (after a PER tag, where IOB1 puts B-)
    "iob1": Case(IOB1_LABELS, [(["I-PER", "B-PER", "O", "I-LOC"], ["B-PER", "B-PER", "O", "I-LOC"])],
                 (4, 3, 3, 3, 3), lenient=(1, 1), strict=(1, 2 / 3)),
    # IOE2: I I O is one PER for conlleval (strict IOE2: no E, no entity); E E is two entities, I E one
    "ioe2": Case(IOE2_LABELS, [(["I-PER", "E-PER", "O"], ["I-PER", "I-PER", "O"]),
                               (["E-PER", "E-PER"], ["I-PER", "E-PER"])],
                 (5, 3, 2, 1, 3), lenient=(1 / 2, 1 / 3), strict=(0, 0)),
    # IOE1: `I O E I` is three valid entities (E-PER right after O, then a PER right after it), predicted
    # exactly; `I E I O I` against `I I I O I`: PER 0-2 wrong, LOC right. Every tag sequence is valid IOE1,
    # so strict equals lenient
    "ioe1": Case(IOE1_LABELS, [(["I-PER", "O", "E-PER", "I-PER"], ["I-PER", "O", "E-PER", "I-PER"]),
                               (["I-PER", "E-PER", "I-PER", "O", "I-LOC"], ["I-PER", "I-PER", "I-PER", "O", "I-LOC"])],
                 (9, 6, 5, 4, 8), lenient=(4 / 5, 4 / 6), strict=(4 / 5, 4 / 6)),
    # IOBES (perl with -s, the S extension): B E B -> PER 0-1 and PER 2 (B opens, the break closes), both
    # right; I I E O -> PER 0-2, right; S S (two entities) against B E (one): wrong.
    # strict IOBES: only B E in the first and third sentences are entities (1 right of 2, of 5 gold)
    "iobes": Case(IOBES_LABELS, [(["B-PER", "E-PER", "S-PER"], ["B-PER", "E-PER", "B-PER"]),
                                 (["B-PER", "I-PER", "E-PER", "O"], ["I-PER", "I-PER", "E-PER", "O"]),
                                 (["S-PER", "S-PER"], ["B-PER", "E-PER"])],
                  (9, 5, 4, 3, 5), lenient=(3 / 4, 3 / 5), strict=(1 / 2, 1 / 5), know_s=True),
    # the same sentences through conlleval's own rules, which have no S: `B E S` and `S S` merge into one
    # chunk each, so every chunk looks right; this is why IOBES is scored with the S extension
    "iobes_without_s": Case(None, [(["B-PER", "E-PER", "S-PER"], ["B-PER", "E-PER", "B-PER"]),
                                   (["B-PER", "I-PER", "E-PER", "O"], ["I-PER", "I-PER", "E-PER", "O"]),
                                   (["S-PER", "S-PER"], ["B-PER", "E-PER"])], (9, 3, 3, 3, 5)),
    # BILOU is IOBES with L for E and U for S: the same scores
    "bilou": Case(BILOU_LABELS, [(["B-PER", "L-PER", "U-PER"], ["B-PER", "L-PER", "B-PER"]),
                                 (["B-PER", "I-PER", "L-PER", "O"], ["I-PER", "I-PER", "L-PER", "O"]),
                                 (["U-PER", "U-PER"], ["B-PER", "L-PER"])],
                  None, lenient=(3 / 4, 3 / 5), strict=(1 / 2, 1 / 5)),
    # bracket chunks ([ and ] are one word long; which bracket does not matter): both NP chunks right
    "brackets": Case(None, [(["[-NP", "O", "]-NP"], ["[-NP", "O", "[-NP"])], (3, 2, 2, 2, 2)),
}

# ---------------------------------------------------------------------------- the perl script itself
@needs_perl
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.conlleval is not None])
def test_conlleval_script_counts_hand_cases(name):
    case = CASES[name]
    out = run_conlleval(case.sentences, know_s=case.know_s)
    tokens, gold, found, correct, right = case.conlleval
    assert (out["tokens"], out["gold"], out["found"], out["correct"]) == (tokens, gold, found, correct)
    assert out["accuracy"] == pytest.approx(right / tokens, abs=1e-8)
    assert out["precision"] == pytest.approx(correct / found if found else 0, abs=1e-8)
    assert out["recall"] == pytest.approx(correct / gold if gold else 0, abs=1e-8)


# ---------------------------------------------------------------------------- hf_mtl's scores
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.labels is not None])
def test_token_metrics_hand_cases(name):
    case = CASES[name]
    out = scores(case.sentences, case.labels)
    (p, r), (sp, sr) = case.lenient, case.strict
    expected = {"precision": p, "recall": r, "f1": f1_of(p, r),
                "strict_precision": sp, "strict_recall": sr, "strict_f1": f1_of(sp, sr)}
    words = [(g, q) for gold, pred in case.sentences for g, q in zip(gold, pred)]
    expected["accuracy"] = sum(g == q for g, q in words) / len(words)
    assert out == pytest.approx(expected, abs=1e-12)


@needs_perl
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.labels is not None and c.conlleval is not None])
def test_token_metrics_equal_the_conlleval_script(name):
    case = CASES[name]
    ours, theirs = scores(case.sentences, case.labels), run_conlleval(case.sentences, know_s=case.know_s)
    for key in ("precision", "recall", "f1", "accuracy"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key


# ---------------------------------------------------------------------------- every scheme, many sentences
def _random_entities(rng: random.Random, length: int) -> list[tuple[str, int, int]]:
    entities, i = [], 0
    while i < length:
        if rng.random() < 0.5:
            end = min(length, i + rng.randint(1, 3)) - 1
            entities.append((rng.choice("AB"), i, end))
            i = end + 1
        else:
            i += 1
    return entities


def _without_adjacent(entities, kind: str):
    """`entities` less those of `kind` right after one of `kind` (dropping one only opens a gap)."""
    return [e for before, e in zip([None, *entities], entities)
            if not (e[0] == kind and before and before[0] == kind and before[2] == e[1] - 1)]


def _encode(length: int, entities, scheme: str) -> list[str]:
    """The tags of `scheme` for entities `(type, first word, last word)`."""
    tags = ["O"] * length
    for k, (kind, first, last) in enumerate(entities):
        after_same = k > 0 and entities[k - 1][2] == first - 1 and entities[k - 1][0] == kind
        before_same = k + 1 < len(entities) and entities[k + 1][1] == last + 1 and entities[k + 1][0] == kind
        for i in range(first, last + 1):
            single, start, end = first == last, i == first, i == last
            prefix = {
                "IOB2": "B" if start else "I",
                "IOB1": "B" if start and after_same else "I",
                "IOE2": "E" if end else "I",
                "IOE1": "E" if end and before_same else "I",
                "IOBES": "S" if single else "B" if start else "E" if end else "I",
                "BILOU": "U" if single else "B" if start else "L" if end else "I",
            }[scheme]
            tags[i] = f"{prefix}-{kind}"
    return tags


SCHEME_LABELS = {
    "IOB2": ["O", "B-A", "I-A", "B-B", "I-B"],
    "IOB1": ["O", "I-A", "B-A", "I-B"],  # B has no B-: read as IOB1
    "IOE2": ["O", "I-A", "E-A", "I-B", "E-B"],
    "IOE1": ["O", "I-A", "E-A", "I-B"],
    "IOBES": ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"],
    "BILOU": ["O", "B-A", "I-A", "L-A", "U-A", "B-B", "I-B", "L-B", "U-B"],
}


@pytest.mark.parametrize("scheme", list(SCHEME_LABELS))
def test_every_scheme_scores_well_formed_tags_as_the_entities_they_encode(scheme):
    """For tags that encode entities correctly, the lenient and the strict reading both recover exactly
    those entities, so both scores equal the F1 of the entity sets (seqeval's own strict IOE1 mode fails
    this; hf_mtl reads IOE1 as mirrored IOB1)."""
    labels = SCHEME_LABELS[scheme]
    assert detect_tag_scheme(labels) == scheme
    rng = random.Random(sum(map(ord, scheme)))
    sentences, gold_entities, pred_entities = [], set(), set()
    for row in range(300):
        length = rng.randint(1, 9)
        gold, pred = _random_entities(rng, length), _random_entities(rng, length)
        if scheme in ("IOB1", "IOE1"):  # these label sets have no B-B / E-B: no B right after a B
            gold, pred = _without_adjacent(gold, "B"), _without_adjacent(pred, "B")
        sentences.append((_encode(length, gold, scheme), _encode(length, pred, scheme)))
        gold_entities |= {(row, *e) for e in gold}
        pred_entities |= {(row, *e) for e in pred}
    right = len(gold_entities & pred_entities)
    p, r = right / len(pred_entities), right / len(gold_entities)
    out = scores(sentences, labels)
    assert out["precision"] == pytest.approx(p) and out["recall"] == pytest.approx(r)
    assert out["strict_precision"] == pytest.approx(p) and out["strict_recall"] == pytest.approx(r)
    assert out["f1"] == pytest.approx(f1_of(p, r)) and out["strict_f1"] == pytest.approx(f1_of(p, r))


# ---------------------------------------------------------------------------- schemes, POS tags, refusals
@pytest.mark.parametrize("labels, scheme", [
    (CONLL_LABELS, "IOB2"),
    (["O", "B-PER"], "IOB2"),
    (["B", "I", "O"], "IOB2"),  # bare prefixes: entities without a type
    (["O", "I-PER", "I-LOC", "B-LOC"], "IOB1"),
    (["O", "I-PER"], "IOB1"),
    (["O", "I-PER", "E-PER"], "IOE2"),
    (["O", "I-PER", "E-PER", "I-LOC"], "IOE1"),
    (["O", "B-PER", "I-PER", "E-PER", "S-PER"], "IOBES"),
    (["O", "S-PER"], "IOBES"),
    (["O", "B-PER", "I-PER", "L-PER", "U-PER"], "BILOU"),
    (["O", "B-NP", "I-NP", "B-VP", "I-VP", "B-PP-X", "I-PP-X"], "IOB2"),  # chunk tags; a type with a hyphen
])
def test_scheme_detection(labels, scheme):
    task = TokenClassificationTask("tagger", labels)
    assert task.tag_scheme == scheme and task.main_metric == "f1"


def test_pos_tags_report_word_accuracy_only():
    labels = ["NN", "VB", "DT", "-LRB-", "PRP$", "O"]
    task = TokenClassificationTask("pos", labels)
    assert task.tag_scheme is None and task.main_metric == "accuracy"
    logits, gold = model_outputs([(["DT", "NN", "VB"], ["NN", "NN", "NN"]), (["PRP$", "-LRB-"], ["PRP$", "O"])], labels)
    assert compute_task_metrics(task, logits, gold) == {"accuracy": pytest.approx(2 / 5)}


def test_trainer_averages_a_pos_taggers_word_accuracy(tmp_path, tokenizer):
    """`evaluate()` takes each task's main metric for `eval_average`: word accuracy for a POS tagger."""
    from datasets import Dataset

    from hf_mtl import MultiTaskTrainer, MultiTaskTrainingArguments

    from conftest import make_model

    pos = TokenClassificationTask("pos", ["DT", "NN", "VB"])
    data = Dataset.from_dict({"tokens": [["the", "dog", "runs"], ["a", "cat", "sleeps"]],
                              "tags": [["DT", "NN", "VB"], ["DT", "NN", "VB"]]})
    args = MultiTaskTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = MultiTaskTrainer(model=make_model([pos]), args=args, eval_dataset={"pos": data},
                               processing_class=tokenizer)
    metrics = trainer.evaluate()
    assert "eval_pos_accuracy" in metrics and not any(k.endswith(("f1", "precision", "recall")) for k in metrics)
    assert metrics["eval_average"] == metrics["eval_pos_accuracy"]


@pytest.mark.parametrize("labels, reason", [
    (["O", "B-PER", "I-PER", "S-PER"], r"prefixes \['B', 'I', 'S'\] do not form one of the schemes"),
    (["O", "B-PER", "E-PER", "L-PER"], r"prefixes \['B', 'E', 'L'\] do not form one of the schemes"),
    (["O", "B-PER", "I-PER", "X"], r"\['X'\] are neither `O` nor prefixed entity tags"),
    (["OUT", "B-PER", "I-PER"], r"\['OUT'\] are neither `O` nor prefixed entity tags"),
    (["O", "PER-B", "PER-I"], r"\['PER-B', 'PER-I'\] look like entity tags"),
    (["o", "b-per", "i-per"], r"\['b-per', 'i-per'\] look like entity tags"),
])
def test_tag_sets_no_scheme_reads_are_refused_at_task_creation(labels, reason):
    with pytest.raises(ValueError, match=reason) as error:
        TokenClassificationTask("tagger", labels)
    message = str(error.value)
    assert message.startswith("Task 'tagger': cannot score the tags ") and str(labels) in message
    assert "IOB1/IOB2 (B-, I-), IOE1/IOE2 (I-, E-), IOBES (B-, I-, E-, S-) or BILOU (B-, I-, L-, U-)" in message


def test_refused_tag_sets_are_refused_by_token_metrics_too():
    """token_metrics can be called without a task: it refuses the same tag sets rather than report F1."""
    logits, gold = model_outputs([(["O", "B-PER"], ["O", "B-PER"])], ["O", "B-PER", "I-PER", "S-PER"])
    with pytest.raises(ValueError, match="Token classification: cannot score the tags"):
        token_metrics(logits, gold, dict(enumerate(["O", "B-PER", "I-PER", "S-PER"])))


# ---------------------------------------------------------------------------- real predictions
@pytest.mark.slow
@needs_perl
@pytest.mark.skipif(not CONLL_DIR.is_dir(),
                    reason=f"CoNLL-2003 not found at {CONLL_DIR} (the project's ../shared/data); cross-check skipped")
def test_real_minilm_ner_scores_equal_the_conlleval_script(tmp_path, minilm_dir):
    """MiniLM fine-tuned briefly on 1,000 CoNLL-2003 sentences makes every kind of error, I- starts among
    them; on 500 validation sentences hf_mtl's headline scores equal the perl script's and seqeval's
    default mode's, and strict recall is no higher (every entity strict IOB2 reads is one conlleval reads;
    strict precision, and so strict F1, can be higher: see the `strict_higher` case)."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    from hf_mtl import MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments
    from hf_mtl.data.loaders import read_conll

    started = time.perf_counter()
    task = TokenClassificationTask("ner", CONLL_LABELS)
    model = MultiTaskModel.from_encoder(minilm_dir, tasks=[task])
    args = MultiTaskTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, per_device_eval_batch_size=64,
        learning_rate=1e-4, warmup_steps=0, max_steps=100, save_strategy="no", report_to=[], use_cpu=True,
        seed=0, group_by_length=True, disable_tqdm=True, logging_strategy="no",
    )
    trainer = MultiTaskTrainer(
        model=model, args=args,
        train_dataset={"ner": read_conll(CONLL_DIR / "train.txt").select(range(1000))},
        eval_dataset={"ner": read_conll(CONLL_DIR / "validation.txt").select(range(500))},
    )
    trainer.train()
    reported = trainer.evaluate()
    # the arrays evaluate() scored: the same evaluation loop over the same data loader
    output = trainer.evaluation_loop(trainer.get_task_eval_dataloader("ner", trainer.eval_datasets["ner"]),
                                     description="check", prediction_loss_only=False)
    ours = token_metrics(output.predictions, output.label_ids, task.id2label)
    assert ours == {k.removeprefix("eval_ner_"): v for k, v in reported.items()
                    if k.startswith("eval_ner_") and k.removeprefix("eval_ner_") in ours}
    gold, pred = word_sequences(output.predictions, output.label_ids, task.id2label)
    assert sum(map(len, gold)) == sum(map(len, read_conll(CONLL_DIR / "validation.txt").select(range(500))["tags"]))
    i_starts = sum(tag.startswith("I-") and (i == 0 or seq[i - 1][2:] != tag[2:])
                   for seq in pred for i, tag in enumerate(seq))
    assert i_starts > 0, "the briefly trained model was expected to start some entity with I-"

    theirs = run_conlleval(list(zip(gold, pred)))
    for key in ("precision", "recall", "f1", "accuracy"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-4), key
    assert ours["precision"] == pytest.approx(precision_score(gold, pred)) and ours["recall"] == pytest.approx(
        recall_score(gold, pred)) and ours["f1"] == pytest.approx(f1_score(gold, pred))
    assert ours["strict_recall"] <= ours["recall"]
    print(f"\nMiniLM, 100 steps on 1000 CoNLL-2003 sentences, 500 validation sentences ({i_starts} predicted I- "
          f"starts; {time.perf_counter() - started:.0f} s): f1 {ours['f1']:.4f} (perl {theirs['f1']:.4f}), "
          f"strict_f1 {ours['strict_f1']:.4f}, precision {ours['precision']:.4f}, recall {ours['recall']:.4f}, "
          f"strict_precision {ours['strict_precision']:.4f}, strict_recall {ours['strict_recall']:.4f}, "
          f"accuracy {ours['accuracy']:.4f}")
