"""Two-sample permutation test of a mean difference, and the shift interval it inverts to.

The members and controls of a perturbation set are a random split of items generated alike. Under
the null that insertion changed nothing, every k-subset of the n pooled scores is equally likely to
be the members' scores, so the permutation distribution of the members' sum is exact whatever the
scores' distribution: skewed, heavy-tailed, with a handful of members (where Welch's t is not:
stats review F8). The p-value enumerates every k-subset when there are at most ``EXACT_LIMIT``,
else draws ``RESAMPLES`` uniform k-subsets and counts the observed split as one of them
(``(b + 1) / (B + 1)``, valid at every B).

The interval inverts the same test under a location-shift model (members' scores are controls'
shifted by δ): it is the set of δ that neither one-sided test at level ``(1 − level) / 2`` rejects
for ``members − δ`` against ``controls``. Given that model its coverage is at least ``level``
exactly (over the random split). Without it (a change of spread or shape, not only of location) δ
is not the mean difference and coverage is not guaranteed: ``bench/stats_probes.py`` measures it.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 200_000
"""Enumerate every k-subset of the pooled items when there are at most this many."""

RESAMPLES = 9999
"""Random k-subsets drawn when there are more than ``EXACT_LIMIT``."""

_CHUNK = 1000  # random subsets drawn at once: bounds memory at _CHUNK × n floats


@dataclass(frozen=True)
class ShiftTest:
    """A permutation test of members against controls.

    Attributes:
        diff: ``mean(members) − mean(controls)``.
        p: one-sided p-value that members score higher (the null: insertion changed nothing).
        p_lower: one-sided p-value that members score lower, from the same splits.
        ci_low, ci_high: the shift interval (module docstring); ±inf where too few subsets exist
            to bound it at the level asked.
        subsets: k-subsets the p-value is over: ``C(n, k)`` when exact, else ``RESAMPLES + 1``
            (the observed split counted). The smallest p possible is ``1 / subsets``.
        exact: whether every k-subset was enumerated.
    """

    diff: float
    p: float
    p_lower: float
    ci_low: float
    ci_high: float
    subsets: int
    exact: bool


def shift_test(
    members: np.ndarray,
    controls: np.ndarray,
    seed: int,
    level: float = 0.95,
    resamples: int = RESAMPLES,
) -> ShiftTest:
    """Permutation p-value and shift interval of members' scores against controls'.

    Args:
        members, controls: per-item scores (higher = more memorized); at least one of each.
        seed: seeds the random subsets when they are not enumerated (``perturb.rng.derive_seed``
            of the set and level): the result is a function of the arguments alone.
        level: two-sided confidence level of the interval.
        resamples: random subsets drawn when ``C(n, k) > EXACT_LIMIT``.
    """
    members = np.asarray(members, dtype=np.float64)
    controls = np.asarray(controls, dtype=np.float64)
    assert len(members) >= 1 and len(controls) >= 1, "a permutation test needs both groups"
    k = len(members)
    pooled = np.concatenate([members, controls])
    observed = float(np.sum(members))
    # Sums of the same values in another order differ by rounding: count those as ties.
    tol = 1e-9 * k * max(1.0, float(np.max(np.abs(pooled))))
    exact = math.comb(len(pooled), k) <= EXACT_LIMIT
    sums, from_members = [], []
    for chunk in _subsets(len(pooled), k, seed, resamples, exact):
        sums.append(pooled[chunk].sum(axis=1))
        from_members.append(np.count_nonzero(chunk < k, axis=1))
    sums, from_members = np.concatenate(sums), np.concatenate(from_members)
    observed_counted = 0 if exact else 1
    total = len(sums) + observed_counted
    p = (observed_counted + np.count_nonzero(sums >= observed - tol)) / total
    p_lower = (observed_counted + np.count_nonzero(sums <= observed + tol)) / total

    # Shifting members by δ moves a subset holding j of them by −jδ and the observed split by
    # −kδ, so a subset with j < k scores at least the observed iff δ ≥ its threshold below;
    # subsets of all members (the observed split) always tie it.
    moved = from_members < k
    thresholds = (observed - sums[moved]) / (k - from_members[moved])
    always = total - len(thresholds)
    # The one-sided p at δ is (always + #{threshold ≤ δ}) / total; it exceeds the tail
    # (1 − level) / 2 iff at least `need` thresholds are ≤ δ (and mirrored for the other side).
    need = math.floor((1 - level) / 2 * total - always) + 1
    if need <= 0:
        low, high = -math.inf, math.inf
    else:
        ranks = (need - 1, len(thresholds) - need)
        low, high = (float(t) for t in np.partition(thresholds, ranks)[list(ranks)])
    return ShiftTest(
        diff=float(np.mean(members) - np.mean(controls)),
        p=float(p),
        p_lower=float(p_lower),
        ci_low=low,
        ci_high=high,
        subsets=total,
        exact=exact,
    )


def two_sided(test: ShiftTest) -> float:
    """The two-sided p-value of a test: twice the smaller one-sided one, at most 1 (for a score
    whose direction of memorization is not known, e.g. a loss or a rate)."""
    return min(1.0, 2 * min(test.p, test.p_lower))


def _subsets(n: int, k: int, seed: int, resamples: int, exact: bool) -> Iterator[np.ndarray]:
    """Index arrays of k-subsets of ``range(n)``, in chunks: every one, or ``resamples`` uniform
    draws (the k smallest of n iid uniforms are a uniform k-subset)."""
    if exact:
        yield _all_subsets(n, k)
        return
    rng = np.random.Generator(np.random.PCG64(seed))
    for start in range(0, resamples, _CHUNK):
        draws = rng.random((min(_CHUNK, resamples - start), n))
        yield np.argpartition(draws, k - 1, axis=1)[:, :k]


@functools.lru_cache(maxsize=8)
def _all_subsets(n: int, k: int) -> np.ndarray:
    """Every k-subset of ``range(n)`` as rows (cached: a set's levels share n and often k)."""
    flat = itertools.chain.from_iterable(itertools.combinations(range(n), k))
    out = np.fromiter(flat, dtype=np.int32, count=math.comb(n, k) * k).reshape(-1, k)
    out.flags.writeable = False
    return out
