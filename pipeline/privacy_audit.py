"""One-run privacy audit (Steinke, Nasr & Jagielski 2023, arXiv 2305.08846), the δ = 0 version.

Their theorem: let each of m canaries be included in training by an independent fair coin, and let
an auditor, from the trained model alone, guess the coin of r of them (abstaining on the rest). If
training is ε-DP, the number v of correct guesses is stochastically dominated by
``Binomial(r, e^ε / (1 + e^ε))``. So every ε with ``P[Binomial(r, e^ε/(1+e^ε)) ≥ v] < β`` is
rejected at confidence ``1 − β``, and the largest such ε is a lower bound on the ε of any DP
guarantee the run could have. The δ > 0 version of their theorem (an extra ``δ``-dependent term
in the p-value) is not implemented: taggant audits runs that claim no DP at all.

**Canaries from taggant's members and controls.** A set's split is a fixed number of controls
drawn at random, not a coin per item, and a fixed-count split breaks the theorem (with k members
of 2k items an auditor who guesses all 2k is right with probability ``1/C(2k, k)``, not
``2^-2k``). Pairs restore the coins: draw k = min(members, controls) of each at random and match
them at random; then which item of each pair was inserted is an independent fair coin (a uniform
balanced labelling with a uniform matching is a uniform pairing with an independent orientation
per pair). Each pair is one canary; the auditor guesses that the item with the higher score is
the member, on the r pairs whose scores differ most (a tie counts as wrong). Flipping one coin
swaps which item of a pair is trained on, so the bound is for **replace-one** neighbours: a run
that is ε-DP for add/remove is 2ε-DP for replace-one, so half the bound lower-bounds an
add/remove ε. Members at dup level L are inserted L times: the bound is for inserting L copies
(by group privacy, a per-copy ε is at least the bound over L).

The auditor tries r in ``1, 2, 4, …`` and ``k`` and reports the best bound, each test at
``β / (number of r tried)`` (Bonferroni), so choosing r after seeing the scores keeps the
confidence honest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from taggant.pipeline.errors import ConfigError

CONFIDENCE = 0.95


def _beta(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ConfigError([("confidence", f"{confidence} is not in (0, 1); e.g. {CONFIDENCE}")])
    return 1 - confidence


def epsilon_lower_bound(guesses: int, correct: int, confidence: float = CONFIDENCE) -> float:
    """The largest ε with ``P[Binomial(guesses, e^ε/(1+e^ε)) ≥ correct] < 1 − confidence``
    (its supremum, the boundary), or 0 when even ε = 0 is not rejected.

    Raises:
        ConfigError: for counts with ``0 ≤ correct ≤ guesses`` violated or a bad confidence.
    """
    beta = _beta(confidence)
    if not 0 <= correct <= guesses:
        raise ConfigError(
            [("correct", f"{correct} correct of {guesses} guesses: need 0 ≤ correct ≤ guesses")]
        )
    if correct == 0 or stats.binom.sf(correct - 1, guesses, 0.5) >= beta:
        return 0.0
    if correct == guesses:  # p^r < β ⇔ p < β^(1/r): closed form, exact at any r
        return float(special.logit(beta ** (1 / guesses)))

    def excess(eps: float) -> float:  # increasing in ε: the tail grows with the success rate
        return stats.binom.sf(correct - 1, guesses, special.expit(eps)) - beta

    high = 1.0
    while excess(high) < 0:
        high *= 2
    return float(optimize.brentq(excess, 0.0, high, xtol=1e-12))


def guess_grid(pairs: int) -> list[int]:
    """The numbers of guesses the auditor tries with ``pairs`` canaries: powers of two and all."""
    grid = [2**j for j in range(int(math.log2(pairs)) + 1)] if pairs else []
    return sorted({*grid, pairs} - {0})


def guesses_needed(epsilon: float, confidence: float = CONFIDENCE) -> int:
    """The fewest guesses r, all right, that certify ``epsilon`` with r fixed in advance:
    the smallest r with ``epsilon_lower_bound(r, r) ≥ epsilon``."""
    beta = _beta(confidence)
    if epsilon <= 0:
        raise ConfigError([("epsilon", f"{epsilon} is not positive: every run certifies ε ≥ 0")])
    r = max(1, math.ceil(math.log(beta) / math.log(special.expit(epsilon))))
    while r > 1 and epsilon_lower_bound(r - 1, r - 1, confidence) >= epsilon:  # float rounding
        r -= 1
    return r


def pairs_needed(epsilon: float, confidence: float = CONFIDENCE) -> int:
    """The fewest canary pairs (k members at a dup level and k controls) with which a perfect
    attack, guessing every pair right, makes ``audit`` certify ``epsilon``, its Bonferroni
    correction over ``guess_grid`` included."""
    k = guesses_needed(epsilon, confidence)
    while epsilon_lower_bound(k, k, 1 - _beta(confidence) / len(guess_grid(k))) < epsilon:
        k += 1
    return k


PLANNING_EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Targets of ``pairs_needed_table``."""


def pairs_needed_table(confidence: float = CONFIDENCE) -> list[dict]:
    """For each of ``PLANNING_EPSILONS``: the guesses a perfect attack needs with r fixed in
    advance and the pairs ``audit`` needs (members at one dup level, and as many controls)."""
    return [
        {
            "epsilon": eps,
            "guesses": guesses_needed(eps, confidence),
            "pairs": pairs_needed(eps, confidence),
            "confidence": confidence,
        }
        for eps in PLANNING_EPSILONS
    ]


@dataclass(frozen=True)
class Audit:
    """One audit: ``epsilon`` is the bound, certified by ``correct`` of ``guesses`` guesses on
    ``pairs`` canary pairs at ``confidence`` (Bonferroni over ``tried`` guess counts)."""

    pairs: int
    guesses: int
    correct: int
    tried: int
    epsilon: float
    confidence: float


def audit(
    members: np.ndarray,
    controls: np.ndarray,
    rng: np.random.Generator,
    confidence: float = CONFIDENCE,
) -> Audit:
    """Audit from attack scores (higher = more likely a member) of a set's members at one dup
    level and its controls; ``rng`` draws the pairs (see the module docstring)."""
    k = min(len(members), len(controls))
    grid = guess_grid(k)
    if not grid:
        return Audit(0, 0, 0, 0, 0.0, confidence)
    m = np.asarray(members, dtype=np.float64)[rng.permutation(len(members))[:k]]
    c = np.asarray(controls, dtype=np.float64)[rng.permutation(len(controls))[:k]]
    diff = m - c
    order = np.argsort(-np.abs(diff), kind="stable")
    right = np.cumsum(diff[order] > 0)
    per_test = 1 - (1 - confidence) / len(grid)
    best = max(grid, key=lambda r: (epsilon_lower_bound(r, int(right[r - 1]), per_test), -r))
    v = int(right[best - 1])
    return Audit(k, best, v, len(grid), epsilon_lower_bound(best, v, per_test), confidence)
