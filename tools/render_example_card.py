"""Render `model_cards/example_card.md`: the card template filled with a fixed example run.

    python tools/render_example_card.py            # rewrite model_cards/example_card.md
    python tools/render_example_card.py --check    # exit 1 when the file is out of date (tests/test_card.py)

The example is a quickstart-like run (three tasks, evaluation results, batch mix, hyperparameters) with fixed
framework versions, so the output only changes when the template or the card code does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_mtl.balancers import StaticWeights
from hf_mtl.card import ModelCardInfo, TaskCardInfo, render_model_card
from hf_mtl.sampling import sampling_strategy
from hf_mtl.tasks import SequenceClassificationTask, TokenClassificationTask

EXAMPLE_CARD = Path(__file__).resolve().parents[1] / "model_cards" / "example_card.md"
#: the "Framework versions" of the example (the installed ones would change the file with every upgrade)
VERSIONS = {"hf_mtl": "0.1.0", "transformers": "5.0.0", "torch": "2.13.0", "datasets": "5.0.0", "tokenizers": "0.22.0"}
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def example_info() -> ModelCardInfo:
    """A fixed `ModelCardInfo` that uses every part of the template."""
    tasks = [
        TaskCardInfo.from_task(
            SequenceClassificationTask("sentiment", ["negative", "positive"]), data="SST-2",
            dataset_id="stanfordnlp/sst2", dataset_split="validation", num_train=67349, num_eval=872,
            batch_share=0.5, weight=1.0,
        ),
        TaskCardInfo.from_task(
            SequenceClassificationTask("topic", ["World", "Sports", "Business", "Sci/Tech"]), data="AG News",
            dataset_id="fancyzhx/ag_news", dataset_split="test", num_train=6000, num_eval=1600, batch_share=0.2,
        ),
        TaskCardInfo.from_task(
            TokenClassificationTask("ner", NER_LABELS, tags_column="ner_tags"), data="CoNLL-2003 (local copy)",
            num_train=14041, num_eval=3250, batch_share=0.3, weight=2.0,
        ),
    ]
    results = {
        "eval_sentiment_accuracy": 0.8876, "eval_sentiment_macro_f1": 0.8871, "eval_sentiment_loss": 0.29,
        "eval_topic_accuracy": 0.8925, "eval_topic_macro_f1": 0.8919, "eval_ner_f1": 0.8512,
        "eval_ner_precision": 0.8433, "eval_ner_recall": 0.8593, "eval_ner_accuracy": 0.9712,
        "eval_ner_strict_f1": 0.8407, "eval_ner_strict_precision": 0.8321, "eval_ner_strict_recall": 0.8495,
        "eval_average": 0.8771, "eval_runtime": 12.5,
    }
    return ModelCardInfo(
        model_name="minilm-sentiment-topic-ner",
        tasks=tasks,
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        eval_results=results,
        sampling=sampling_strategy("temperature")(
            [67349, 6000, 14041], 32, temperature=2.0, max_examples_per_task=20000,
            task_names=["sentiment", "topic", "ner"],
        ).describe(),
        loss_balancer=StaticWeights(["sentiment", "topic", "ner"], {"ner": 2.0}).describe(),
        hyperparameters={
            "learning rate": "5e-05", "batch size (per device)": 32, "effective batch size": 32, "max steps": 3000,
            "optimizer steps": 3000, "warmup steps": "0.1 (fraction of training)", "learning-rate schedule": "linear",
            "weight decay": 0.01, "optimizer": "adamw_torch_fused", "precision": "fp32", "max sequence length": 128,
            "seed": 42,
        },
        parameters={"trainable": 22_866_831, "total": 22_866_831},
        repo_id="my-user/minilm-sentiment-topic-ner",
        license="apache-2.0",
        language=["en"],
        tags=["example"],
        datasets=["lhoestq/conll2003"],
        description="An example card: what `hf-mtl train recipes/sentiment_topic_ner.yaml` writes, with made-up scores.",
        plot="training_curves.png",
        example_text="Apple opened a store in Paris and I love it.",
    )


def render() -> str:
    return render_model_card(example_info(), versions=VERSIONS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="Exit 1 if the file differs from a fresh render.")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = EXAMPLE_CARD.read_text(encoding="utf-8") if EXAMPLE_CARD.is_file() else None
        if current != text:
            print(f"{EXAMPLE_CARD} is out of date: run python tools/render_example_card.py", file=sys.stderr)
            return 1
        return 0
    EXAMPLE_CARD.write_text(text, encoding="utf-8")
    print(f"wrote {EXAMPLE_CARD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
