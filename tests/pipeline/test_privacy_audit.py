"""The one-run audit's ε bound against values computed independently, and its false-certification
rate when training leaks nothing."""

import numpy as np
import pytest
from scipy import special, stats

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.privacy_audit import (
    audit,
    epsilon_lower_bound,
    guess_grid,
    guesses_needed,
    one_run_p_value,
    pairs_needed,
)

CEILINGS = {10: 1.05, 30: 2.25, 100: 3.49, 300: 4.60, 1000: 5.81}
"""95%, δ = 0, every guess right (research/anchors-2026-12.md, derived there independently)."""


@pytest.mark.parametrize("guesses, eps", CEILINGS.items())
def test_all_right_matches_the_published_ceilings(guesses, eps):
    assert round(epsilon_lower_bound(guesses, guesses), 2) == eps
    assert guesses_needed(epsilon_lower_bound(guesses, guesses)) == guesses
    assert guesses_needed(eps + 0.01) > guesses


@pytest.mark.parametrize(
    "guesses, correct", [(10, 9), (50, 40), (100, 80), (300, 200), (1000, 700), (20, 15)]
)
def test_the_bound_is_the_edge_of_the_binomial_test(guesses, correct):
    """scipy's binomial tail directly: just below the bound ε is rejected at 5%, just above not."""
    eps = epsilon_lower_bound(guesses, correct)
    assert eps > 0

    def tail(e):
        return stats.binom.sf(correct - 1, guesses, special.expit(e))

    assert tail(eps - 1e-6) < 0.05 <= tail(eps + 1e-6)
    grid = np.linspace(0, 10, 100_001)  # an independent scan for the largest rejected ε
    assert grid[tail(grid) < 0.05].max() == pytest.approx(eps, abs=2e-4)


def test_no_bound_without_evidence():
    assert epsilon_lower_bound(100, 50) == 0.0  # chance level
    assert epsilon_lower_bound(4, 4) == 0.0  # 1/16 > 5%: even perfect is not enough
    assert epsilon_lower_bound(5, 5) > 0  # 1/32 < 5%
    with pytest.raises(ConfigError, match="correct"):
        epsilon_lower_bound(3, 4)


def test_pairs_needed_lets_a_perfect_attack_certify_the_target():
    for eps in (0.5, 1.0, 2.0, 4.0):
        k = pairs_needed(eps)
        assert k >= guesses_needed(eps)
        members, controls = np.arange(k) + 1000.0, np.arange(k, dtype=float)
        assert audit(members, controls, np.random.default_rng(0)).epsilon >= eps
        assert audit(members[:-1], controls[:-1], np.random.default_rng(0)).epsilon < eps


def test_an_audit_of_a_run_that_leaks_nothing_rarely_certifies_anything():
    """Members and controls from one distribution (ε = 0 holds): at 95% confidence at most ~5% of
    audits may certify ε > 0, whichever number of guesses they pick (the Bonferroni correction)."""
    rng = np.random.default_rng(3)
    certified = [
        audit(rng.normal(0, 1, 64), rng.normal(0, 1, 40), rng).epsilon > 0 for _ in range(1000)
    ]
    assert np.mean(certified) <= 0.05


def test_a_strong_attack_is_certified_from_pairs_of_the_smaller_group():
    rng = np.random.default_rng(4)
    result = audit(rng.normal(3, 1, 200), rng.normal(0, 1, 40), rng)
    assert result.pairs == 40 and result.tried == len(guess_grid(40)) and result.epsilon > 0.5
    assert result.correct <= result.guesses <= result.pairs


def naive_p_value(m, r, v, eps, delta):
    """Steinke et al.'s Algorithm 2 as printed, with the loop (an independent implementation)."""
    q = special.expit(eps)
    beta = stats.binom.sf(v - 1, r, q)
    alpha, mass = 0.0, 0.0
    for i in range(1, v + 1):
        mass += stats.binom.pmf(v - i, r, q)
        alpha = max(alpha, mass / i)
    return min(beta + alpha * delta * 2 * m, 1.0)


@pytest.mark.parametrize("delta, eps", [(0.0, 5.809), (1e-5, 5.782), (1e-3, 3.489)])
def test_delta_bounds_match_the_review_figures(delta, eps):
    """stats.md F7: all right, r = m = 1000."""
    assert epsilon_lower_bound(1000, 1000, delta=delta) == pytest.approx(eps, abs=5e-4)


@pytest.mark.parametrize("m, r, v", [(100, 80, 70), (1000, 1000, 1000), (200, 50, 45)])
def test_the_delta_p_value_is_the_papers_and_rises_with_epsilon(m, r, v):
    grid = np.linspace(0, 8, 81)
    p = np.array([one_run_p_value(m, r, v, e, 1e-3) for e in grid])
    assert p == pytest.approx([naive_p_value(m, r, v, e, 1e-3) for e in grid], rel=1e-9)
    assert np.all(np.diff(p) >= -1e-12)  # the bound's root-finding assumes this
    eps = epsilon_lower_bound(r, v, delta=1e-3, canaries=m)
    if eps > 0:
        assert (
            one_run_p_value(m, r, v, eps - 1e-6, 1e-3)
            < 0.05
            <= one_run_p_value(m, r, v, eps + 1e-6, 1e-3)
        )


def test_more_delta_or_more_canaries_never_raise_the_bound():
    assert epsilon_lower_bound(100, 90, delta=1e-4, canaries=100) <= epsilon_lower_bound(100, 90)
    assert epsilon_lower_bound(100, 90, delta=1e-4, canaries=1000) <= epsilon_lower_bound(
        100, 90, delta=1e-4, canaries=100
    )
    with pytest.raises(ConfigError, match="delta"):
        epsilon_lower_bound(10, 10, delta=1.0)


def test_audit_records_delta_and_the_per_copy_bound():
    rng = np.random.default_rng(5)
    result = audit(rng.normal(5, 1, 100), rng.normal(0, 1, 100), rng, delta=1e-5)
    assert result.delta == 1e-5 and result.epsilon > 0
    assert result.epsilon < audit(rng.normal(5, 1, 100), rng.normal(0, 1, 100), rng).epsilon
    assert result.per_copy(16) == pytest.approx(result.epsilon / 32)
