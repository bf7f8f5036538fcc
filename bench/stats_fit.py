"""Coverage of the fits' and level table's 95% intervals, and the level of their tests, measured
by simulation with known truths (the designs of ``tests/pipeline/test_fit_coverage.py``, with
more replicates than the suite can afford).

Usage (repository root):
    python bench/stats_fit.py [--replicates 400] [--bootstrap 400]

Each line: the scenario, the quantity, the truth, the share of replicates whose interval covered
it (or whose p-value was < 0.05), with its Monte-Carlo standard error, and the mean estimate.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from taggant.pipeline import fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the designs live in the tests
from tests.pipeline import test_fit_coverage as sim  # noqa: E402


def _recency(rng: np.random.Generator) -> np.ndarray:
    levels = np.repeat((0, *sim.SIM_LEVELS), sim.SIM_ITEMS)
    return np.array([rng.integers(0, 1000, max(L, 1)).max() if L else -1 for L in levels])


def _ratio(L, run, *_):
    return -1.0 * (sim.lx(L) - np.log10(run["train_tokens"] / 1e6))


SIZES_X_SEEDS = [{"num_params": n} for n in sim.SIZES for _ in range(3)]
SCENARIOS = {
    "duplicates, one run": (
        lambda rng: sim.fits_of(
            sim.simulate(rng, [{}], [1000], lambda L, *_: -sim.lx(L)), "duplicates"
        ),
        [("slope", -1.0)],
    ),
    "forgetting, recency ∝ dup, none true": (
        lambda rng: sim.fits_of(
            sim.simulate(
                rng, [{}], [1100, 1500, 2000, 3000, 5000], lambda L, *_: -sim.lx(L), _recency(rng)
            ),
            "forgetting",
        ),
        [("slope", 0.0)],
    ),
    "dilution, ratio law, 2 budgets": (
        lambda rng: sim.fits_of(sim.simulate(rng, sim.BUDGETS, [1000], _ratio), "dilution"),
        [("slope", 1.0), ("dup_slope", -1.0), ("ratio_law_p", None)],
    ),
    "dilution, budget without effect": (
        lambda rng: sim.fits_of(
            sim.simulate(rng, sim.BUDGETS, [1000], lambda L, *_: -sim.lx(L)), "dilution"
        ),
        [("slope", 0.0), ("ratio_law_p", None)],
    ),
    "dilution, 2 budgets × 3 seeds, run shift 0.2": (
        lambda rng: sim.fits_of(
            sim.simulate(
                rng, [b for b in sim.BUDGETS for _ in range(3)], [1000], _ratio, run_shift=0.2
            ),
            "dilution",
        ),
        [("slope", 1.0), ("ratio_law_p", None)],
    ),
    "model size, 3 sizes × 3 seeds, run shift 0.2": (
        lambda rng: sim.fits_of(
            sim.simulate(rng, SIZES_X_SEEDS, [1000], sim.size_law, run_shift=0.2), "model_size"
        ),
        [("slope", -0.4)],
    ),
    "model size, 3 sizes × 1 seed, run shift 0.2 (items scope)": (
        lambda rng: sim.fits_of(
            sim.simulate(
                rng, [{"num_params": n} for n in sim.SIZES], [1000], sim.size_law, run_shift=0.2
            ),
            "model_size",
        ),
        [("slope", -0.4)],
    ),
}


def _twin(rng: np.random.Generator, truth: float) -> pd.DataFrame:
    runs = [{"name": "p", "format": -1.0, "seed": 0}, {"name": "t", "perturbed": False, "seed": 0}]
    data = sim.simulate(rng, runs, [1000], lambda L, *_: np.full(len(L), truth))
    levels = fit.level_summary(data, "loss.nll_mean")
    return levels[(levels["run"] == "p") & (levels["dup_level"] > 0)]


def _line(name: str, quantity: str, truth, hits: list[bool], values: list[float]) -> None:
    rate = float(np.mean(hits))
    se = math.sqrt(rate * (1 - rate) / len(hits))
    what = "P[p<0.05]" if truth is None else f"coverage of {truth:+g}"
    print(
        f"{name:58s} {quantity:12s} {what:22s} {rate:.3f} ± {se:.3f}  mean {np.mean(values):+.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=400)
    parser.add_argument("--bootstrap", type=int, default=400)
    args = parser.parse_args()
    sim.NUM_BOOTSTRAP = args.bootstrap
    print(f"{args.replicates} replicates, {args.bootstrap} bootstrap resamples, nominal 0.95")
    for index, (name, (make, quantities)) in enumerate(SCENARIOS.items()):
        rng = np.random.default_rng(index)
        fits = [f for _ in range(args.replicates) for f in make(rng)]
        for quantity, truth in quantities:
            values = [getattr(f, quantity) for f in fits]
            if truth is None:
                hits = [v < 0.05 for v in values]
            else:
                prefix = "" if quantity == "slope" else f"{quantity}_"
                hits = [
                    getattr(f, f"{prefix}ci_low") <= truth <= getattr(f, f"{prefix}ci_high")
                    for f in fits
                ]
            _line(name, quantity, truth, hits, values)
    for truth in (0.0, -0.8):
        rng = np.random.default_rng(7)
        table = pd.concat([_twin(rng, truth) for _ in range(max(1, args.replicates // 4))])
        did = table["did"].astype(float)
        covered = (table["did_ci_low"] <= truth) & (truth <= table["did_ci_high"])
        _line("twin difference-in-differences", "did", truth, list(covered), list(did))
        _line(
            "twin difference-in-differences", "did_p", None, list(table["did_p"] < 0.05), list(did)
        )


if __name__ == "__main__":
    main()
