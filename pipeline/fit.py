"""Scaling-law fits from the store, with confidence intervals from a bootstrap over items.

A metric is named ``<probe>.<metric>`` (``loss.nll_mean``, ``exact_match.exact``). The response
is its per-item **gap to controls**: the item's value minus the mean over the never-inserted
controls of the same set, run and step. The comparison is causal because members and controls
differ only in whether they were trained on; for a loss a negative gap means memorized, for a rate
(exact match) a positive one.

Every fit is log-linear, ``y = a + b*log10(x)``, by ordinary least squares; its slope CI is the
2.5–97.5 percentile of slopes refitted on bootstrap resamples of items (clusters: all of an item's
rows move together). The control baseline is held fixed inside one run, which leaves a slope
within that run unchanged. Fits:

* ``duplicates``: y vs dup level, members at the last checkpoint of each perturbed run;
* ``dilution``: y vs dup level per million training tokens, across runs with different budgets;
* ``forgetting``: y vs steps since an item's last exposure, over checkpoints after it, for sets
  whose phase window closes before the end of training (``phase_end < 1``);
* ``model_size``: y vs parameter count, per dup level, at the last checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from taggant.pipeline import store
from taggant.pipeline.errors import ConfigError

FIT_VERSION = "fit.v1"
NUM_BOOTSTRAP = 1000
DEFAULT_METRIC = "loss.nll_mean"


@dataclass(frozen=True)
class Fit:
    """One fitted law; ``slope`` is ``b`` of ``y = a + b*log10(x)`` with its bootstrap CI."""

    name: str
    set: str
    x: str
    y: str
    model: str
    intercept: float
    slope: float
    ci_low: float
    ci_high: float
    r2: float
    n: int
    method: str
    filter: str
    version: str = FIT_VERSION

    def to_dict(self) -> dict:
        return asdict(self)


def loglinear(x: np.ndarray, y: np.ndarray, clusters: np.ndarray, seed: int = 0,
              num_bootstrap: int = NUM_BOOTSTRAP) -> tuple[float, float, float, float, float]:
    """OLS of ``y`` on ``log10(x)`` and a cluster-bootstrap percentile CI of the slope.

    Returns:
        ``(intercept, slope, ci_low, ci_high, r2)``; NaN CI when there are fewer than 2 clusters.
    """
    lx = np.log10(np.asarray(x, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64)
    slope, intercept = np.polyfit(lx, y, 1)
    residual = y - (intercept + slope * lx)
    total = np.sum((y - y.mean()) ** 2)
    r2 = float(1 - np.sum(residual**2) / total) if total > 0 else float("nan")
    ids, members = np.unique(clusters, return_inverse=True)
    if len(ids) < 2:
        return float(intercept), float(slope), float("nan"), float("nan"), r2
    rows_of = [np.flatnonzero(members == k) for k in range(len(ids))]
    rng = np.random.default_rng(seed)
    slopes = np.empty(num_bootstrap)
    for b in range(num_bootstrap):
        rows = np.concatenate([rows_of[k] for k in rng.integers(0, len(ids), len(ids))])
        bx, by = lx[rows], y[rows]
        var = np.var(bx)
        slopes[b] = np.mean((bx - bx.mean()) * (by - by.mean())) / var if var > 0 else np.nan
    low, high = np.nanpercentile(slopes, [2.5, 97.5])
    return float(intercept), float(slope), float(low), float(high), r2


def scores(probes: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (experiment, run, step, set, item) gap ``y`` of ``metric`` (``<probe>.<metric>``) to
    the mean of the set's controls at the same run and step, with ``dup_level`` and ``tokens_seen``.

    Raises:
        ConfigError: when ``metric`` is not of the form ``<probe>.<metric>``.
    """
    probe, dot, name = metric.partition(".")
    if not dot:
        raise ConfigError([("--metric", f"{metric!r} is not <probe>.<metric>, e.g. {DEFAULT_METRIC}")])
    keys = ["experiment", "run", "step", "set"]
    rows = probes[(probes["probe"] == probe) & (probes["metric"] == name) & (probes["item_id"] != probes["set"])]
    rows = rows[keys + ["tokens_seen", "item_id", "dup_level", "value"]].copy()
    baseline = rows[rows["dup_level"] == 0].groupby(keys)["value"].mean().rename("baseline")
    rows = rows.join(baseline, on=keys)
    rows["y"] = rows["value"] - rows["baseline"]
    return rows


def _final(table: pd.DataFrame) -> pd.DataFrame:
    last = table.groupby("run")["step"].transform("max")
    return table[table["step"] == last]


def _fit(name: str, set_name: str, x_name: str, y_name: str, x, y, clusters, filt: str) -> Fit:
    a, b, lo, hi, r2 = loglinear(x, y, clusters)
    return Fit(name, set_name, x_name, y_name, "y = a + b*log10(x)", a, b, lo, hi, r2, len(y),
               f"ols+cluster-bootstrap(items, {NUM_BOOTSTRAP})", filt)


