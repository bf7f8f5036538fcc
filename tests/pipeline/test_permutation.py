"""The permutation test and its shift interval: exact values, and type-I error and coverage
measured by simulation over random splits (stats review F8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from taggant.pipeline import permutation
from taggant.pipeline.perturb.rng import generator

ALPHA = 0.05


def test_exact_p_counts_the_splits_scoring_at_least_the_observed():
    # 6 ways to pick 2 of 4, with sums 3, 4, 5, 5, 6, 7: only the observed {3, 4} reaches 7.
    got = permutation.shift_test(np.array([3.0, 4.0]), np.array([1.0, 2.0]), seed=0)
    assert got.exact and got.subsets == 6
    assert got.p == pytest.approx(1 / 6)
    assert got.diff == pytest.approx(2.0)
    # Six subsets cannot bound a 95 % interval: no shift is rejected at 2.5 % either way.
    assert got.ci_low == -math.inf and got.ci_high == math.inf


def test_exact_p_matches_scipy_permutation_test():
    rng = np.random.default_rng(3)
    members, controls = rng.lognormal(size=4) + 0.5, rng.lognormal(size=20)
    got = permutation.shift_test(members, controls, seed=0)
    expected = stats.permutation_test(
        (members, controls),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        permutation_type="independent",
        alternative="greater",
        n_resamples=math.inf,
        vectorized=True,
    )
    assert got.exact and got.subsets == math.comb(24, 4)
    assert got.p == pytest.approx(expected.pvalue)


def test_random_subsets_agree_with_the_enumeration_and_are_seeded(monkeypatch):
    rng = np.random.default_rng(4)
    members, controls = rng.normal(0.6, 1, 4), rng.normal(0, 1, 40)
    exact = permutation.shift_test(members, controls, seed=1)
    monkeypatch.setattr(permutation, "EXACT_LIMIT", 0)
    drawn = permutation.shift_test(members, controls, seed=1)
    assert not drawn.exact and drawn.subsets == permutation.RESAMPLES + 1
    se = math.sqrt(exact.p * (1 - exact.p) / permutation.RESAMPLES)
    assert abs(drawn.p - exact.p) < 4 * se + 1 / drawn.subsets
    assert abs(drawn.ci_low - exact.ci_low) < 0.1 and abs(drawn.ci_high - exact.ci_high) < 0.1
    assert permutation.shift_test(members, controls, seed=1) == drawn
    assert permutation.shift_test(members, controls, seed=2) != drawn


def test_interval_is_the_set_of_shifts_neither_one_sided_test_rejects():
    rng = np.random.default_rng(5)
    members, controls = rng.lognormal(size=5) + 1.0, rng.lognormal(size=15)
    got = permutation.shift_test(members, controls, seed=0)
    assert got.ci_low < got.diff < got.ci_high

    def p_greater(shift: float) -> float:
        return permutation.shift_test(members - shift, controls, seed=0).p

    def p_less(shift: float) -> float:
        return permutation.shift_test(controls, members - shift, seed=0).p

    eps = 1e-6
    assert p_greater(got.ci_low + eps) > ALPHA / 2 >= p_greater(got.ci_low - eps)
    assert p_less(got.ci_high - eps) > ALPHA / 2 >= p_less(got.ci_high + eps)


def _lognormal(rng: np.random.Generator, size: int, skew: str) -> np.ndarray:
    x = rng.lognormal(0.0, 1.0, size)
    return x if skew == "right" else -x


@pytest.mark.parametrize("members", [4, 12])
@pytest.mark.parametrize("skew", ["right", "left"])
def test_type_one_error_is_at_most_alpha_under_an_exchangeable_null(members, skew):
    # Welch's one-sided test rejected 0.195 (4 members) and 0.109 (12) of such nulls (left skew).
    replicates = 250
    rejected = 0
    for r in range(replicates):
        rng = generator(0, "test_type_one", skew, f"{members}/{r}")
        scores = _lognormal(rng, members + 40, skew)
        rejected += permutation.shift_test(scores[:members], scores[members:], seed=r).p <= ALPHA
    rate = rejected / replicates
    assert rate <= ALPHA + 2.5 * math.sqrt(ALPHA * (1 - ALPHA) / replicates), rate


@pytest.mark.parametrize("skew", ["right", "left"])
def test_interval_covers_a_true_shift_with_four_members(skew):
    replicates, shift = 250, 0.7
    covered = 0
    for r in range(replicates):
        rng = generator(0, "test_coverage", skew, r)
        members = _lognormal(rng, 4, skew) + shift
        got = permutation.shift_test(members, _lognormal(rng, 40, skew), seed=r)
        covered += got.ci_low <= shift <= got.ci_high
    coverage = covered / replicates
    assert 0.95 - 2.5 * math.sqrt(0.95 * 0.05 / replicates) <= coverage < 0.99, coverage


def test_the_lower_tail_mirrors_the_upper_and_two_sided_holds_its_level():
    rng = np.random.default_rng(5)
    members, controls = rng.lognormal(0, 1, 6), rng.lognormal(0, 1, 30)
    test = permutation.shift_test(members, controls, seed=1)
    mirrored = permutation.shift_test(-members, -controls, seed=1)
    assert test.p_lower == mirrored.p and mirrored.p_lower == test.p
    p = [
        permutation.two_sided(
            permutation.shift_test(*np.split(rng.lognormal(0, 1, 44), [4]), seed=i, resamples=499)
        )
        for i in range(400)
    ]
    assert np.mean(np.array(p) <= 0.05) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 400)
