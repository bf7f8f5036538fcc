"""Canary exposure (Carlini et al. 2019, "The Secret Sharer"; research/probes.md §2.4).

A canary's secret s was drawn from a randomness space R. Its exposure is
``log2 |R| − log2 rank(s)``, where the rank orders every secret of R by the log-perplexity of the
canary text carrying it (most likely first): ``log2 |R|`` bits when the model prefers the inserted
secret to every other one. When it has learnt nothing the rank is uniform on R: exposure is then
``−log2 U`` for U uniform on (0, 1], exponential with median 1 bit and mean ``1/ln 2 ≈ 1.44``
bits. R is too large to rank, so the secret is compared with m references drawn from R and never
inserted, two ways:

* **rank** among the m + 1 candidates (the secret and the references):
  ``log2(m + 1) − log2 rank``, at most ``log2(m + 1)``. Ties rank the secret below the reference
  (conservative, as tensorflow-privacy does). tensorflow-privacy subtracts from ``log2 m``, which
  can go slightly negative; with m + 1 the estimate stays in ``[0, log2(m + 1)]``.
* **skew-normal extrapolation**: fit ``scipy.stats.skewnorm`` to the references' log-perplexities
  and take ``−log2 CDF(secret's)``, the estimated fraction of R that is at least as likely; capped
  at ``log2 |R|`` (a rank is at least 1). Only with at least ``MIN_FIT_REFERENCES`` references
  that are not all equal: with 20 references a true 30 bits came out anywhere from 21 bits to the
  cap (10–90 %), with 100 from 24.5 to 36.9 (stats review F9). ``bootstrap_interval`` resamples
  the references to show what remains of that spread; it is conditional on the skew-normal being
  the references' distribution, and misspecification biases the extrapolation beyond what any
  interval from the same fit shows (a 90/10 normal mixture turned a true 20 bits into 15.4).

Both: higher = more memorized. Log-perplexity here is the summed NLL (nats) of the text after the
prompt, the same span for the secret and every reference.
"""

from __future__ import annotations

import math

import numpy as np


def rank(secret_nll: float, reference_nlls: np.ndarray) -> int:
    """1 + the references at least as likely as the secret (NLL ≤ the secret's)."""
    return 1 + int(np.count_nonzero(reference_nlls <= secret_nll))


def exposure_by_rank(secret_nll: float, reference_nlls: np.ndarray) -> float:
    """``log2(m + 1) − log2 rank`` over the secret and its m references."""
    return math.log2(len(reference_nlls) + 1) - math.log2(rank(secret_nll, reference_nlls))


MIN_FIT_REFERENCES = 200
"""References needed for the skew-normal extrapolation; below it only the rank is reported."""

MIN_INTERVAL_REFERENCES = 1000
"""References needed before ``bootstrap_interval`` is reported: its measured coverage of a nominal
95% is 0.93 ± 0.03 with 1000 references and 0.83 ± 0.04 with 200 (``bench/stats_probes.py``,
true 20 bits): below 1000 an interval would claim more than it holds, so none is given."""

BOOTSTRAP_RESAMPLES = 50
"""Resamples of the references in ``bootstrap_interval``: each is a skew-normal fit (~10 ms)."""


def can_fit(reference_nlls: np.ndarray) -> bool:
    """Enough references, with some spread, for the skew-normal fit."""
    return len(reference_nlls) >= MIN_FIT_REFERENCES and bool(np.ptp(reference_nlls) > 0)


def fit_skewnorm(reference_nlls: np.ndarray) -> tuple[float, float, float]:
    """Maximum-likelihood skew-normal ``(a, loc, scale)`` of the references' NLLs."""
    from scipy import stats  # ~0.6 s to import: only where exposure extrapolates

    a, loc, scale = stats.skewnorm.fit(np.asarray(reference_nlls, dtype=np.float64))
    return float(a), float(loc), float(scale)


def exposure_by_extrapolation(
    secret_nll: float, params: tuple[float, float, float], log2_space: float
) -> float:
    """``−log2 CDF(secret_nll)`` under the fitted skew-normal, within ``[0, log2_space]``.

    ``logcdf`` keeps precision far into the tail, where the CDF underflows.
    """
    from scipy import stats

    bits = -stats.skewnorm.logcdf(secret_nll, *params) / math.log(2)
    return float(min(max(bits, 0.0), log2_space))


def bootstrap_interval(
    secret_nll: float,
    reference_nlls: np.ndarray,
    log2_space: float,
    seed: int,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``exposure_by_extrapolation`` over the references.

    Each resample draws the references with replacement, refits the skew-normal and extrapolates;
    the interval holds the central ``level`` of those values, within ``[0, log2_space]``. It
    reflects the sampling error of the fit only, given that the references are skew-normal
    (module docstring), and undercovers where the extrapolation is far into the tail: for a true
    20 bits ``bench/stats_probes.py`` measured 95 % intervals covering 0.83 ± 0.04 of the time
    from 200 references (median width 32 bits) and 0.93 ± 0.03 from 1000 (8.5 bits).

    Args:
        seed: seeds the resampling (``perturb.rng.derive_seed`` of the set and item).
    """
    refs = np.asarray(reference_nlls, dtype=np.float64)
    rng = np.random.Generator(np.random.PCG64(seed))
    values = [
        exposure_by_extrapolation(
            secret_nll, fit_skewnorm(rng.choice(refs, size=len(refs))), log2_space
        )
        for _ in range(resamples)
    ]
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)