def fit_duplicates(table: pd.DataFrame, runs: pd.DataFrame, y_name: str) -> list[Fit]:
    fits = []
    final = _final(table[table["run"].isin(runs.loc[runs["perturbed"], "run"])])
    for (run, set_name), g in final[final["dup_level"] > 0].groupby(["run", "set"]):
        if g["dup_level"].nunique() >= 2:
            fits.append(_fit("duplicates", set_name, "dup_level", y_name, g["dup_level"], g["y"], g["item_id"],
                             f"run={run}, step=last"))
    return fits


def fit_dilution(table: pd.DataFrame, runs: pd.DataFrame, y_name: str) -> list[Fit]:
    perturbed = runs[runs["perturbed"]]
    final = _final(table.merge(perturbed[["run", "train_tokens", "model_size"]], on="run"))
    fits = []
    for (size, set_name), g in final[final["dup_level"] > 0].groupby(["model_size", "set"]):
        if g["train_tokens"].nunique() >= 2:
            x = g["dup_level"] / (g["train_tokens"] / 1e6)
            fits.append(_fit("dilution", set_name, "dup_per_million_tokens", y_name, x, g["y"],
                             g["run"] + "/" + g["item_id"], f"model_size={size}, step=last"))
    return fits


def fit_forgetting(table: pd.DataFrame, items: pd.DataFrame, y_name: str) -> list[Fit]:
    exposed = items[(items["last_step"] >= 0) & (items["phase_end"] < 1.0)][["run", "item_id", "last_step"]]
    rows = table.merge(exposed, on=["run", "item_id"])
    rows = rows[rows["step"] > rows["last_step"]]
    fits = []
    for (run, set_name), g in rows.groupby(["run", "set"]):
        if g["step"].nunique() >= 2:
            fits.append(_fit("forgetting", set_name, "steps_since_last_exposure", y_name,
                             g["step"] - g["last_step"], g["y"], g["item_id"], f"run={run}"))
    return fits


def fit_model_size(table: pd.DataFrame, runs: pd.DataFrame, y_name: str) -> list[Fit]:
    perturbed = runs[runs["perturbed"]]
    final = _final(table.merge(perturbed[["run", "num_params", "train_tokens"]], on="run"))
    fits = []
    for (tokens, set_name, level), g in final[final["dup_level"] > 0].groupby(["train_tokens", "set", "dup_level"]):
        if g["num_params"].nunique() >= 2:
            fits.append(_fit("model_size", set_name, "num_params", y_name, g["num_params"], g["y"],
                             g["run"] + "/" + g["item_id"], f"train_tokens={tokens}, dup_level={level}, step=last"))
    return fits


def fit_store(url: str, metric: str, experiment: str | None = None) -> list[Fit]:
    """Every fit the store's runs support, for one probe ``metric``."""
    probes = store.read_probes(url).to_pandas()
    if experiment:
        probes = probes[probes["experiment"] == experiment]
    runs = store.read_runs(url, experiment).to_pandas()
    items = store.read_items(url, experiment).to_pandas()
    if probes.empty or runs.empty:
        return []
    table = scores(probes, metric)
    y_name = f"{metric} - controls"
    return [
        *fit_duplicates(table, runs, y_name),
        *fit_dilution(table, runs, y_name),
        *fit_forgetting(table, items, y_name),
        *fit_model_size(table, runs, y_name),
    ]


def level_summary(url: str, metric: str, experiment: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Mean gap to controls per (run, set, dup level) at each run's last checkpoint, with a 95%
    bootstrap CI that resamples both the level's items and the set's controls (so a group the
    model never saw covers 0 unless it really differs): the table a reader checks first."""
    probes = store.read_probes(url).to_pandas()
    if experiment:
        probes = probes[probes["experiment"] == experiment]
    if probes.empty:
        return pd.DataFrame(columns=["run", "set", "dup_level", "n", "mean", "ci_low", "ci_high"])
    final = _final(scores(probes, metric))
    rng = np.random.default_rng(seed)
    rows = []
    for (run, set_name), group in final.groupby(["run", "set"]):
        controls = group.loc[group["dup_level"] == 0, "value"].to_numpy()
        if not len(controls):  # no controls, no gap to them
            continue
        control_means = controls[rng.integers(0, len(controls), (NUM_BOOTSTRAP, len(controls)))].mean(axis=1)
        for level, g in group.groupby("dup_level"):
            values = g["value"].to_numpy()
            means = values[rng.integers(0, len(values), (NUM_BOOTSTRAP, len(values)))].mean(axis=1)
            low, high = np.percentile(means - control_means, [2.5, 97.5])
            rows.append({"run": run, "set": set_name, "dup_level": int(level), "n": len(values),
                         "mean": float(g["y"].mean()), "ci_low": float(low), "ci_high": float(high)})
    return pd.DataFrame(rows)
