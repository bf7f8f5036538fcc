"""Two-sample ROC statistics of membership scores: AUROC with a CI that never collapses, the
randomization p-value of "members score higher", and TPR at a low FPR with a CI.

Everything here takes ``members`` and ``controls`` (higher score = more likely a member) and is
conditional on the two groups being a random split of one pool of items (taggant's controls are
drawn at random from each set), so under "training did nothing" the scores are exchangeable.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

AUROC_CI_METHOD = (
    "logit Wald, var max(DeLong, Hanley-McNeil); end away from 1/2 centred on (U+1/2)/(mn+1), "
    "end towards 1/2 on (U+(m+n)/4)/(mn+(m+n)/2)"
)
"""How ``auroc_ci`` builds its interval (stored beside every interval)."""
NUM_PERMUTATIONS = 9999
"""Monte Carlo permutations of ``mann_whitney_p`` where complete enumeration is too costly."""
EXACT_BUDGET = 100_000_000
"""Largest ``items × members × rank-sum range`` enumerated exactly (60 members and 60 controls:
8e7, a tenth of a second)."""
MIN_CONTROLS_PER_FPR = 10
"""``tpr_at_fpr`` needs at least this many controls per unit of ``1 / target``, so that the
threshold sits near the ``10``th highest control rather than on the single highest one."""


def roc(members: np.ndarray, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of the rule ``score ≥ t`` at every distinct score t, from high to low,
    with (0, 0) first and (1, 1) last."""
    thresholds = np.unique(np.concatenate([members, controls]))[::-1]
    tpr = (len(members) - np.searchsorted(np.sort(members), thresholds, "left")) / len(members)
    fpr = (len(controls) - np.searchsorted(np.sort(controls), thresholds, "left")) / len(controls)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def _placements(members: np.ndarray, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values: per member the share of controls below it, per control the
    share of members above it (ties count one half)."""
    sorted_c, sorted_m = np.sort(controls), np.sort(members)
    below = np.searchsorted(sorted_c, members, "left") + np.searchsorted(sorted_c, members, "right")
    above = 2 * len(members) - (
        np.searchsorted(sorted_m, controls, "left") + np.searchsorted(sorted_m, controls, "right")
    )
    return below / (2 * len(controls)), above / (2 * len(members))


def auroc(members: np.ndarray, controls: np.ndarray) -> float:
    """``P[member > control] + P[tie]/2``: the Mann–Whitney U over ``m·n``."""
    return float(_placements(members, controls)[0].mean())


def _logit_wald(centre: float, delong: float, m: int, n: int, z: float) -> tuple[float, float]:
    """The Wald interval on the logit scale around ``centre`` with the larger of DeLong's and
    Hanley & McNeil's (at ``centre``) variance, mapped back to the AUROC scale."""
    q1, q2 = centre / (2 - centre), 2 * centre**2 / (1 + centre)
    hanley = (centre * (1 - centre) + (m - 1) * (q1 - centre**2) + (n - 1) * (q2 - centre**2)) / (
        m * n
    )
    # the delta method: d logit / dA = 1 / (A (1 − A))
    half = z * math.sqrt(max(delong, hanley)) / (centre * (1 - centre))
    logit = special.logit(centre)
    return float(special.expit(logit - half)), float(special.expit(logit + half))


def auroc_ci(
    members: np.ndarray, controls: np.ndarray, confidence: float
) -> tuple[float, float] | tuple[None, str]:
    """A two-sided ``confidence`` interval for the AUROC (``AUROC_CI_METHOD``), or
    ``(None, reason)`` below 2 members or 2 controls.

    Each end is a Wald end on the logit scale with the larger of DeLong's variance
    (distribution-free, but zero at perfect separation) and Hanley & McNeil's (1982) variance at
    the centre (never zero), so both ends stay strictly inside (0, 1) and no interval has zero
    width. The two ends use different centres, because one centre cannot serve both at
    separation: the end away from 1/2 is centred on ``(U + 1/2)/(mn + 1)`` (finite logit, and a
    variance small enough to reach near the boundary), the end towards 1/2 on the AUROC with half
    a pseudo-member and half a pseudo-control tied with everything, ``(U + (m+n)/4)/(mn +
    (m+n)/2)`` (with the ½ correction alone its logit variance grows like n and the end falls to
    near 0). Coverage is asymptotic and measured by simulation (``tests``, ``bench/stats_mia``):
    ≥ 0.95 at 20 / 20 items for true AUROC 0.5–0.999, binormal and exponential scores.
    """
    m, n = len(members), len(controls)
    if min(m, n) < 2:
        return None, "the AUROC CI needs ≥ 2 members and ≥ 2 controls"
    v10, v01 = _placements(members, controls)
    u = v10.sum() * n
    delong = v10.var(ddof=1) / m + v01.var(ddof=1) / n
    z = stats.norm.ppf(0.5 + confidence / 2)
    outer = _logit_wald((u + 0.5) / (m * n + 1), delong, m, n, z)
    pseudo = (m + n) / 4
    inner = _logit_wald((u + pseudo) / (m * n + 2 * pseudo), delong, m, n, z)
    if u >= m * n / 2:
        return inner[0], outer[1]
    return outer[0], inner[1]


def _doubled_ranks(members: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """Twice the mid-ranks of the pooled scores, members first: integers even with ties."""
    pooled = np.concatenate([members, controls])
    return np.rint(2 * stats.rankdata(pooled)).astype(np.int64)


def mann_whitney_p(
    members: np.ndarray,
    controls: np.ndarray,
    rng: np.random.Generator,
    num_permutations: int = NUM_PERMUTATIONS,
    exact_budget: int = EXACT_BUDGET,
) -> tuple[float, str]:
    """The one-sided p-value of "members score higher" and how it was computed.

    The statistic is the members' rank sum (mid-ranks for ties, so it is U plus a constant), and
    its null distribution is the permutation distribution given the pooled scores: every way of
    choosing which ``m`` of the ``m + n`` items are members is equally likely, which the random
    split makes exactly true when training has no effect. ``"exact"``: complete enumeration of
    that distribution by dynamic programming over the items (ties included), used when
    ``items × members × rank-sum range ≤ exact_budget``. Otherwise ``"permutation"``:
    ``num_permutations`` random splits from ``rng`` and ``(1 + #{sum ≥ observed}) / (B + 1)``,
    which is itself a valid p-value (``P[p ≤ α] ≤ α``) at any ``B``, with resolution
    ``1 / (B + 1)``.
    """
    m, n = len(members), len(controls)
    if m == 0 or n == 0:
        return 1.0, "exact"
    ranks = _doubled_ranks(members, controls)
    observed = int(ranks[:m].sum())
    top = int(np.sort(ranks)[-m:].sum())
    if (m + n) * m * top <= exact_budget:
        # ways[j, s]: subsets of the items seen so far with j members and doubled rank sum s
        ways = np.zeros((m + 1, top + 1))
        ways[0, 0] = 1.0
        for r in ranks:
            ways[1:, r:] = ways[1:, r:] + ways[:-1, : top + 1 - r]
        counts = ways[m]
        return min(1.0, float(counts[observed:].sum() / counts.sum())), "exact"
    keys = rng.random((num_permutations, m + n))
    sums = ranks[np.argpartition(keys, m - 1, axis=1)[:, :m]].sum(axis=1)  # uniform m-subsets
    p = (1 + int((sums >= observed).sum())) / (num_permutations + 1)
    return p, f"permutation ({num_permutations} random splits, +1 correction)"


def tpr_at_fpr(members: np.ndarray, controls: np.ndarray, target: float, confidence: float) -> dict:
    """TPR of the rule "score above a control-calibrated threshold" at FPR ``target``, with a
    CI, as ``{"value", "ci_low", "ci_high", "false_positives", "reason"}`` (all but ``reason``
    ``None`` below ``MIN_CONTROLS_PER_FPR / target`` controls, and ``reason`` says so).

    **Threshold.** With ``n`` controls the threshold is the ``(j+1)``-th highest control,
    ``j = ⌊target·(n+1)⌋ − 1`` (``false_positives``: controls strictly above it, ≤ j), and a
    member counts when its score is strictly above. The threshold's true FPR is then
    ``Beta(j+1, n−j)``-distributed for continuous scores, with mean ``(j+1)/(n+1) ≤ target``:
    the realised in-sample FPR ``j/n`` is below ``target``, and the estimate is not biased
    upward (by concavity of the ROC it errs slightly low).

    **CI** (conservative, distribution-free, at least ``confidence``): each end spends a quarter
    of ``α = 1 − confidence`` on the threshold and a quarter on the members. The lower end is the
    Clopper–Pearson lower bound of the members above the highest control order statistic whose
    FPR is ≤ target with probability ``1 − α/4``; the upper end the Clopper–Pearson upper bound
    of the members at or above the lowest one whose FPR is ≥ target with probability
    ``1 − α/4``. Members and controls are independent, so the binomial bound holds given the
    threshold. Ties only make each end more conservative. The price of the guarantee is width:
    at d = 2, 200 members and 1000 controls it covered in every replicate with mean width 0.37
    (``bench/stats_mia.py``), where a percentile bootstrap over both groups covered 0.975 with
    width 0.22 but has no finite-sample guarantee at an extreme quantile.
    """
    n, m = len(controls), len(members)
    needed = math.ceil(MIN_CONTROLS_PER_FPR / target - 1e-9)
    if n < needed:
        reason = (
            f"TPR at FPR {target:g} needs ≥ {needed} controls ({MIN_CONTROLS_PER_FPR}/FPR); "
            f"the set has {n}"
        )
        return dict(value=None, ci_low=None, ci_high=None, false_positives=None, reason=reason)
    if m == 0:
        reason = "no members"
        return dict(value=None, ci_low=None, ci_high=None, false_positives=None, reason=reason)
    sorted_c = np.sort(controls)
    j = math.floor(target * (n + 1)) - 1
    point = sorted_c[n - 1 - j]
    quarter = (1 - confidence) / 4
    # the true FPR of the (j+1)-th highest control as threshold is Beta(j+1, n−j)
    js = np.arange(n)
    below = stats.beta.cdf(target, js + 1, n - js) >= 1 - quarter  # FPR ≤ target, w.h.p.
    above = stats.beta.sf(target, js + 1, n - js) >= 1 - quarter  # FPR ≥ target, w.h.p.
    if below.any():
        hits = int((members > sorted_c[n - 1 - js[below].max()]).sum())
        low = stats.beta.ppf(quarter, hits, m - hits + 1) if hits else 0.0
    else:
        low = 0.0
    if above.any():
        hits = int((members >= sorted_c[n - 1 - js[above].min()]).sum())
        high = stats.beta.ppf(1 - quarter, hits + 1, m - hits) if hits < m else 1.0
    else:
        high = 1.0
    return dict(
        value=float((members > point).mean()),
        ci_low=float(low),
        ci_high=float(high),
        false_positives=int((controls > point).sum()),
        reason=None,
    )
