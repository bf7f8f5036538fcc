"""Scaling-law fits from the store, with confidence intervals from a bootstrap over items.

A metric is named ``<probe>.<metric>`` (``loss.nll_mean``, ``exact_match.exact``). The response
is its per-item **gap to controls**: the item's value minus the mean over the never-inserted
controls of the same set, run and step. The comparison is causal because members and controls
differ only in whether they were trained on; for a loss a negative gap means memorized, for a rate
(exact match) a positive one. Everything is keyed by ``(experiment, run)``: run names carry no
experiment, and fits never pool experiments.

Every fit is log-linear, ``y = a + b*log10(x)``, by ordinary least squares; its slope CI is the
2.5–97.5 percentile of slopes refitted on bootstrap resamples of **items**, members and controls
alike, stratified by (set, dup level) so each resample keeps the design. An item is one cluster
across every run and checkpoint it appears in (the runs of an experiment share its items), and
the control baseline of every (run, step) is recomputed from the resampled controls: an item's
difficulty is shared by all of its rows, and the baseline's own sampling error moves the slope of
any fit whose x varies across runs or steps. Fits:

* ``duplicates``: y vs dup level, members at the last checkpoint of each perturbed run;
* ``dilution``: y vs dup level per million training tokens, across runs with different budgets;
* ``forgetting``: y vs steps since an item's last exposure, over checkpoints after it, for sets
  whose phase window closes before the end of training (``phase_end < 1``);
* ``model_size``: y vs parameter count, per dup level, at the last checkpoint.

A value that cannot be computed is ``None`` with its reason in the row's ``reasons``, never NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from taggant.pipeline import store
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.perturb import rng as seeded

FIT_VERSION = "fit.v2"
NUM_BOOTSTRAP = 1000
DEFAULT_METRIC = "loss.nll_mean"
RUN = ["experiment", "run"]
CELL = ["experiment", "run", "step", "set"]
"""The rows one control baseline covers."""
CHUNK_ELEMENTS = 1 << 22
"""Bound on resamples × rows held at once by the bootstrap (32 MiB of float64)."""
X_NAMES = {
    "duplicates": "dup_level",
    "dilution": "dup_per_million_tokens",
    "forgetting": "steps_since_last_exposure",
    "model_size": "num_params",
}
"""The x of each fit."""


@dataclass(frozen=True)
class StoreData:
    """One read of a store (or one experiment of it): probe rows, runs and items as pandas."""

    probes: pd.DataFrame
    runs: pd.DataFrame
    items: pd.DataFrame


def load(url: str, experiment: str | None = None) -> StoreData:
    """Read the committed probe rows, runs and items of ``experiment`` (all when ``None``)."""
    flt = ds.field("experiment") == experiment if experiment else None
    return StoreData(
        store.read_probes(url, flt).to_pandas(),
        store.read_runs(url, experiment).to_pandas(),
        store.read_items(url, experiment).to_pandas(),
    )


@dataclass(frozen=True)
class Fit:
    """One fitted law; ``slope`` is ``b`` of ``y = a + b*log10(x)`` with its bootstrap CI.

    ``run`` is ``None`` for a fit across runs and ``step`` for one across checkpoints; every
    ``None`` has its reason in ``reasons`` (field → why)."""

    name: str
    experiment: str
    run: str | None
    step: int | None
    set: str
    x: str
    y: str
    model: str
    intercept: float
    slope: float
    ci_low: float | None
    ci_high: float | None
    r2: float | None
    n: int
    items: int
    controls: int
    method: str
    filter: str
    reasons: dict[str, str] = field(default_factory=dict)
    version: str = FIT_VERSION

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Design:
    """The rows of one fit: ``member`` rows enter the regression, ``control`` rows only the
    baseline of their cell. Arrays are per row; ``item`` indexes ``strata``."""

    lx: np.ndarray
    value: np.ndarray
    item: np.ndarray
    cell: np.ndarray
    member: np.ndarray
    strata: np.ndarray


def item_weights(strata: np.ndarray, num_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """``(num_bootstrap, len(strata))`` resampling counts: each stratum's items drawn with
    replacement to the stratum's own size (a stratified, item-clustered bootstrap)."""
    weights = np.zeros((num_bootstrap, len(strata)))
    for stratum in np.unique(strata):
        cols = np.flatnonzero(strata == stratum)
        draws = rng.integers(0, len(cols), (num_bootstrap, len(cols)))
        draws += np.arange(num_bootstrap)[:, None] * len(cols)  # one bincount for all resamples
        weights[:, cols] = np.bincount(draws.ravel(), minlength=draws.size).reshape(draws.shape)
    return weights


