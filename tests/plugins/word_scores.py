"""A task kind defined outside hf_mtl, in one file: one score per word (word-level regression), e.g. lexical
complexity, reading time or prosodic prominence of each word of a pre-split sentence.

Everything the kind needs is here: its head (layers and loss), its pipeline postprocessing, and its task spec
(settings, target encoding, metrics, card wording); `register_task_kind` registers all three. Data
preparation (windows for long sentences, one target per word on its first sub-word) comes from
`WordLevelTask`, and the per-word regrouping for metrics and results from hf_mtl's token-level machinery.
Prepared targets are padded with -100, so a word whose true score is exactly -100 would be ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Value
from torch import nn
from transformers.pipelines.token_classification import AggregationStrategy

from hf_mtl import WordLevelTask, register_task_kind
from hf_mtl.heads_multitask import IGNORE_INDEX, SharedEncoding, TaskHead
from hf_mtl.metrics import regression_metrics
from hf_mtl.postprocessing import PipelineInput, TokenClassificationPostprocessor, Windows, window_offsets
from hf_mtl.tasks import NUMBER

WORD_REGRESSION = "word_regression"


class WordRegressionHead(TaskHead):
    """Per-token dropout -> linear to one score; MSE over the tokens that carry a word's target."""

    task_type = WORD_REGRESSION
    problem_types = (WORD_REGRESSION,)
    token_level = True

    def __init__(self, config: Any, entry: Any):  # the model config and this task's config entry
        super().__init__(config, entry)
        self.dropout = nn.Dropout(config.head_dropout)
        self.scorer = nn.Linear(config.encoder.hidden_size, self.num_labels)

    def forward(self, encoding: SharedEncoding) -> torch.Tensor:
        return self.scorer(self.dropout(encoding.hidden_states))  # (batch, tokens, 1)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(logits.device)  # (batch, tokens), -100 where no word starts
        scored = labels != IGNORE_INDEX
        if not bool(scored.any()):
            return logits.sum() * 0.0  # no word in the batch: nothing to learn, and no NaN
        return nn.functional.mse_loss(logits.squeeze(-1).float()[scored], labels.float()[scored])


class WordScorePostprocessor(TokenClassificationPostprocessor):
    """One `{"word", "start", "end", "score"}` per word of each input (the score of its first sub-word), words
    found with token-classification's `gather` step. Of a long text's overlapping windows, a word at a window's
    edge may be cut (it is whole in the neighbouring window) and is left out there; a word seen whole in two
    windows is reported once, from the one where it has the most context."""

    def batch_outputs(self, logits: np.ndarray) -> np.ndarray:
        return logits  # scores, not probabilities: no softmax

    def results(self, inputs: list[PipelineInput], windows: Windows, outputs: Any, params: Any) -> list[Any]:
        results = []
        for item, window_ids in zip(inputs, windows.per_input(len(inputs))):
            best: dict[int, tuple[int, dict[str, Any]]] = {}  # start offset -> (context, word)
            for k, w in enumerate(window_ids):
                special = np.asarray(windows.special[w], dtype=bool)
                offsets = window_offsets(item, windows, w, special)
                pre = self.gather(item.sentence, np.asarray(windows.input_ids[w]), outputs[w], offsets, special,
                                  AggregationStrategy.FIRST)
                if pre is None:
                    continue
                words = self.words(pre, item.sentence)
                ends = np.append(pre.unit_first[1:], len(pre.positions))
                for first, end in zip(pre.unit_first.tolist(), ends.tolist()):
                    if (first == 0 and k > 0) or (end == len(pre.positions) and k < len(window_ids) - 1):
                        continue  # maybe cut by the window's edge
                    word = {
                        "word": self.pipeline.tokenizer.convert_tokens_to_string(words[first:end]),
                        "start": int(pre.starts[first]),
                        "end": int(pre.ends[end - 1]),
                        "score": float(pre.scores[first, 0]),
                    }
                    context = min(first, len(pre.positions) - end)
                    if word["start"] not in best or context > best[word["start"]][0]:
                        best[word["start"]] = (context, word)
            results.append([word for _, (_, word) in sorted(best.items())])
        return results


@register_task_kind
@dataclass(frozen=True)
class WordRegressionTask(WordLevelTask):
    """One score per word of a pre-split sentence.

    Args:
        name: head name; also the key of this task's datasets.
        labels: optionally, `[name of the score]` (default `"score"`).
        tokens_column: column with the list of words.
        scores_column: column with one number per word.
    """

    task_type = WORD_REGRESSION
    head_class = WordRegressionHead
    postprocessor = WordScorePostprocessor
    card_kind = "word-level regression"
    hub_task_type = "token-classification"
    label_values = NUMBER
    main_metric = "pearson"
    word_target_name = "score"
    word_target_feature = Value("float32")
    label_dtype = torch.float32

    scores_column: str = "scores"

    @property
    def label_column(self) -> str:
        return self.scores_column

    def validate(self) -> None:
        if self.labels is not None and len(self.labels) != 1:
            raise ValueError(
                f"Task {self.name!r}: a word regression task has one score; labels names it, got {list(self.labels)}."
            )

    @classmethod
    def labels_required(cls, settings: Any) -> bool:
        return False

    @classmethod
    def labels_from_config(cls, labels: list[str], entry: Any) -> list[str] | None:
        return None if labels == ["score"] else labels

    def word_target_encoder(self, split: str, feature: Any):
        def encode(values: Sequence[Any], row: int) -> np.ndarray:
            for value in values:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(
                        f"Task {self.name!r}, split {split!r}, row {row}: word score {value!r} is not a finite number."
                    )
            return np.asarray(values, dtype=np.float32)

        return encode

    def compute_metrics(self, predictions: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        """Pearson, Spearman and MSE over every scored word (`predictions` `(sentences, words, 1)`, `label_ids`
        `(sentences, words)`, -100 where a sentence has no such word)."""
        scored = np.asarray(label_ids) != IGNORE_INDEX
        return regression_metrics(np.asarray(predictions)[..., 0][scored], np.asarray(label_ids)[scored])
