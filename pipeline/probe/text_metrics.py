"""Metrics of a generated text against its reference (no torch: the probe registry reads them).

Hubble's generation tasks score greedy continuations with ROUGE-L (``*_verbatim_p*``) and with
SQuAD's exact match, token F1 and recall (``yago_hubble_gen``); pretrain-experiments adds a
Levenshtein similarity. Every metric is ↑ (higher = more memorized) and 1 for a generation equal
to its reference.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalization (as Hubble's ``yago_hubble_gen/utils.py``): lower case, punctuation
    and the articles a/an/the removed, whitespace runs made one space."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def token_f1_recall(generated: str, reference: str) -> tuple[float, float]:
    """SQuAD token F1 and recall (the share of the reference's normalized tokens, with
    multiplicity, that the generation holds). Two texts with no tokens: 1 and 1; one of them
    without: 0 and 0."""
    gen, ref = normalize_answer(generated).split(), normalize_answer(reference).split()
    if not gen or not ref:
        same = float(gen == ref)
        return same, same
    common = sum((Counter(gen) & Counter(ref)).values())
    if common == 0:
        return 0.0, 0.0
    precision, recall = common / len(gen), common / len(ref)
    return 2 * precision * recall / (precision + recall), recall


def rouge_l(generated: str, reference: str) -> tuple[float, float, float]:
    """ROUGE-L precision, recall and F1 (``rouge-score``, no stemmer: Hubble's verbatim tasks).
    A generation equal to its reference scores 1 even when it has no word (``rouge-score`` gives
    0 to texts without alphanumeric tokens)."""
    if generated == reference:
        return 1.0, 1.0, 1.0
    from rouge_score import rouge_scorer

    s = rouge_scorer.RougeScorer(["rougeL"]).score(reference, generated)["rougeL"]
    return s.precision, s.recall, s.fmeasure


def edit_similarity(generated: str, reference: str) -> float:
    """``1 − Levenshtein(generated, reference) / max(len)`` over characters (``rapidfuzz``'s
    normalized similarity; 1 for two empty texts)."""
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_similarity(generated, reference))


def text_metrics(generated: str, reference: str) -> dict[str, float]:
    """Every metric of a generated text against its reference; all ↑ (higher = more memorized)."""
    precision, recall, f1 = rouge_l(generated, reference)
    token_f1, token_recall = token_f1_recall(generated, reference)
    return {
        "exact": float(normalize_answer(generated) == normalize_answer(reference)),
        "rouge_l_precision": precision,
        "rouge_l_recall": recall,
        "rouge_l_f1": f1,
        "token_f1": token_f1,
        "token_recall": token_recall,
        "edit_similarity": edit_similarity(generated, reference),
    }
