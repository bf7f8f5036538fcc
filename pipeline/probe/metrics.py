"""Memorization metrics from per-token arrays (pure numpy; formulas in research/probes.md §1–2).

Inputs are slices of ``scoring.TokenScores``: ``logprob`` (nats), ``correct`` (argmax = true
token), ``margin``, ``mean`` and ``std``. Each function states its direction: whether a higher
value means "more memorized" (more likely a training member).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

K_FRACTIONS = (0.1, 0.2, 0.5)
"""Fractions k of Min-K% and Min-K%++ reported (MIMIR's default is 0.2)."""

STD_FLOOR = 1e-8
"""Floor on σ in Min-K%++: a one-hot next-token distribution has σ = 0 (and z = 0 for the token
it is sure of)."""


def nll_sum(logprob: np.ndarray) -> float:
    """Total negative log-likelihood in nats, summed in float64. Lower = more memorized."""
    return float(-np.sum(logprob, dtype=np.float64))


def nll_mean(logprob: np.ndarray) -> float:
    """Mean negative log-likelihood per token in nats (the loss). Lower = more memorized."""
    return nll_sum(logprob) / len(logprob)


def perplexity(logprob: np.ndarray) -> float:
    """``exp(nll_mean)``. Lower = more memorized."""
    return math.exp(nll_mean(logprob))


def zlib_bytes(text: str) -> int:
    """Length of ``zlib.compress`` (default level) of the UTF-8 text."""
    return len(zlib.compress(text.encode("utf-8")))


def zlib_ratio(logprob: np.ndarray, text: str) -> float:
    """Mean NLL over zlib-compressed bytes of the same text (Carlini et al. 2021; MIMIR's
    ``loss / len(zlib.compress(text))``): the model's surprise relative to a generic compressor.
    Lower = more memorized."""
    return nll_mean(logprob) / zlib_bytes(text)


def lowest_mean(values: np.ndarray, frac: float) -> float:
    """Mean of the ``floor(frac · T)`` smallest of ``T`` values, as MIMIR, mink++ and LexiMark
    count them (``int(len · ratio)``); at least one, where they would average none (NaN)."""
    count = max(1, math.floor(frac * len(values)))
    return float(np.mean(np.sort(values.astype(np.float64))[:count]))


def min_k(logprob: np.ndarray, frac: float) -> float:
    """Min-K% Prob (Shi et al. 2024): mean log-probability of the least likely ``frac`` of the
    tokens. Higher = more memorized."""
    return lowest_mean(logprob, frac)


def min_k_plus_plus(logprob: np.ndarray, mean: np.ndarray, std: np.ndarray, frac: float) -> float:
    """Min-K%++ (Zhang et al. 2024): z_t = (log p(x_t) − μ_t) / σ_t, with μ_t and σ_t the mean
    and standard deviation of log p(v) under the model's next-token distribution; the mean of the
    lowest ``frac`` of the z_t. Higher = more memorized."""
    z = (logprob.astype(np.float64) - mean) / np.maximum(std, STD_FLOOR)
    return lowest_mean(z, frac)


def exact_match(correct: np.ndarray) -> bool:
    """Greedy decoding from the true prefix reproduces every token (k-extractability via the
    teacher-forcing equivalence, Carlini et al. 2022). True = memorized."""
    return bool(np.all(correct))


def correct_prefix_length(correct: np.ndarray) -> int:
    """Leading tokens that greedy decoding reproduces before its first mistake. Higher = more
    memorized."""
    wrong = np.flatnonzero(~correct)
    return int(wrong[0]) if len(wrong) else len(correct)


def token_accuracy(correct: np.ndarray) -> float:
    """Fraction of tokens that are the argmax given the true context (Tirumala et al. 2022).
    Higher = more memorized."""
    return float(np.mean(correct))


def decisive_margin(correct: np.ndarray, margin: np.ndarray) -> float:
    """Top-1 − top-2 logit margin of the position that decided the greedy outcome: the first
    mismatch, or for an exact match the narrowest margin of the span. A small value flags a
    near-tie that real (bf16, KV-cached) decoding could resolve the other way. No direction."""
    wrong = np.flatnonzero(~correct)
    return float(margin[wrong[0]]) if len(wrong) else float(np.min(margin))


def extraction_strength(correct: np.ndarray) -> float:
    """Extraction strength (open-unlearning's ``extraction_strength``, Wang et al. 2025):
    ``1 − k/|y|`` for the smallest prefix length ``k`` of the target ``y`` after which greedy
    decoding, given the prompt and ``y[:k]``, reproduces all of ``y[k:]``; 0 when even the last
    token is wrong (``k = |y|``; open-unlearning's loop stops at ``|y| − 1`` and gives ``1/|y|``).
    Higher = more memorized."""
    wrong = np.flatnonzero(~correct)
    k = int(wrong[-1]) + 1 if len(wrong) else 0
    return 1.0 - k / len(correct)


def extraction_probability(log_pz: float, queries: int) -> float:
    """(n, p)-discoverable extraction (Hayes et al. 2024): the probability ``1 − (1 − p_z)^n``
    that at least one of ``n = queries`` samples reproduces the span, from ``log p_z``
    (``sequence_logprob``). Computed as ``−expm1(n · log(1 − p_z))``, which keeps ``n · p_z``
    when ``p_z`` is far below float64's epsilon. Higher = more memorized."""
    if log_pz == 0.0:
        return 1.0
    # log(1 − e^x) without cancellation on either side of x = −ln 2 (Mächler's log1mexp).
    log_miss = (
        math.log(-math.expm1(log_pz)) if log_pz > -math.log(2) else math.log1p(-math.exp(log_pz))
    )
    return max(0.0, -math.expm1(queries * log_miss))  # max: +0.0, not −0.0, for p_z = 0


def sequence_logprob(logprob: np.ndarray) -> float:
    """``log p_z``: log-probability (nats, float64) that one sample reproduces the whole span, the
    input of (n, p)-discoverable extraction (Hayes et al. 2024): n queries succeed with probability
    ``1 − (1 − p_z)^n``. Higher = more memorized; may be ``-inf`` under top-k sampling."""
    return float(np.sum(logprob, dtype=np.float64))


def choice_accuracy(choice_scores: np.ndarray, answer: int) -> bool:
    """Multiple choice by likelihood (lm-evaluation-harness ``acc``): the answer has the highest
    score among the choices (ties count as wrong). True = answered correctly."""
    best = np.flatnonzero(choice_scores == np.max(choice_scores))
    return len(best) == 1 and int(best[0]) == answer
