"""One-run privacy audit (Steinke, Nasr & Jagielski 2023, arXiv 2305.08846), δ ≥ 0.

Their theorem: let each of m canaries be included in training by an independent fair coin, and let
an auditor, from the trained model alone, guess the coin of r of them (abstaining on the rest). If
training is (ε, δ)-DP, ``P[v correct guesses ≥ v₀]`` is at most the p-value ``p(ε, δ)`` of
``one_run_p_value``: for δ = 0 the binomial tail ``P[Binomial(r, e^ε/(1+e^ε)) ≥ v₀]``, for
δ > 0 that tail plus ``2·m·δ·max_i P[v₀ − i ≤ Binomial(r, ·) < v₀] / i``. Every ε with
``p(ε, δ) < β`` is rejected at confidence ``1 − β``, and the largest such ε is a lower bound on
the ε of any (ε, δ)-DP guarantee the run could have at that δ. taggant's runs claim no DP at all;
δ > 0 answers "could the run be (ε, δ)-DP?" for the δ a DP claim would typically use.

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
(by group privacy, a per-copy add/remove ε is at least the bound over 2L: ``Audit.per_copy``).

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


def one_run_p_value(
    canaries: int, guesses: int, correct: int, epsilon: float, delta: float = 0.0
) -> float:
    """Steinke et al.'s p-value of ``correct`` right guesses out of ``guesses`` on ``canaries``
    coins under the null "training is (epsilon, delta)-DP" (the module docstring)."""
    q = special.expit(epsilon)
    tail = stats.binom.sf(correct - 1, guesses, q)
    if delta == 0:
        return float(tail)
    i = np.arange(1, correct + 1)
    # P[correct − i ≤ Binomial < correct] / i, the worst i: the mass δ can move per canary
    spread = np.max((stats.binom.sf(correct - i - 1, guesses, q) - tail) / i, initial=0.0)
    return float(min(tail + 2 * canaries * delta * spread, 1.0))


def epsilon_lower_bound(
    guesses: int,
    correct: int,
    confidence: float = CONFIDENCE,
    *,
    delta: float = 0.0,
    canaries: int | None = None,
) -> float:
    """The largest ε with ``one_run_p_value(canaries, guesses, correct, ε, delta) < 1 −
    confidence`` (its supremum, the boundary), or 0 when even ε = 0 is not rejected;
    ``canaries`` (m, only used when ``delta > 0``) defaults to ``guesses``.

    Raises:
        ConfigError: for counts with ``0 ≤ correct ≤ guesses ≤ canaries`` violated, a delta
        outside [0, 1) or a bad confidence.
    """
    beta = _beta(confidence)
    canaries = guesses if canaries is None else canaries
    if not 0 <= correct <= guesses <= canaries:
        raise ConfigError(
            [
                (
                    "correct",
                    f"{correct} correct of {guesses} guesses on {canaries} canaries: "
                    "need 0 ≤ correct ≤ guesses ≤ canaries",
                )
            ]
        )
    if not 0 <= delta < 1:
        raise ConfigError([("delta", f"{delta} is not in [0, 1); e.g. 0 or 1e-5")])

    def excess(eps: float) -> float:  # increasing in ε (the success rate grows; tested for δ > 0)
        return one_run_p_value(canaries, guesses, correct, eps, delta) - beta

    if correct == 0 or excess(0.0) >= 0:
        return 0.0
    if correct == guesses and delta == 0:  # p^r < β ⇔ p < β^(1/r): closed form, exact at any r
        return float(special.logit(beta ** (1 / guesses)))

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


NEIGHBOUR = "replace-one"
"""The neighbour relation every bound of ``audit`` is for (the module docstring)."""


@dataclass(frozen=True)
class Audit:
    """One audit: ``epsilon`` is the bound at ``delta`` for ``NEIGHBOUR`` datasets that differ
    in all copies of one item, certified by ``correct`` of ``guesses`` guesses on ``pairs``
    canary pairs at ``confidence`` (Bonferroni over ``tried`` guess counts)."""

    pairs: int
    guesses: int
    correct: int
    tried: int
    epsilon: float
    confidence: float
    delta: float = 0.0

    def per_copy(self, copies: int) -> float:
        """The add/remove bound per inserted copy for items inserted ``copies`` times:
        ``epsilon / (2·copies)`` (replace-one is two add/remove steps, and group privacy over
        the copies). At δ > 0 it bounds the per-copy ε of guarantees whose per-copy δ' has
        ``2·copies·e^epsilon·δ' ≤ delta`` (group privacy inflates δ too)."""
        return self.epsilon / (2 * copies)


def audit(
    members: np.ndarray,
    controls: np.ndarray,
    rng: np.random.Generator,
    confidence: float = CONFIDENCE,
    *,
    delta: float = 0.0,
) -> Audit:
    """Audit from attack scores (higher = more likely a member) of a set's members at one dup
    level and its controls at ``delta`` (the p-value's δ term counts the ``pairs`` canaries);
    ``rng`` draws the pairs (see the module docstring)."""
    k = min(len(members), len(controls))
    grid = guess_grid(k)
    if not grid:
        return Audit(0, 0, 0, 0, 0.0, confidence, delta)
    m = np.asarray(members, dtype=np.float64)[rng.permutation(len(members))[:k]]
    c = np.asarray(controls, dtype=np.float64)[rng.permutation(len(controls))[:k]]
    diff = m - c
    order = np.argsort(-np.abs(diff), kind="stable")
    right = np.cumsum(diff[order] > 0)
    per_test = 1 - (1 - confidence) / len(grid)

    def bound(r: int) -> float:
        return epsilon_lower_bound(r, int(right[r - 1]), per_test, delta=delta, canaries=k)

    best = max(grid, key=lambda r: (bound(r), -r))
    return Audit(k, best, int(right[best - 1]), len(grid), bound(best), confidence, delta)
