"""Type-I error and coverage of the watermark and exposure statistics, over many replicates.

Usage (repository root):
    .venv/bin/python bench/stats_probes.py [--replicates 2000] [--exposure-replicates 100]

Prints, with each figure's Monte-Carlo standard error:

* watermark (``pipeline.permutation.shift_test``, as ``watermark.v3`` runs it): under an
  exchangeable null (members and 40 controls drawn alike, as the random split guarantees), the
  rejection rate at α = 0.05 of the permutation p-value beside the one-sided Welch test it
  replaced (``watermark.v2``), for 4 and 12 members and lognormal(0, 1) or gamma(4) scores, right-
  or left-skewed (``neg_nll`` is left-skewed when per-item NLL is right-skewed); then the coverage
  of the 95 % shift interval of the mean difference when members are controls shifted by 0.7
  (the model it is exact under) and when they are controls scaled by 1.5 (a change of spread, not
  only location: the interval is then not guaranteed to cover the mean difference).
* exposure (``pipeline.probe.exposure``, as ``exposure.v2`` runs it): references drawn from a
  skew-normal (a = 4, loc 50, scale 5) and the secret's NLL at the 2^-20 quantile, so the true
  exposure is 20 bits (cap 64): for 200 and 1000 references, the median extrapolated value and
  its 10–90 % range, the coverage and median width of the bootstrap interval, and how often the
  value hits the cap. Each replicate fits the skew-normal 1 + BOOTSTRAP_RESAMPLES times
  (~10–25 ms each), so this part takes minutes.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import stats

from taggant.pipeline import permutation
from taggant.pipeline.perturb.rng import generator
from taggant.pipeline.probe import exposure

ALPHA = 0.05
CONTROLS = 40


def _scores(rng: np.random.Generator, family: str, skew: str, size: int) -> np.ndarray:
    x = rng.lognormal(0.0, 1.0, size) if family == "lognormal" else rng.gamma(4.0, 1.0, size)
    return x if skew == "right" else -x


def _rate(hits: int, n: int) -> str:
    p = hits / n
    return f"{p:.3f} ± {math.sqrt(p * (1 - p) / n):.3f}"


def watermark(replicates: int) -> None:
    print(f"watermark: type-I error at α = {ALPHA}, {CONTROLS} controls, {replicates} replicates")
    print(f"{'members':>8} {'scores':>10} {'skew':>6} {'permutation':>14} {'welch (v2)':>14}")
    for members in (4, 12):
        for family in ("lognormal", "gamma"):
            for skew in ("right", "left"):
                perm = welch = 0
                for r in range(replicates):
                    rng = generator(0, "bench_type_one", f"{family}/{skew}", f"{members}/{r}")
                    x = _scores(rng, family, skew, members + CONTROLS)
                    m, c = x[:members], x[members:]
                    perm += permutation.shift_test(m, c, seed=r).p <= ALPHA
                    welch += (
                        stats.ttest_ind(m, c, equal_var=False, alternative="greater").pvalue
                        <= ALPHA
                    )
                print(
                    f"{members:>8} {family:>10} {skew:>6} {_rate(perm, replicates):>14} "
                    f"{_rate(welch, replicates):>14}"
                )
    print("watermark: coverage of the 95 % shift interval of the mean difference, lognormal")
    print(f"{'members':>8} {'truth':>20} {'skew':>6} {'coverage':>14} {'median width':>13}")
    mean = math.exp(0.5)  # of lognormal(0, 1)
    for members in (4, 12):
        for truth in ("shift by 0.7", "scale by 1.5"):
            for skew in ("right", "left"):
                covered, widths = 0, []
                for r in range(replicates):
                    rng = generator(0, "bench_coverage", f"{truth}/{skew}", f"{members}/{r}")
                    c = _scores(rng, "lognormal", skew, CONTROLS)
                    m = _scores(rng, "lognormal", skew, members)
                    if truth.startswith("shift"):
                        m, diff = m + 0.7, 0.7
                    else:
                        m, diff = m * 1.5, 0.5 * mean * (1 if skew == "right" else -1)
                    got = permutation.shift_test(m, c, seed=r)
                    covered += got.ci_low <= diff <= got.ci_high
                    widths.append(got.ci_high - got.ci_low)
                print(
                    f"{members:>8} {truth:>20} {skew:>6} {_rate(covered, replicates):>14} "
                    f"{np.median(widths):>13.3f}"
                )


def exposure_coverage(replicates: int) -> None:
    a, loc, scale, true_bits, cap = 4.0, 50.0, 5.0, 20.0, 64.0
    secret = stats.skewnorm.ppf(2.0**-true_bits, a, loc, scale)
    print(
        f"exposure: true {true_bits:g} bits, skew-normal references (a {a:g}), "
        f"{exposure.BOOTSTRAP_RESAMPLES} bootstrap resamples, {replicates} replicates"
    )
    print(f"{'refs':>6} {'median':>7} {'10-90 %':>15} {'coverage':>14} {'width':>7} {'at cap':>7}")
    for refs_n in (exposure.MIN_FIT_REFERENCES, 1000):
        estimates, covered, widths, capped = [], 0, [], 0
        start = time.perf_counter()
        for r in range(replicates):
            rng = generator(0, "bench_exposure", str(refs_n), r)
            refs = stats.skewnorm.rvs(a, loc, scale, size=refs_n, random_state=rng)
            bits = exposure.exposure_by_extrapolation(secret, exposure.fit_skewnorm(refs), cap)
            low, high = exposure.bootstrap_interval(secret, refs, cap, seed=r)
            estimates.append(bits)
            covered += low <= true_bits <= high
            widths.append(high - low)
            capped += bits == cap
        lo, hi = np.percentile(estimates, [10, 90])
        print(
            f"{refs_n:>6} {np.median(estimates):>7.1f} {f'[{lo:.1f}, {hi:.1f}]':>15} "
            f"{_rate(covered, replicates):>14} {np.median(widths):>7.1f} "
            f"{capped / replicates:>7.3f}   ({(time.perf_counter() - start) / replicates:.2f} "
            "s per canary)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--exposure-replicates", type=int, default=100)
    args = parser.parse_args()
    watermark(args.replicates)
    exposure_coverage(args.exposure_replicates)


if __name__ == "__main__":
    main()
