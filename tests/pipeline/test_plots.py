"""The standard figures draw what the report holds, including estimates at the edge of their
intervals (a logit AUROC interval at perfect separation ends below 1)."""

import pandas as pd

from taggant.pipeline import plots


def test_auroc_plot_takes_an_estimate_outside_its_interval(tmp_path):
    rows = [
        {"experiment": "e", "run": r, "set": s, "dup_level": lvl, "attack": a, "auroc": v}
        | {"auroc_ci_low": lo, "auroc_ci_high": hi}
        for r in ("p", "t")
        for s in ("canaries", "ghosts")
        for a in ("loss", "zlib")
        for lvl, v, lo, hi in ((1, 0.6, 0.4, 0.75), (16, 1.0, 0.83, 0.999), (64, 1.0, None, None))
    ]
    runs = pd.DataFrame({"experiment": ["e", "e"], "run": ["p", "t"], "perturbed": [True, False]})
    path = plots.auroc(rows, runs, str(tmp_path / "auroc.png"))
    assert (tmp_path / "auroc.png").stat().st_size > 0 and path.endswith("auroc.png")


def test_dose_response_takes_report_rows(tmp_path):
    levels = [
        {"experiment": "e", "run": "p", "step": 9, "set": "s", "dup_level": lvl, "n": 4}
        | {"controls": 4, "mean": m, "ci_low": lo, "ci_high": hi}
        for lvl, m, lo, hi in ((0, 0.0, None, None), (1, -0.5, -0.4, 0.1), (16, -3.0, -3.5, -2.5))
    ]
    fits = [{"name": "duplicates", "experiment": "e", "run": "p", "set": "s"}]
    fits[0] |= {"intercept": -0.4, "slope": -2.1}
    plots.dose_response(levels, fits, "loss.nll_mean", str(tmp_path / "dose.png"))
    assert (tmp_path / "dose.png").stat().st_size > 0
