"""Each metric against a value computed by hand."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from scipy import stats

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


def test_min_k_averages_the_ceil_k_least_likely_tokens():
    assert metrics.min_k(LOGPROB, 0.2) == pytest.approx(-3 * LN2, rel=1e-6)  # ceil(0.8) = 1 token
    assert metrics.min_k(LOGPROB, 0.5) == pytest.approx(-2.5 * LN2, rel=1e-6)  # 1/8 and 1/4
    assert metrics.min_k(LOGPROB, 1.0) == pytest.approx(-metrics.nll_mean(LOGPROB), rel=1e-6)


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


def test_sequence_logprob_is_log_pz_in_float64():
    assert metrics.sequence_logprob(LOGPROB) == pytest.approx(-7 * LN2, rel=1e-6)
    tiny = np.full(2000, -1.0, dtype=np.float32)  # p_z = e^-2000 underflows, its log does not
    assert metrics.sequence_logprob(tiny) == pytest.approx(-2000.0)


def test_choice_accuracy_counts_ties_as_wrong():
    assert metrics.choice_accuracy(np.array([-3.0, -1.0, -2.0]), 1)
    assert not metrics.choice_accuracy(np.array([-3.0, -1.0, -2.0]), 0)
    assert not metrics.choice_accuracy(np.array([-1.0, -1.0]), 0)


def test_welch_test_matches_the_formula_and_scipy():
    members = np.array([1.0, 2.0, 4.0, 5.0])
    controls = np.array([0.0, 1.0, 0.5])
    diff, t, p = metrics.welch_test(members, controls)
    v1, v2 = members.var(ddof=1) / 4, controls.var(ddof=1) / 3
    assert diff == pytest.approx(3.0 - 0.5)
    assert t == pytest.approx(2.5 / math.sqrt(v1 + v2))
    dof = (v1 + v2) ** 2 / (v1**2 / 3 + v2**2 / 2)  # Welch–Satterthwaite
    assert p == pytest.approx(stats.t.sf(t, dof))
    assert p == pytest.approx(stats.ttest_ind(members, controls, equal_var=False).pvalue / 2)
