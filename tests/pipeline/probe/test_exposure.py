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