def _weighted_fits(d: _Design, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intercept, slope and r² of the weighted OLS of gaps on ``lx`` for each row of item
    ``weights`` (one resample per row), each cell's baseline the weighted mean of its controls."""
    ctrl, memb = ~d.member, d.member
    cells = np.zeros((ctrl.sum(), d.cell.max() + 1))
    cells[np.arange(ctrl.sum()), d.cell[ctrl]] = 1.0
    out = []
    step = max(1, CHUNK_ELEMENTS // max(1, len(d.value)))
    for start in range(0, len(weights), step):
        w_all = weights[start : start + step]
        wc = w_all[:, d.item[ctrl]]
        with np.errstate(invalid="ignore", divide="ignore"):
            baseline = ((wc * d.value[ctrl]) @ cells) / (wc @ cells)
            y = d.value[memb] - baseline[:, d.cell[memb]]
            w, x = w_all[:, d.item[memb]], d.lx[memb]
            sw = w.sum(axis=1, keepdims=True)
            xbar, ybar = (w * x).sum(1, keepdims=True) / sw, (w * y).sum(1, keepdims=True) / sw
            sxx = (w * (x - xbar) ** 2).sum(1)
            slope = (w * (x - xbar) * (y - ybar)).sum(1) / np.where(sxx > 0, sxx, np.nan)
            intercept = ybar[:, 0] - slope * xbar[:, 0]
            sst = (w * (y - ybar) ** 2).sum(1)
            sse = (w * (y - intercept[:, None] - slope[:, None] * x) ** 2).sum(1)
            r2 = 1 - sse / np.where(sst > 0, sst, np.nan)
        out.append((intercept, slope, r2))
    return tuple(np.concatenate(parts) for parts in zip(*out))


def loglinear(d: _Design, seed: int, num_bootstrap: int = NUM_BOOTSTRAP) -> dict:
    """OLS of the members' gaps on ``log10(x)`` and a stratified item-bootstrap percentile CI of
    the slope that resamples controls too; ``None`` values come with a reason."""
    ones = np.ones((1, len(d.strata)))
    (intercept,), (slope,), (r2,) = _weighted_fits(d, ones)
    out = {
        "intercept": float(intercept),
        "slope": float(slope),
        "r2": None,
        "ci_low": None,
        "ci_high": None,
        "reasons": {},
    }
    if np.isfinite(r2):
        out["r2"] = float(r2)
    else:
        out["reasons"]["r2"] = "the gaps do not vary: r² is undefined"
    sizes = pd.Series(d.strata).value_counts()
    if (sizes < 2).any():
        why = f"the bootstrap needs ≥ 2 items per (set, dup level); {sizes.idxmin()} has 1"
        out["reasons"].update(ci_low=why, ci_high=why)
        return out
    _, slopes, _ = _weighted_fits(
        d, item_weights(d.strata, num_bootstrap, np.random.default_rng(seed))
    )
    if np.isnan(slopes).all():
        why = "x does not vary inside any bootstrap resample"
        out["reasons"].update(ci_low=why, ci_high=why)
        return out
    low, high = np.nanpercentile(slopes, [2.5, 97.5])
    out.update(ci_low=float(low), ci_high=float(high))
    return out


def scores(probes: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (experiment, run, step, set, item) gap ``y`` of ``metric`` (``<probe>.<metric>``) to
    the mean of the set's controls at the same run and step, with ``dup_level``, ``tokens_seen``
    and the raw ``value``. Sets without controls have no gap and are left out
    (``without_controls`` lists them).

    Raises:
        ConfigError: when ``metric`` is not of the form ``<probe>.<metric>``.
        DataError: when the metric has non-finite values (a mean of them is no baseline).
    """
    probe, dot, name = metric.partition(".")
    if not dot:
        raise ConfigError(
            [("--metric", f"{metric!r} is not <probe>.<metric>, e.g. {DEFAULT_METRIC}")]
        )
    rows = probes[
        (probes["probe"] == probe)
        & (probes["metric"] == name)
        & (probes["item_id"] != probes["set"])
    ]
    rows = rows[CELL + ["tokens_seen", "item_id", "dup_level", "value"]].copy()
    bad = ~np.isfinite(rows["value"].to_numpy())
    if bad.any():
        raise DataError(
            f"{metric} has {int(bad.sum())} non-finite values (e.g. item "
            f"{rows.loc[bad, 'item_id'].iloc[0]}): a gap to controls needs finite values; "
            "fit a finite metric such as suffix_logprob.logprob or loss.nll_mean"
        )
    baseline = rows[rows["dup_level"] == 0].groupby(CELL)["value"].mean().rename("baseline")
    rows = rows.join(baseline, on=CELL, how="inner")
    rows["y"] = rows["value"] - rows["baseline"]
    return rows


def without_controls(data: StoreData, metric: str) -> list[dict]:
    """The (experiment, run, set) groups with rows for ``metric`` but no control: no gap, no fit,
    no membership inference for them; each with its reason."""
    probe, _, name = metric.partition(".")
    rows = data.probes[
        (data.probes["probe"] == probe)
        & (data.probes["metric"] == name)
        & (data.probes["item_id"] != data.probes["set"])
    ]
    has = (
        rows.assign(control=rows["dup_level"] == 0)
        .groupby(["experiment", "run", "set"])["control"]
        .any()
    )
    return [
        {
            "experiment": e,
            "run": r,
            "set": s,
            "reason": "the set has no never-inserted controls (control_frac 0): nothing to compare",
        }
        for (e, r, s), ok in has.items()
        if not ok
    ]


def _final(table: pd.DataFrame) -> pd.DataFrame:
    last = table.groupby(RUN)["step"].transform("max")
    return table[table["step"] == last]


def _design(rows: pd.DataFrame, x: pd.Series) -> _Design:
    """A fit's design: member rows (x used) and the control rows of their cells (x ignored)."""
    item = rows.groupby(["experiment", "item_id"], sort=False).ngroup().to_numpy()
    strata = np.zeros(item.max() + 1, dtype=np.int64)
    strata[item] = rows.groupby(["set", "dup_level"], sort=False).ngroup().to_numpy()
    return _Design(
        np.log10(x.to_numpy(dtype=np.float64)),
        rows["value"].to_numpy(dtype=np.float64),
        item,
        rows.groupby(CELL, sort=False).ngroup().to_numpy(),
        rows["dup_level"].to_numpy() > 0,
        strata,
    )


def _fit(
    name: str,
    members: pd.DataFrame,
    x: pd.Series,
    table: pd.DataFrame,
    y_name: str,
    filt: str,
    num_bootstrap: int,
    run: str | None,
    step: int | None,
    reasons: dict[str, str],
) -> Fit:
    cells = members[CELL].drop_duplicates()
    controls = table[table["dup_level"] == 0].merge(cells, on=CELL)
    rows = pd.concat([members.assign(x=x), controls.assign(x=1.0)], ignore_index=True)
    d = _design(rows, rows["x"])
    [experiment], [set_name] = members["experiment"].unique(), members["set"].unique()
    seed = seeded.derive_seed(0, "fit.bootstrap", set_name, f"{experiment}/{name}/{filt}")
    result = loglinear(d, seed, num_bootstrap)
    return Fit(
        name,
        experiment,
        run,
        step,
        set_name,
        X_NAMES[name],
        y_name,
        "y = a + b*log10(x)",
        result["intercept"],
        result["slope"],
        result["ci_low"],
        result["ci_high"],
        result["r2"],
        len(members),
        members["item_id"].nunique(),
        controls["item_id"].nunique(),
        f"ols+item-bootstrap(members and controls, stratified by dup level, {num_bootstrap})",
        filt,
        {**reasons, **result["reasons"]},
    )


def fit_duplicates(
    table: pd.DataFrame, runs: pd.DataFrame, y_name: str, num_bootstrap: int = NUM_BOOTSTRAP
) -> list[Fit]:
    fits = []
    final = _final(table.merge(runs.loc[runs["perturbed"], RUN], on=RUN))
    for (experiment, run, set_name), g in final[final["dup_level"] > 0].groupby(RUN + ["set"]):
        if g["dup_level"].nunique() >= 2:
            step = int(g["step"].iloc[0])
            fits.append(
                _fit(
                    "duplicates",
                    g,
                    g["dup_level"],
                    final,
                    y_name,
                    f"run={run}, step=last",
                    num_bootstrap,
                    run,
                    step,
                    {},
                )
            )
    return fits


def fit_dilution(
    table: pd.DataFrame, runs: pd.DataFrame, y_name: str, num_bootstrap: int = NUM_BOOTSTRAP
) -> list[Fit]:
    perturbed = runs[runs["perturbed"]]
    final = _final(table.merge(perturbed[RUN + ["train_tokens", "model_size"]], on=RUN))
    fits = []
    for (experiment, size, set_name), g in final[final["dup_level"] > 0].groupby(
        ["experiment", "model_size", "set"]
    ):
        if g["train_tokens"].nunique() >= 2:
            x = g["dup_level"] / (g["train_tokens"] / 1e6)
            fits.append(
                _fit(
                    "dilution",
                    g,
                    x,
                    final,
                    y_name,
                    f"model_size={size}, step=last",
                    num_bootstrap,
                    None,
                    None,
                    _across_runs(g),
                )
            )
    return fits


def _across_runs(g: pd.DataFrame) -> dict[str, str]:
    why = f"a fit across runs {', '.join(sorted(g['run'].unique()))}"
    return {"run": why, "step": f"{why}, each at its last checkpoint"}


def fit_forgetting(
    table: pd.DataFrame, items: pd.DataFrame, y_name: str, num_bootstrap: int = NUM_BOOTSTRAP
) -> list[Fit]:
    keys = RUN + ["item_id"]
    exposed = items[(items["last_step"] >= 0) & (items["phase_end"] < 1.0)][keys + ["last_step"]]
    rows = table.merge(exposed, on=keys)
    rows = rows[rows["step"] > rows["last_step"]]
    fits = []
    for (experiment, run, set_name), g in rows.groupby(RUN + ["set"]):
        if g["step"].nunique() >= 2:
            why = "a fit across the checkpoints after each item's last exposure"
            fits.append(
                _fit(
                    "forgetting",
                    g,
                    g["step"] - g["last_step"],
                    table,
                    y_name,
                    f"run={run}",
                    num_bootstrap,
                    run,
                    None,
                    {"step": why},
                )
            )
    return fits


def fit_model_size(
    table: pd.DataFrame, runs: pd.DataFrame, y_name: str, num_bootstrap: int = NUM_BOOTSTRAP
) -> list[Fit]:
    perturbed = runs[runs["perturbed"]]
    final = _final(table.merge(perturbed[RUN + ["num_params", "train_tokens"]], on=RUN))
    fits = []
    groups = final[final["dup_level"] > 0].groupby(
        ["experiment", "train_tokens", "set", "dup_level"]
    )
    for (experiment, tokens, set_name, level), g in groups:
        if g["num_params"].nunique() >= 2:
            fits.append(
                _fit(
                    "model_size",
                    g,
                    g["num_params"],
                    final,
                    y_name,
                    f"train_tokens={tokens}, dup_level={level}, step=last",
                    num_bootstrap,
                    None,
                    None,
                    _across_runs(g),
                )
            )
    return fits


def fit_all(data: StoreData, metric: str, num_bootstrap: int = NUM_BOOTSTRAP) -> list[Fit]:
    """Every fit the store's runs support, for one probe ``metric``."""
    if data.probes.empty or data.runs.empty:
        return []
    table = scores(data.probes, metric)
    y_name = f"{metric} - controls"
    return [
        *fit_duplicates(table, data.runs, y_name, num_bootstrap),
        *fit_dilution(table, data.runs, y_name, num_bootstrap),
        *fit_forgetting(table, data.items, y_name, num_bootstrap),
        *fit_model_size(table, data.runs, y_name, num_bootstrap),
    ]


def level_summary(data: StoreData, metric: str, seed: int = 0) -> pd.DataFrame:
    """Mean gap to controls per (experiment, run, set, dup level) at each run's last checkpoint,
    with a 95% bootstrap CI that resamples both the level's items and the set's controls (so a
    group the model never saw covers 0 unless it really differs): the table a reader checks
    first. ``step`` is the checkpoint used."""
    columns = RUN + ["step", "set", "dup_level", "n", "mean", "ci_low", "ci_high"]
    if data.probes.empty:
        return pd.DataFrame(columns=columns)
    final = _final(scores(data.probes, metric))
    rng = np.random.default_rng(seed)
    rows = []
    for (experiment, run, set_name), group in final.groupby(RUN + ["set"]):
        controls = group.loc[group["dup_level"] == 0, "value"].to_numpy()
        control_means = (
            item_weights(np.zeros(len(controls)), NUM_BOOTSTRAP, rng) @ controls / len(controls)
        )
        for level, g in group.groupby("dup_level"):
            values = g["value"].to_numpy()
            means = item_weights(np.zeros(len(values)), NUM_BOOTSTRAP, rng) @ values / len(values)
            low, high = np.percentile(means - control_means, [2.5, 97.5])
            rows.append(
                {
                    "experiment": experiment,
                    "run": run,
                    "step": int(g["step"].iloc[0]),
                    "set": set_name,
                    "dup_level": int(level),
                    "n": len(values),
                    "mean": float(g["y"].mean()),
                    "ci_low": float(low),
                    "ci_high": float(high),
                }
            )
    return pd.DataFrame(rows, columns=columns)
