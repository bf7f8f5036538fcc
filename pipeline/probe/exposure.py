"""Canary exposure (Carlini et al. 2019, "The Secret Sharer"; research/probes.md §2.4).

A canary's secret s was drawn from a randomness space R. Its exposure is
``log2 |R| − log2 rank(s)``, where the rank orders every secret of R by the log-perplexity of the
canary text carrying it (most likely first): ``log2 |R|`` bits when the model prefers the inserted
secret to every other one, about 1 bit when it has learnt nothing. R is too large to rank, so the
secret is compared with m references drawn from R and never inserted, two ways:

* **rank** among the m + 1 candidates (the secret and the references):
  ``log2(m + 1) − log2 rank``, at most ``log2(m + 1)``. Ties rank the secret below the reference
  (conservative, as tensorflow-privacy does). tensorflow-privacy subtracts from ``log2 m``, which
  can go slightly negative; with m + 1 the estimate stays in ``[0, log2(m + 1)]``.
* **skew-normal extrapolation**: fit ``scipy.stats.skewnorm`` to the references' log-perplexities
  and take ``−log2 CDF(secret's)``, the estimated fraction of R that is at least as likely; capped
  at ``log2 |R|`` (a rank is at least 1). Only with at least ``MIN_FIT_REFERENCES`` references
  that are not all equal: fewer do not pin down a three-parameter fit.

Both: higher = more memorized. Log-perplexity here is the summed NLL (nats) of the text after the
prompt, the same span for the secret and every reference.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def rank(secret_nll: float, reference_nlls: np.ndarray) -> int:
    """1 + the references at least as likely as the secret (NLL ≤ the secret's)."""
    return 1 + int(np.count_nonzero(reference_nlls <= secret_nll))


def exposure_by_rank(secret_nll: float, reference_nlls: np.ndarray) -> float:
    """``log2(m + 1) − log2 rank`` over the secret and its m references."""
    return math.log2(len(reference_nlls) + 1) - math.log2(rank(secret_nll, reference_nlls))


MIN_FIT_REFERENCES = 20


def can_fit(reference_nlls: np.ndarray) -> bool:
    """Enough references, with some spread, for the skew-normal fit."""
    return len(reference_nlls) >= MIN_FIT_REFERENCES and bool(np.ptp(reference_nlls) > 0)


def fit_skewnorm(reference_nlls: np.ndarray) -> tuple[float, float, float]:
    """Maximum-likelihood skew-normal ``(a, loc, scale)`` of the references' NLLs."""
    a, loc, scale = stats.skewnorm.fit(np.asarray(reference_nlls, dtype=np.float64))
    return float(a), float(loc), float(scale)


def exposure_by_extrapolation(
    secret_nll: float, params: tuple[float, float, float], log2_space: float
) -> float:
    """``−log2 CDF(secret_nll)`` under the fitted skew-normal, within ``[0, log2_space]``.

    ``logcdf`` keeps precision far into the tail, where the CDF underflows.
    """
    bits = -stats.skewnorm.logcdf(secret_nll, *params) / math.log(2)
    return float(min(max(bits, 0.0), log2_space))
