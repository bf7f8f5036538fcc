"""The standard figures (PNG files) of what ``pipeline.fit`` and ``pipeline.mia`` compute."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on workers or CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from taggant.pipeline import fit


def _dup_ticks(ax, levels) -> None:
    levels = sorted(levels)
    ax.set_xscale("log")
    ax.set_xticks(levels, [f"×{level}" for level in levels], minor=False)
    ax.set_xticks([], minor=True)


def _error_bars(value: pd.Series, low: pd.Series, high: pd.Series) -> list[np.ndarray]:
    """matplotlib's ``yerr`` of an interval; none where it is missing. An estimate outside its
    interval (a logit AUROC interval at perfect separation ends below 1) gets no bar on that side:
    the bar never claims the estimate is inside."""
    lower = (value - low.astype(float)).fillna(0).clip(lower=0)
    upper = (high.astype(float) - value).fillna(0).clip(lower=0)
    return [lower.to_numpy(), upper.to_numpy()]


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def dose_response(levels: list[dict], fits: list[dict], metric: str, path: str) -> str:
    """Gap to controls vs dup level (log x), one line per (experiment, run, set) of the report's
    level rows with their 95% CIs, and the ``duplicates`` fit of that run and set drawn dashed
    over the levels it was fitted on."""
    rows = pd.DataFrame(levels, columns=fit.LEVEL_COLUMNS)
    members = rows[rows["dup_level"] > 0].astype({c: float for c in ("mean", "ci_low", "ci_high")})
    lines = {(f["experiment"], f["run"], f["set"]): f for f in fits if f["name"] == "duplicates"}
    several = members["experiment"].nunique() > 1
    fig, ax = plt.subplots(figsize=(6, 4))
    for (experiment, run, set_name), g in members.groupby(fit.RUN + ["set"]):
        g = g.sort_values("dup_level")
        label = f"{set_name} ({experiment}/{run})" if several else f"{set_name} ({run})"
        points = ax.errorbar(
            g["dup_level"],
            g["mean"],
            yerr=_error_bars(g["mean"], g["ci_low"], g["ci_high"]),
            marker="o",
            capsize=3,
            label=label,
        )
        law = lines.get((experiment, run, set_name))
        if law is not None:
            x = np.geomspace(g["dup_level"].min(), g["dup_level"].max(), 50)
            ax.plot(
                x,
                law["intercept"] + law["slope"] * np.log10(x),
                ls="--",
                lw=1,
                color=points[0].get_color(),
                label=f"fit: {law['slope']:+.2f} per decade",
            )
    ax.axhline(0, color="grey", lw=1, ls=":", label="controls")
    ax.set(
        xlabel="duplicates (copies inserted)",
        ylabel=f"{metric} − controls",
        title="memorization vs duplicates",
    )
    _dup_ticks(ax, members["dup_level"].unique())
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def over_training(data: fit.StoreData, metric: str, path: str) -> str:
    """Mean gap to controls per (set, dup level) at every probed checkpoint of the perturbed runs,
    with the insertion window of each set that has one narrower than the run shaded: learning and
    forgetting over time."""
    table = fit.scores(data.probes, metric)
    perturbed = data.runs.loc[data.runs["perturbed"], fit.RUN]
    table = table.merge(perturbed, on=fit.RUN)
    table = table[table["dup_level"] > 0]
    means = table.groupby(["set", "dup_level", "step"])["y"].mean().reset_index()
    items = data.items
    fig, ax = plt.subplots(figsize=(7, 4))
    for (set_name, level), g in means.groupby(["set", "dup_level"]):
        (line,) = ax.plot(g["step"], g["y"], marker=".", label=f"{set_name} ×{level}")
        window = items[(items["set"] == set_name) & (items["last_step"] >= 0)]
        partial = (window["phase_start"] > 0) | (window["phase_end"] < 1)
        if partial.any():  # shade only windows narrower than the whole run
            ax.axvspan(
                window["first_step"].min(),
                window["last_step"].max(),
                color=line.get_color(),
                alpha=0.08,
            )
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set(xlabel="step", ylabel=f"{metric} − controls", title="memorization over training")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def auroc(summary: list[dict], runs: pd.DataFrame, path: str) -> str:
    """Membership-inference AUROC vs dup level at each run's last checkpoint (``mia.final_summary``
    rows): one panel per (experiment, set), one line per attack with its 95% CI for the perturbed
    runs; the standard twins' lines faint and dotted (their "members" were never inserted: the
    chance line is where they belong). The legend sits beside the panels, never over the data."""
    rows = pd.DataFrame(summary)
    panels = [] if rows.empty else sorted(rows.groupby(["experiment", "set"]).groups)
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(3.2 * max(1, len(panels)) + 1.6, 3.4), squeeze=False
    )
    colors = {}
    if panels:
        rows = rows.merge(runs[fit.RUN + ["perturbed"]], on=fit.RUN)
    for ax, (experiment, set_name) in zip(axes[0], panels):
        panel = rows[(rows["experiment"] == experiment) & (rows["set"] == set_name)]
        for (run, attack, perturbed), g in panel.groupby(["run", "attack", "perturbed"]):
            g = g.sort_values("dup_level")
            color = colors.setdefault(attack, f"C{len(colors)}")
            ax.errorbar(
                g["dup_level"],
                g["auroc"],
                yerr=_error_bars(g["auroc"], g["auroc_ci_low"], g["auroc_ci_high"]),
                marker="o" if perturbed else None,
                capsize=3 if perturbed else 0,
                color=color,
                alpha=1.0 if perturbed else 0.3,
                ls="-" if perturbed else ":",
                label=attack if perturbed else f"{attack} (twin)",
            )
        _dup_ticks(ax, panel["dup_level"].unique())
        ax.axhline(0.5, color="grey", lw=1, ls="--")
        ax.set(xlabel="duplicates", ylim=(0, 1.02), title=set_name)
    axes[0][0].set_ylabel("AUROC (members vs controls)")
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), fontsize=7, loc="center right")
        fig.tight_layout(rect=(0, 0, 1 - 1.4 / fig.get_figwidth(), 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
