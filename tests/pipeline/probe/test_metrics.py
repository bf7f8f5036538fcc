"""Each metric against a value computed by hand."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from taggant.pipeline.probe import metrics

LN2 = math.log(2)
# Four tokens with probabilities 1/2, 1/8, 1/2, 1/4.
LOGPROB = np.log(np.array([0.5, 0.125, 0.5, 0.25], dtype=np.float32))


def test_loss_and_perplexity():
    total = LN2 + 3 * LN2 + LN2 + 2 * LN2  # 7 ln 2
    assert metrics.nll_sum(LOGPROB) == pytest.approx(total, rel=1e-6)
    assert metrics.nll_mean(LOGPROB) == pytest.approx(total / 4, rel=1e-6)
    assert metrics.perplexity(LOGPROB) == pytest.approx(2 ** (7 / 4), rel=1e-6)


def test_zlib_ratio_divides_the_loss_by_the_compressed_size():
    text = "abab abab abab"
    assert metrics.zlib_bytes(text) == len(zlib.compress(text.encode()))
    expected = 7 * LN2 / 4 / len(zlib.compress(text.encode()))
    assert metrics.zlib_ratio(LOGPROB, text) == pytest.approx(expected)


def test_min_k_averages_the_floor_k_least_likely_tokens_as_the_references_do():
    # MIMIR, mink++ and LexiMark take int(k · T) tokens: 0.6 · 4 → 2 (1/8 and 1/4), not 3.
    assert metrics.min_k(LOGPROB, 0.6) == pytest.approx(-2.5 * LN2, rel=1e-6)
    assert metrics.min_k(LOGPROB, 0.5) == pytest.approx(-2.5 * LN2, rel=1e-6)
    assert metrics.min_k(LOGPROB, 1.0) == pytest.approx(-metrics.nll_mean(LOGPROB), rel=1e-6)
    # Where they average no token (NaN), one: the least likely.
    assert metrics.min_k(LOGPROB, 0.2) == pytest.approx(-3 * LN2, rel=1e-6)


def test_min_k_plus_plus_standardizes_by_the_next_token_distribution():
    mean = np.full(4, -2 * LN2)
    std = np.full(4, LN2)
    # z = (log p + 2 ln 2) / ln 2 = (1, −1, 1, 0); the lowest half is (−1, 0).
    assert metrics.min_k_plus_plus(LOGPROB, mean, std, 0.5) == pytest.approx(-0.5, abs=1e-6)
    assert metrics.min_k_plus_plus(LOGPROB, mean, np.zeros(4), 0.2) < -1e6  # σ = 0 is floored


def test_greedy_extraction_metrics():
    correct = np.array([True, True, False, True])
    margin = np.array([2.0, 0.5, 0.1, 3.0])
    assert not metrics.exact_match(correct)
    assert metrics.correct_prefix_length(correct) == 2
    assert metrics.token_accuracy(correct) == 0.75
    assert metrics.decisive_margin(correct, margin) == 0.1  # the first mismatch
    assert metrics.exact_match(np.ones(3, bool))
    assert metrics.correct_prefix_length(np.ones(3, bool)) == 3
    assert metrics.decisive_margin(np.ones(2, bool), np.array([2.0, 0.5])) == 0.5  # the narrowest


def test_extraction_strength_is_one_minus_the_shortest_prefix_after_which_greedy_completes():
    # Wrong at positions 1 and 3 of 5: from k = 4 on greedy decoding completes the rest.
    assert metrics.extraction_strength(np.array([True, False, True, False, True])) == 1 - 4 / 5
    assert metrics.extraction_strength(np.ones(4, bool)) == 1.0  # from k = 0: the whole target
    # Last token wrong: only k = |y| (nothing left to complete) works. open-unlearning's loop
    # stops at k = |y| − 1 and reports 1/|y| here.
    assert metrics.extraction_strength(np.array([True, True, False])) == 0.0


def test_extraction_probability_is_one_minus_the_chance_that_n_samples_all_miss():
    log_pz = math.log(0.1)
    assert metrics.extraction_probability(log_pz, 1) == pytest.approx(0.1)
    assert metrics.extraction_probability(log_pz, 10) == pytest.approx(1 - 0.9**10)
    assert metrics.extraction_probability(0.0, 5) == 1.0  # p_z = 1
    assert metrics.extraction_probability(-math.inf, 1000) == 0.0  # not samplable (top-k)
    # p_z = e^-40: 1 − (1 − p_z)^n rounds to 0 in float64; the result keeps n · p_z.
    assert metrics.extraction_probability(-40.0, 1000) == pytest.approx(1000 * math.exp(-40))


def test_sequence_logprob_is_log_pz_in_float64():
    assert metrics.sequence_logprob(LOGPROB) == pytest.approx(-7 * LN2, rel=1e-6)
    tiny = np.full(2000, -1.0, dtype=np.float32)  # p_z = e^-2000 underflows, its log does not
    assert metrics.sequence_logprob(tiny) == pytest.approx(-2000.0)


def test_choice_accuracy_counts_ties_as_wrong():
    assert metrics.choice_accuracy(np.array([-3.0, -1.0, -2.0]), 1)
    assert not metrics.choice_accuracy(np.array([-3.0, -1.0, -2.0]), 0)
    assert not metrics.choice_accuracy(np.array([-1.0, -1.0]), 0)
