"""Exposure by rank and by skew-normal extrapolation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from taggant.pipeline.probe import exposure


def test_rank_counts_references_at_least_as_likely():
    refs = np.array([4.0, 6.0, 8.0, 10.0, 12.0])
    assert exposure.rank(7.0, refs) == 3
    assert exposure.rank(8.0, refs) == 4  # a tie ranks the secret below the reference
    assert exposure.rank(1.0, refs) == 1
    # Rank 3 among 6 candidates: log2 6 − log2 3 = 1 bit; the best secret gets log2 6.
    assert exposure.exposure_by_rank(7.0, refs) == pytest.approx(1.0)
    assert exposure.exposure_by_rank(1.0, refs) == pytest.approx(math.log2(6))
    assert exposure.exposure_by_rank(99.0, refs) == 0.0


def test_extrapolation_on_a_gaussian_sample_matches_the_normal_tail():
    refs = np.random.default_rng(0).normal(50.0, 4.0, 20_000)
    fit = exposure.fit_skewnorm(refs)
    for z in (-1.0, -2.0, -3.0):
        analytic = -math.log2(stats.norm.cdf(z))
        estimate = exposure.exposure_by_extrapolation(50.0 + 4.0 * z, fit, 100.0)
        assert estimate == pytest.approx(analytic, rel=0.05)


def test_extrapolation_is_capped_by_the_randomness_space():
    fit = exposure.fit_skewnorm(np.random.default_rng(1).normal(50.0, 4.0, 1000))
    assert exposure.exposure_by_extrapolation(0.0, fit, 20.0) == 20.0  # 12 σ below: far past 2^-20
    assert exposure.exposure_by_extrapolation(90.0, fit, 20.0) == pytest.approx(0.0, abs=1e-6)


def test_with_nothing_learnt_exposure_has_median_one_bit_and_mean_1_44():
    # The secret exchangeable with its m references: its rank is uniform on 1..m + 1.
    m, replicates = 1000, 4000
    nll = np.random.default_rng(2).normal(size=(replicates, m + 1))
    bits = np.array([exposure.exposure_by_rank(row[0], row[1:]) for row in nll])
    assert np.median(bits) == pytest.approx(1.0, abs=0.05)
    assert np.mean(bits) == pytest.approx(1 / math.log(2), abs=4 * np.std(bits) / replicates**0.5)


def test_too_few_or_equal_references_are_not_extrapolated():
    rng = np.random.default_rng(3)
    assert not exposure.can_fit(rng.normal(size=20))
    assert not exposure.can_fit(np.full(exposure.MIN_FIT_REFERENCES, 4.0))
    assert exposure.can_fit(rng.normal(size=exposure.MIN_FIT_REFERENCES))


def test_bootstrap_interval_covers_a_known_exposure_from_200_skew_normal_references():
    # A known truth: references skew-normal, the secret's NLL at the model's 2^-20 quantile.
    a, loc, scale, true_bits, cap = 4.0, 50.0, 5.0, 20.0, 64.0
    secret = stats.skewnorm.ppf(2.0**-true_bits, a, loc, scale)
    replicates, covered, widths = 5, 0, []
    for r in range(replicates):
        refs = stats.skewnorm.rvs(a, loc, scale, size=200, random_state=np.random.default_rng(r))
        low, high = exposure.bootstrap_interval(secret, refs, cap, seed=r)
        estimate = exposure.exposure_by_extrapolation(secret, exposure.fit_skewnorm(refs), cap)
        assert 0 <= low <= estimate <= high <= cap
        covered += low <= true_bits <= high
        widths.append(high - low)
    # Nominal 95 %, measured 0.83 ± 0.04 here by bench/stats_probes.py (100 replicates): at
    # least 3 of 5 unless it is broken. Not the vacuous [0, cap], though 200 references leave a
    # 20-bit tail quantile ~25–30 bits wide.
    assert covered >= 3, covered
    assert np.median(widths) < cap / 2, widths
    assert exposure.bootstrap_interval(secret, refs, cap, seed=0) == exposure.bootstrap_interval(
        secret, refs, cap, seed=0
    )
