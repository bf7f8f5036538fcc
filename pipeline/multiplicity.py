"""Multiple-testing corrections shared by every table that reports many p-values at once."""

from __future__ import annotations

import numpy as np


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family of tests, in the input's order.

    Rejecting every test whose adjusted p-value is ≤ α controls the family-wise error rate (the
    chance of any false rejection) at α under any dependence between the tests; the caller
    decides what the family is and must pass all of it at once. ``NaN`` entries (tests not run)
    stay ``NaN`` and do not count towards the family's size.
    """
    p = np.asarray(p, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    order = present[np.argsort(p[present], kind="stable")]
    n = len(order)
    # the i-th smallest (0-based) is compared with α / (n − i); the running maximum keeps the
    # adjusted values monotone so a larger raw p-value never gets a smaller adjusted one
    stepped = np.maximum.accumulate((n - np.arange(n)) * p[order])
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted
