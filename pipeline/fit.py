"""Scaling-law fits from the store, with confidence intervals that say what they condition on.

A metric is named ``<probe>.<metric>`` (``loss.nll_mean``, ``exact_match.exact``). The response
is its per-item **gap to controls**: the item's value minus the mean over the never-inserted
controls of the same set, run and step. The comparison is causal because members and controls
differ only in whether they were trained on; for a loss a negative gap means memorized, for a rate
(exact match) a positive one. Everything is keyed by ``(experiment, run)``: run names carry no
experiment, and fits never pool experiments.

Every fit is a least-squares regression of the members' gaps on ``log10`` of its x (the
``slope``), with the covariates that keep it unconfounded:

* ``duplicates``: y vs dup level, members at the last checkpoint of each perturbed run;
* ``dilution``: ``y = a + b_dup·log10(dup) + b_tokens·log10(train_tokens)`` across runs with
  different budgets at one model size; ``slope`` is ``b_tokens`` (the change of the gap per 10×
  more corpus at a fixed number of copies), ``dup_slope`` is ``b_dup``, and ``ratio_law_p`` tests
  Hubble's "dilution by corpus size" law ``b_dup = −b_tokens`` (memorization a function of
  dup / tokens alone). The two coefficients are separately identified: no fixed ratio is imposed;
* ``forgetting``: y vs steps since an item's last exposure, over checkpoints after it, for sets
  whose phase window closes before the end of training (``phase_end < 1``), with **one intercept
  per dup level**. An item's last exposure is the latest of its L copies, so high-dup items are
  both more recent and more memorized: pooled over levels, recency would be confounded with the
  dup level. Within a level, when an item was last seen is decided by the random placement alone;
* ``model_size``: y vs parameter count, per dup level, at the last checkpoint.

**Intervals and their scope** (``ci_scope``). ``"items"``: the 2.5–97.5 percentile of the
coefficient refitted on bootstrap resamples of items, members and controls alike, stratified by
(set, dup level) so each resample keeps the design. An item is one cluster across every run and
checkpoint it appears in (the runs of an experiment share their items), and the control baseline
of every (run, step) is recomputed from the resampled controls. Such an interval is conditional on
the runs trained: right for a fit inside one run (``duplicates``, ``forgetting``), but for a fit
whose x varies across runs (``dilution``, ``model_size``) a run-to-run shift (the seed) is
confounded with x and the interval is too narrow. ``"runs_and_items"``: where every x value of a
cross-run fit has ≥ 2 runs (seeds), the slope's interval comes from the run level: the run means
of the members' gaps (adjusted for the within-run covariate) regressed on x, with a t quantile on
``runs − 2`` degrees of freedom. A run mean carries its run's shift and its items' noise; the
items shared by all runs move every run mean alike, which the intercept absorbs. ``dup_slope`` is
a within-run contrast, which a run-level shift does not move: its interval always resamples items.

A value that cannot be computed is ``None`` with its reason in the row's ``reasons``, never NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
from scipy import stats

from taggant.pipeline import multiplicity, permutation, store
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.eval_format import CANONICAL
from taggant.pipeline.perturb import rng as seeded

FIT_VERSION = "fit.v4"
"""v4: reads one ``eval_format`` (the items' own texts unless asked) and refuses a mix; the
report records it (``eval_formats``). v3: the twin difference-in-differences is primary."""
NUM_BOOTSTRAP = 1000
CONFIDENCE = 0.95
DEFAULT_METRIC = "loss.nll_mean"
RUN = ["experiment", "run"]
CELL = ["experiment", "run", "step", "set"]
"""The rows one control baseline covers."""
CHUNK_ELEMENTS = 1 << 22
"""Bound on resamples × rows × coefficients held at once by the bootstrap."""
X_NAMES = {
    "duplicates": "dup_level",
    "dilution": "train_tokens",
    "forgetting": "steps_since_last_exposure",
    "model_size": "num_params",
}
"""The x of each fit."""
CROSS_RUN = ("dilution", "model_size")
"""Fits whose x varies across runs: an items-only interval is conditional on the runs trained."""
DILUTION_ONLY = ("dup_slope", "dup_slope_ci_low", "dup_slope_ci_high", "ratio_law_p")


@dataclass(frozen=True)
class StoreData:
    """One read of a store (or one experiment of it): probe rows, runs and items as pandas."""

    probes: pd.DataFrame
    runs: pd.DataFrame
    items: pd.DataFrame


def load(
    url: str,
    experiment: str | None = None,
    probe_config: str | None = None,
    eval_format: str | None = CANONICAL,
) -> StoreData:
    """Read the committed probe rows, runs and items of ``experiment`` (all when ``None``), the
    rows of one ``probe_config`` only when given (else the store must hold one per experiment:
    ``store.read_probes`` refuses a mix), and of one ``eval_format`` (``pipeline.eval_format``):
    the items' own texts by default, so fits, level tables, membership inference and reports
    never average a variant or another format into them; ``None`` reads every format (then
    group by ``eval_format``)."""
    flt = ds.field("experiment") == experiment if experiment else None
    if eval_format is not None:
        chosen = ds.field("eval_format") == eval_format
        flt = chosen if flt is None else flt & chosen
    return StoreData(
        store.read_probes(url, flt, probe_config=probe_config).to_pandas(),
        store.read_runs(url, experiment).to_pandas(),
        store.read_items(url, experiment).to_pandas(),
    )


@dataclass(frozen=True, kw_only=True)
class Fit:
    """One fitted law; ``slope`` is the coefficient of ``log10(x)`` with its 95% CI.

    ``run`` is ``None`` for a fit across runs and ``step`` for one across checkpoints; every
    ``None`` has its reason in ``reasons`` (field → why). ``ci_scope`` says what the interval
    varies: ``"items"`` (conditional on the runs trained) or ``"runs_and_items"``. ``runs`` is
    the number of runs the fit spans and ``min_runs_per_x`` the fewest runs sharing one x value
    (1 for a within-run fit). The ``DILUTION_ONLY`` fields belong to the dilution fit."""

    name: str
    experiment: str
    run: str | None
    step: int | None
    set: str
    x: str
    y: str
    model: str
    intercept: float | None
    slope: float
    ci_low: float | None
    ci_high: float | None
    ci_scope: str
    r2: float | None
    n: int
    items: int
    controls: int
    runs: int
    min_runs_per_x: int
    method: str
    filter: str
    dup_slope: float | None = None
    dup_slope_ci_low: float | None = None
    dup_slope_ci_high: float | None = None
    ratio_law_p: float | None = None
    reasons: dict[str, str] = field(default_factory=dict)
    version: str = FIT_VERSION

    def to_dict(self) -> dict:
        """JSON-safe fields; the dilution-only ones only on a dilution fit."""
        out = asdict(self)
        if self.name != "dilution":
            for key in DILUTION_ONLY:
                del out[key]
        return out


@dataclass(frozen=True)
class _Design:
    """The rows of one fit: ``member`` rows enter the regression with covariates ``X`` (one
    column per coefficient), ``control`` rows only the baseline of their cell. Arrays are per
    row; ``item`` indexes ``strata``."""

    X: np.ndarray
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


def _gaps(d: _Design, w_all: np.ndarray) -> np.ndarray:
    """Members' gaps under each row of item weights, each cell's baseline the weighted mean of
    its controls (NaN where a resample drew no control of the cell)."""
    ctrl = ~d.member
    cells = np.zeros((ctrl.sum(), d.cell.max() + 1))
    cells[np.arange(ctrl.sum()), d.cell[ctrl]] = 1.0
    wc = w_all[:, d.item[ctrl]]
    with np.errstate(invalid="ignore", divide="ignore"):
        baseline = ((wc * d.value[ctrl]) @ cells) / (wc @ cells)
    return d.value[d.member] - baseline[:, d.cell[d.member]]


def _weighted_fits(d: _Design, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``(resamples, p)`` and r² of the weighted least squares of the members' gaps
    on ``X``, one resample per row of item ``weights``; NaN where a resample's design is
    singular (a covariate that does not vary in it)."""
    X = d.X[d.member]
    p = X.shape[1]
    coefs, r2s = [], []
    step = max(1, CHUNK_ELEMENTS // max(1, len(d.value) * p))
    for start in range(0, len(weights), step):
        w_all = weights[start : start + step]
        y = _gaps(d, w_all)
        w = w_all[:, d.item[d.member]]
        wx = w[:, :, None] * X[None]
        xtwx, xtwy = np.einsum("bmp,mq->bpq", wx, X), np.einsum("bmp,bm->bp", wx, y)
        # Singular resamples (a level or x missing from the draw) get NaN, not an error.
        ok = np.isfinite(xtwy).all(1) & (np.abs(np.linalg.det(xtwx)) > 1e-12 * np.abs(xtwx).max())
        coef = np.full((len(w_all), p), np.nan)
        if ok.any():
            coef[ok] = np.linalg.solve(xtwx[ok], xtwy[ok][:, :, None])[:, :, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            ybar = (w * y).sum(1, keepdims=True) / w.sum(1, keepdims=True)
            sse = (w * (y - np.einsum("mp,bp->bm", X, coef)) ** 2).sum(1)
            sst = (w * (y - ybar) ** 2).sum(1)
            r2s.append(1 - sse / np.where(sst > 0, sst, np.nan))
        coefs.append(coef)
    return np.concatenate(coefs), np.concatenate(r2s)


def _percentile_ci(draws: np.ndarray) -> tuple[float, float] | None:
    if np.isnan(draws).all():
        return None
    alpha = 100 * (1 - CONFIDENCE) / 2
    low, high = np.nanpercentile(draws, [alpha, 100 - alpha])
    return float(low), float(high)


def _run_level(d: _Design, run: np.ndarray, coef: np.ndarray, col: int) -> dict:
    """Slope of column ``col`` (constant within each run) from the run level: run means of the
    members' gaps, less the fitted within-run covariates, regressed on the column; a t interval
    on ``runs − 2`` degrees of freedom. ``run`` indexes the member rows' runs."""
    X = d.X[d.member]
    within = [k for k in range(1, X.shape[1]) if k != col]
    y = _gaps(d, np.ones((1, len(d.strata))))[0] - X[:, within] @ coef[within]
    frame = pd.DataFrame({"run": run, "y": y, "x": X[:, col]}).groupby("run").mean()
    fit = stats.linregress(frame["x"], frame["y"])
    df = len(frame) - 2
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * fit.stderr
    return {"se": float(fit.stderr), "df": df, "ci": (fit.slope - half, fit.slope + half)}


def _design(rows: pd.DataFrame, X: np.ndarray) -> _Design:
    """A fit's design: member rows (``X`` used) and the control rows of their cells."""
    item = rows.groupby(["experiment", "item_id"], sort=False).ngroup().to_numpy()
    strata = np.zeros(item.max() + 1, dtype=np.int64)
    strata[item] = rows.groupby(["set", "dup_level"], sort=False).ngroup().to_numpy()
    return _Design(
        X,
        rows["value"].to_numpy(dtype=np.float64),
        item,
        rows.groupby(CELL, sort=False).ngroup().to_numpy(),
        rows["dup_level"].to_numpy() > 0,
        strata,
    )


def _fit(
    *,
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
    level_effects: bool = False,
) -> Fit:
    """Regress ``members``' gaps on ``log10(x)``; the dilution fit adds ``log10(dup)``, and
    ``level_effects`` replaces the intercept by one per dup level. Controls of the members'
    cells come from ``table``."""
    cells = members[CELL].drop_duplicates()
    controls = table[table["dup_level"] == 0].merge(cells, on=CELL)
    rows = pd.concat([members.assign(x=x), controls.assign(x=1.0)], ignore_index=True)
    lx = np.log10(rows["x"].to_numpy(dtype=np.float64))
    if level_effects:
        # members' levels only: control rows enter the baseline, never the regression
        base = pd.get_dummies(rows["dup_level"]).drop(columns=0, errors="ignore")
        base = base.to_numpy(dtype=np.float64)
        X, col = np.column_stack([base, lx]), base.shape[1]
    elif name == "dilution":
        ldup = np.log10(np.maximum(rows["dup_level"].to_numpy(dtype=np.float64), 1))
        X, col = np.column_stack([np.ones(len(rows)), lx, ldup]), 1
    else:
        X, col = np.column_stack([np.ones(len(rows)), lx]), 1
    d = _design(rows, X)
    [experiment], [set_name] = members["experiment"].unique(), members["set"].unique()
    seed = seeded.derive_seed(0, "fit.bootstrap", set_name, f"{experiment}/{name}/{filt}")
    ones = np.ones((1, len(d.strata)))
    coefs, r2 = _weighted_fits(d, ones)
    coef = coefs[0]
    reasons = dict(reasons)
    out: dict = {"intercept": None if level_effects else float(coef[0]), "slope": float(coef[col])}
    if level_effects:
        reasons["intercept"] = "one intercept per dup level (dup-level fixed effects)"
    out["r2"] = float(r2[0]) if np.isfinite(r2[0]) else None
    if out["r2"] is None:
        reasons["r2"] = "the gaps do not vary: r² is undefined"

    per_x = pd.DataFrame({"x": x.to_numpy(), "run": members["run"].to_numpy()})
    min_runs = int(per_x.groupby("x")["run"].nunique().min()) if name in CROSS_RUN else 1
    scope = "runs_and_items" if name in CROSS_RUN and min_runs >= 2 else "items"
    method = f"least squares; CI: stratified item bootstrap ({num_bootstrap}), percentile"

    sizes = pd.Series(d.strata).value_counts()
    boot = None
    if (sizes < 2).any():
        why = f"the bootstrap needs ≥ 2 items per (set, dup level); {sizes.idxmin()} has 1"
        reasons.update(ci_low=why, ci_high=why)
    else:
        boot, _ = _weighted_fits(
            d, item_weights(d.strata, num_bootstrap, np.random.default_rng(seed))
        )
        ci = _percentile_ci(boot[:, col])
        if ci is None:
            why = "x does not vary inside any bootstrap resample"
            reasons.update(ci_low=why, ci_high=why)
        else:
            out["ci_low"], out["ci_high"] = ci
    level = None
    if scope == "runs_and_items":
        member_runs = members["run"].to_numpy()
        level = _run_level(d, member_runs, coef, col)
        out["ci_low"], out["ci_high"] = map(float, level["ci"])
        reasons.pop("ci_low", None), reasons.pop("ci_high", None)
        method = (
            f"least squares; CI: run means regressed on x, t on {level['df']} df "
            f"(seeds vary the runs)"
        )
    elif name in CROSS_RUN:
        why = (
            f"conditional on the {members['run'].nunique()} runs trained ({min_runs} per "
            f"{X_NAMES[name]}): ≥ 2 seeds per {X_NAMES[name]} (runs.seeds) let the CI include "
            "run-to-run variance"
        )
        reasons["ci_scope"] = why
    if name == "dilution":
        terms, why = _dilution_terms(coef, boot, level if scope == "runs_and_items" else None)
        out.update(terms)
        reasons.update(why)
    return Fit(
        name=name,
        experiment=experiment,
        run=run,
        step=step,
        set=set_name,
        x=X_NAMES[name],
        y=y_name,
        model=_MODELS[name],
        intercept=out["intercept"],
        slope=out["slope"],
        ci_low=out.get("ci_low"),
        ci_high=out.get("ci_high"),
        ci_scope=scope,
        r2=out["r2"],
        n=len(members),
        items=members["item_id"].nunique(),
        controls=controls["item_id"].nunique(),
        runs=members["run"].nunique(),
        min_runs_per_x=min_runs,
        method=method,
        filter=filt,
        dup_slope=out.get("dup_slope"),
        dup_slope_ci_low=out.get("dup_slope_ci_low"),
        dup_slope_ci_high=out.get("dup_slope_ci_high"),
        ratio_law_p=out.get("ratio_law_p"),
        reasons=reasons,
    )


_MODELS = {
    "duplicates": "y = a + b*log10(dup)",
    "dilution": "y = a + b*log10(train_tokens) + b_dup*log10(dup)",
    "forgetting": "y = a[dup level] + b*log10(steps since last exposure)",
    "model_size": "y = a + b*log10(num_params)",
}


def _dilution_terms(
    coef: np.ndarray, boot: np.ndarray | None, level: dict | None
) -> tuple[dict, dict[str, str]]:
    """``dup_slope`` with its item-bootstrap CI and ``ratio_law_p``: a Wald test of
    ``b_dup + b_tokens = 0`` with the bootstrap's standard errors (the slope's from the run level
    where ``level`` is given: t on its degrees of freedom, the two estimated from independent
    within- and between-run variation), each ``None`` with its reason otherwise."""
    terms: dict = {"dup_slope": float(coef[2])}
    ci = None if boot is None else _percentile_ci(boot[:, 2])
    if ci is None:
        why = "no item bootstrap (see ci_low)"
        return terms, dict(dup_slope_ci_low=why, dup_slope_ci_high=why, ratio_law_p=why)
    terms["dup_slope_ci_low"], terms["dup_slope_ci_high"] = ci
    var_dup = np.nanvar(boot[:, 2], ddof=1)
    if level is None:
        se, df = float(np.nanstd(boot[:, 1] + boot[:, 2], ddof=1)), np.inf
    else:
        se, df = float(np.sqrt(var_dup + level["se"] ** 2)), level["df"]
    if not se > 0:
        return terms, {"ratio_law_p": "b_dup + b_tokens has no spread across resamples"}
    t = (coef[1] + coef[2]) / se
    terms["ratio_law_p"] = float(2 * stats.t.sf(abs(t), df))
    return terms, {}


def one_format(rows: pd.DataFrame, what: str) -> None:
    """Refuse probe rows of more than one ``eval_format``: an item's text and its variants (or
    another format) are different measurements, never averaged into one gap.

    Raises:
        DataError: naming the formats and the fix.
    """
    formats = sorted(rows["eval_format"].dropna().unique()) if "eval_format" in rows else []
    if len(formats) > 1:
        raise DataError(
            f"{what}: the probe rows hold {len(formats)} eval_formats ({', '.join(formats)}); "
            "read one, fit.load(..., eval_format=...) (the default reads the items' own texts)"
        )


def scores(probes: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (experiment, run, step, set, item) gap ``y`` of ``metric`` (``<probe>.<metric>``) to
    the mean of the set's controls at the same run and step, with ``dup_level``, ``tokens_seen``
    and the raw ``value``. Sets without controls have no gap and are left out
    (``without_controls`` lists them).

    Raises:
        ConfigError: when ``metric`` is not of the form ``<probe>.<metric>``.
        DataError: when the metric has non-finite values (a mean of them is no baseline), or
            rows of several ``eval_format`` (``one_format``).
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
    one_format(rows, metric)
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


def _across_runs(g: pd.DataFrame) -> dict[str, str]:
    why = f"a fit across runs {', '.join(sorted(g['run'].unique()))}"
    return {"run": why, "step": f"{why}, each at its last checkpoint"}


def fit_duplicates(
    table: pd.DataFrame, runs: pd.DataFrame, y_name: str, num_bootstrap: int = NUM_BOOTSTRAP
) -> list[Fit]:
    """Per perturbed run and set with ≥ 2 dup levels, at the run's last checkpoint."""
    fits = []
    final = _final(table.merge(runs.loc[runs["perturbed"], RUN], on=RUN))
    for (experiment, run, set_name), g in final[final["dup_level"] > 0].groupby(RUN + ["set"]):
        if g["dup_level"].nunique() >= 2:
            fits.append(
                _fit(
                    name="duplicates",
                    members=g,
                    x=g["dup_level"],
                    table=final,
                    y_name=y_name,
                    filt=f"run={run}, step=last",
                    num_bootstrap=num_bootstrap,
                    run=run,
                    step=int(g["step"].iloc[0]),
                    reasons={},
                )
            )
    return fits


def fit_dilution(
    table: pd.DataFrame, runs: pd.DataFrame, y_name: str, num_bootstrap: int = NUM_BOOTSTRAP
) -> list[Fit]:
    """Per (model size, set) across perturbed runs with ≥ 2 token budgets and ≥ 2 dup levels
    (else ``b_dup`` and ``b_tokens`` are not both identified), each at its last checkpoint."""
    perturbed = runs[runs["perturbed"]]
    final = _final(table.merge(perturbed[RUN + ["train_tokens", "model_size"]], on=RUN))
    fits = []
    for (experiment, size, set_name), g in final[final["dup_level"] > 0].groupby(
        ["experiment", "model_size", "set"]
    ):
        if g["train_tokens"].nunique() >= 2 and g["dup_level"].nunique() >= 2:
            fits.append(
                _fit(
                    name="dilution",
                    members=g,
                    x=g["train_tokens"],
                    table=final,
                    y_name=y_name,
                    filt=f"model_size={size}, step=last",
                    num_bootstrap=num_bootstrap,
                    run=None,
                    step=None,
                    reasons=_across_runs(g),
                )
            )
    return fits


def fit_forgetting(
    table: pd.DataFrame, items: pd.DataFrame, y_name: str, num_bootstrap: int = NUM_BOOTSTRAP
) -> list[Fit]:
    """Per run and set whose window closed, over the checkpoints after each member's last
    exposure (≥ 2 of them), with one intercept per dup level."""
    keys = RUN + ["item_id"]
    exposed = items[(items["last_step"] >= 0) & (items["phase_end"] < 1.0)][keys + ["last_step"]]
    rows = table.merge(exposed, on=keys)
    rows = rows[rows["step"] > rows["last_step"]]
    fits = []
    for (experiment, run, set_name), g in rows.groupby(RUN + ["set"]):
        if g["step"].nunique() >= 2:
            fits.append(
                _fit(
                    name="forgetting",
                    members=g,
                    x=g["step"] - g["last_step"],
                    table=table,
                    y_name=y_name,
                    filt=f"run={run}",
                    num_bootstrap=num_bootstrap,
                    run=run,
                    step=None,
                    reasons={
                        "step": "a fit across the checkpoints after each item's last exposure"
                    },
                    level_effects=True,
                )
            )
    return fits


def fit_model_size(
    table: pd.DataFrame, runs: pd.DataFrame, y_name: str, num_bootstrap: int = NUM_BOOTSTRAP
) -> list[Fit]:
    """Per (token budget, set, dup level) across perturbed runs with ≥ 2 parameter counts."""
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
                    name="model_size",
                    members=g,
                    x=g["num_params"],
                    table=final,
                    y_name=y_name,
                    filt=f"train_tokens={tokens}, dup_level={level}, step=last",
                    num_bootstrap=num_bootstrap,
                    run=None,
                    step=None,
                    reasons=_across_runs(g),
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


def twin_pairs(runs: pd.DataFrame) -> pd.DataFrame:
    """``experiment, run, twin``: each perturbed run and its standard twin (the run with the same
    model size, budget and seed, ``perturbed`` false)."""
    pair = ["experiment", "model_size", "train_tokens", "seed"]
    twins = runs.loc[~runs["perturbed"], pair + ["run"]].rename(columns={"run": "twin"})
    both = runs.loc[runs["perturbed"], pair + ["run"]].merge(twins, on=pair)
    return both[["experiment", "run", "twin"]]


LEVEL_COLUMNS = [
    *RUN,
    "step",
    "set",
    "dup_level",
    "n",
    "controls",
    "mean",
    "ci_low",
    "ci_high",
    "p",
    "did",
    "did_ci_low",
    "did_ci_high",
    "did_p",
    "estimate",
    "p_holm",
    "reasons",
]


def level_summary(data: StoreData, metric: str) -> pd.DataFrame:
    """Per (experiment, run, set, dup level) at each run's last checkpoint: the table a reader
    checks first.

    * ``mean``: the members' mean gap to the set's controls, with a 95% percentile CI from a
      bootstrap that resamples members and controls separately (items are the unit: one row per
      item here), and ``p``, the two-sided permutation p-value of members vs controls (exact
      under the randomized split, ``pipeline.permutation``). A group the model never saw
      covers 0 unless it really differs.
    * ``did`` (perturbed runs with a standard twin): the difference-in-differences
      (members' perturbed − twin value) − (controls' perturbed − twin value) at the same step,
      with its item-resampling CI and permutation ``did_p``. It removes what the twin shares
      with the perturbed run (each item's own difficulty), so it is the primary causal estimate
      where it exists: ``estimate`` says which of ``mean``/``did`` is primary.
    * ``p_holm``: the primary p-value Holm-adjusted over the family of one run's rows at its last
      checkpoint (every set × dup level > 0).

    The dup-0 row is the baseline itself: ``n`` controls, mean 0, no CI or p-value (its reason
    in ``reasons``)."""
    if data.probes.empty:
        return pd.DataFrame(columns=LEVEL_COLUMNS)
    table = scores(data.probes, metric)
    final = _final(table)
    twin_of = dict(
        (tuple(k), t) for *k, t in twin_pairs(data.runs).itertuples(index=False, name=None)
    )
    rows = []
    for (experiment, run, set_name), group in final.groupby(RUN + ["set"]):
        step = int(group["step"].iloc[0])
        twin = _twin_values(table, experiment, twin_of.get((experiment, run)), step, set_name)
        for level, g in group.groupby("dup_level"):
            rows.append(
                _level_row(group, g, twin, f"{experiment}/{run}/{set_name}/{level}")
                | {"experiment": experiment, "run": run, "step": step, "set": set_name}
            )
    levels = pd.DataFrame(rows, columns=LEVEL_COLUMNS)
    primary = np.where(levels["estimate"] == "did", levels["did_p"], levels["p"]).astype(float)
    levels["p_holm"] = np.nan
    for _, index in levels.groupby(RUN).groups.items():
        levels.loc[index, "p_holm"] = multiplicity.holm(primary[levels.index.get_indexer(index)])
    return levels.astype(object).where(levels.notna(), None)


def _twin_values(
    table: pd.DataFrame, experiment: str, twin: str | None, step: int, set_name: str
) -> pd.Series | None:
    """The twin's values of ``set_name`` at ``step`` by item, or ``None`` without a twin."""
    if twin is None:
        return None
    rows = table[
        (table["experiment"] == experiment)
        & (table["run"] == twin)
        & (table["step"] == step)
        & (table["set"] == set_name)
    ]
    return rows.set_index("item_id")["value"]


def _mean_difference(
    members: np.ndarray, controls: np.ndarray, rng: np.random.Generator
) -> tuple[float, float | None, float | None, float | None]:
    """Mean members − controls, its percentile CI (members and controls resampled apart) and the
    two-sided permutation p-value; no CI or p-value below 2 items in a group."""
    mean = float(members.mean() - controls.mean())
    if min(len(members), len(controls)) < 2:
        return mean, None, None, None
    draws = [
        item_weights(np.zeros(len(v)), NUM_BOOTSTRAP, rng) @ v / len(v) for v in (members, controls)
    ]
    low, high = _percentile_ci(draws[0] - draws[1])
    seed = int(rng.integers(2**63))
    return mean, low, high, permutation.two_sided(permutation.shift_test(members, controls, seed))


def _level_row(group: pd.DataFrame, g: pd.DataFrame, twin: pd.Series | None, key: str) -> dict:
    level = int(g["dup_level"].iloc[0])
    controls = group[group["dup_level"] == 0]
    row = {"dup_level": level, "n": len(g), "controls": len(controls), "reasons": {}}
    if level == 0:
        why = "the controls are the baseline: their gap is 0 by definition"
        return row | {"mean": 0.0, "estimate": "mean", "reasons": {"ci_low": why, "p": why}}
    rng = np.random.default_rng(seeded.derive_seed(0, "fit.levels", "", key))
    row["mean"], row["ci_low"], row["ci_high"], row["p"] = _mean_difference(
        g["value"].to_numpy(float), controls["value"].to_numpy(float), rng
    )
    if row["p"] is None:
        row["reasons"]["p"] = "a CI and a p-value need ≥ 2 members and ≥ 2 controls"
    row["estimate"] = "mean"
    if twin is None:
        row["reasons"]["did"] = "no standard twin of this perturbed run in the store, or a twin"
        return row
    diffs = [
        (x.set_index("item_id")["value"] - twin).dropna().to_numpy(float) for x in (g, controls)
    ]
    if min(map(len, diffs)) == 0:
        row["reasons"]["did"] = "the twin has no rows for these items at this step"
        return row
    row["did"], row["did_ci_low"], row["did_ci_high"], row["did_p"] = _mean_difference(*diffs, rng)
    row["estimate"] = "did"
    return row
