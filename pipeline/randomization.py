"""Randomization tests: p-values that are exact because members and controls were split at random.

Members and controls of a set are drawn from one generated set and split at random (a fixed-count
split, ``perturb/plan.py``), so under the null "training on an item does not change its score"
the labels are exchangeable given the pooled scores: every relabelling with the same group sizes
is equally likely. A p-value from the permutation distribution of a statistic is then exact
whatever the scores' distribution (skewed, tied, few items), with no normal approximation.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 9999
"""Monte-Carlo relabellings; with the +1 correction the p-value is exact (valid at every level),
and its Monte-Carlo standard error at p = 0.05 is 0.002."""
CHUNK_ELEMENTS = 1 << 22
"""Bound on relabellings × items held at once."""
ALTERNATIVES = ("two-sided", "greater", "less")


def permutation_p(
    members: np.ndarray,
    controls: np.ndarray,
    rng: np.random.Generator,
    alternative: str = "two-sided",
    resamples: int = RESAMPLES,
) -> float:
    """Monte-Carlo permutation p-value of the difference of means, members − controls.

    ``(b + 1) / (resamples + 1)`` with ``b`` the relabellings whose difference is at least as
    extreme as the observed one (``greater``: members higher; ``two-sided``: in absolute value),
    which is exact at every level under exchangeability (the observed labelling counts as one
    draw). Needs at least one member and one control.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative {alternative!r} is not one of {ALTERNATIVES}")
    members, controls = np.asarray(members, float), np.asarray(controls, float)
    if not (len(members) and len(controls)):
        raise ValueError("a permutation test needs at least one member and one control")
    pooled = np.concatenate([members, controls])
    k, total = len(members), pooled.sum()

    def diff(member_sums: np.ndarray) -> np.ndarray:
        return member_sums / k - (total - member_sums) / len(controls)

    observed = diff(np.array(members.sum()))
    # A tolerance so that relabellings equal to the observed one up to rounding count as extreme.
    tol = 1e-12 * max(1.0, float(np.abs(pooled).max()))
    extreme = 0
    step = max(1, CHUNK_ELEMENTS // len(pooled))
    for start in range(0, resamples, step):
        draws = rng.permuted(np.tile(pooled, (min(step, resamples - start), 1)), axis=1)
        d = diff(draws[:, :k].sum(axis=1))
        if alternative == "greater":
            extreme += int(np.count_nonzero(d >= observed - tol))
        elif alternative == "less":
            extreme += int(np.count_nonzero(d <= observed + tol))
        else:
            extreme += int(np.count_nonzero(np.abs(d) >= abs(observed) - tol))
    return (extreme + 1) / (resamples + 1)
