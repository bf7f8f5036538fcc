"""Membership statistics against known truths, with more replicates than the suite can afford (the
designs of ``tests/pipeline/test_mia_coverage.py``): AUROC interval coverage and width, the
Mann–Whitney p-value's type-I error, the low-FPR TPR's bias and interval coverage, the audit's
δ > 0 figures and null false certification, and Holm's family-wise error on a checkpoint.

Usage (repository root):
    python bench/stats_mia.py [--replicates 1000]

Each rate is printed with its Monte Carlo standard error.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from taggant.pipeline import privacy_audit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the designs live in the tests
from tests.pipeline import test_mia_coverage as sim  # noqa: E402


def _rate(hits: np.ndarray) -> str:
    rate = float(np.mean(hits))
    return f"{rate:.3f} ± {math.sqrt(max(rate * (1 - rate), 1e-12) / len(hits)):.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    reps = parser.parse_args().replicates
    rng = np.random.default_rng(0)

    print("AUROC 95% CI (binormal): members/controls, truth -> coverage, mean width, min width")
    for members, controls in ((20, 20), (32, 32), (20, 100), (100, 100)):
        for auroc in (0.5, 0.95, 0.99, 0.999):
            t = sim.auroc_ci_trials(rng, auroc, members, controls, reps)
            print(
                f"  {members:>3}/{controls:<3} AUROC {auroc:<5}: coverage {_rate(t[:, 0])}, "
                f"width {t[:, 1].mean():.3f}, min {t[:, 1].min():.4f}"
            )

    print("Mann-Whitney one-sided p under the null (20/20): P[p <= 0.05], P[p <= 0.01]")
    for label, kw in (
        ("exact, no ties", dict(ties=False)),
        ("exact, ties", dict(ties=True)),
        ("permutation 999, ties", dict(ties=True, num_permutations=999, exact_budget=0)),
    ):
        p = sim.null_p_values(rng, 20, 20, reps, **kw)
        print(f"  {label:<22}: {_rate(p <= 0.05)}, {_rate(p <= 0.01)}")

    print("TPR at low FPR (N(d,1) vs N(0,1)): truth, mean estimate (sd), CI coverage, mean width")
    for d, members, controls, target in (
        (2.0, 200, 1000, 0.01),
        (2.0, 32, 1000, 0.01),
        (3.0, 200, 10000, 0.001),
    ):
        n = max(reps // 5, 50)
        truth, values, lows, highs = sim.tpr_trials(rng, d, members, controls, target, n)
        print(
            f"  d={d} {members} members {controls} controls FPR {target}: truth {truth:.3f}, "
            f"mean {values.mean():.3f} ({values.std():.3f}), coverage "
            f"{_rate((lows <= truth) & (truth <= highs))}, width {(highs - lows).mean():.3f}"
        )

    print("Audit, all right, r = m = 1000: delta -> epsilon_lb")
    for delta in (0.0, 1e-5, 1e-3):
        print(f"  {delta:g}: {privacy_audit.epsilon_lower_bound(1000, 1000, delta=delta):.3f}")
    print("Audit false certification, null 64 members / 40 controls (nominal 0.05)")
    for delta in (0.0, 1e-5, 1e-3):
        hits = [sim.false_certifications(rng, 64, 40, delta, 1) for _ in range(reps)]
        print(f"  delta {delta:g}: {_rate(np.array(hits))}")

    print("Holm FWER at 0.05, global null, 4 levels x 2 attacks sharing 20 controls")
    print(f"  {_rate(sim.family_rejects(rng, 4, 20, 20, max(reps // 2, 50)))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
