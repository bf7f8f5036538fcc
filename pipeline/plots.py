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


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def dose_response(levels: pd.DataFrame, fits: list[fit.Fit], metric: str, path: str) -> str:
    """Gap to controls vs dup level (log x), one line per (experiment, run, set) of
    ``fit.level_summary`` with its 95% CIs, and the ``duplicates`` fit of that run and set drawn
    dashed over the levels it was fitted on."""
    members = levels[levels["dup_level"] > 0]
    lines = {(f.experiment, f.run, f.set): f for f in fits if f.name == "duplicates"}
    several = members["experiment"].nunique() > 1
    fig, ax = plt.subplots(figsize=(6, 4))
    for (experiment, run, set_name), g in members.groupby(fit.RUN + ["set"]):
        g = g.sort_values("dup_level")
        label = f"{set_name} ({experiment}/{run})" if several else f"{set_name} ({run})"
        points = ax.errorbar(
            g["dup_level"],
            g["mean"],
            yerr=[g["mean"] - g["ci_low"], g["ci_high"] - g["mean"]],
            marker="o",
            capsize=3,
            label=label,
        )
        law = lines.get((experiment, run, set_name))
        if law is not None:
            x = np.geomspace(g["dup_level"].min(), g["dup_level"].max(), 50)
            ax.plot(
                x,
                law.intercept + law.slope * np.log10(x),
                ls="--",
                lw=1,
                color=points[0].get_color(),
                label=f"fit: {law.slope:+.2f} per decade",
            )
    ax.axhline(0, color="grey", lw=1, ls=":", label="controls")
    ax.set(
        xlabel="duplicates (copies inserted)",
        ylabel=f"{metric} − controls",
        title="memorization vs duplicates",
    )
    _dup_ticks(ax, members["dup_level"].unique())
    ax.legend(fontsize=7)
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
    rows), one line per (set, attack) with its 95% CI; perturbed runs solid, standard twins dotted
    (their "members" were never inserted: the chance line is where they belong)."""
    rows = pd.DataFrame(summary)
    fig, ax = plt.subplots(figsize=(7, 4))
    if not rows.empty:
        rows = rows.merge(runs[fit.RUN + ["perturbed"]], on=fit.RUN)
        for (run, set_name, attack, perturbed), g in rows.groupby(
            ["run", "set", "attack", "perturbed"]
        ):
            g = g.sort_values("dup_level")
            low = (g["auroc"] - g["auroc_ci_low"]).fillna(0)
            high = (g["auroc_ci_high"] - g["auroc"]).fillna(0)
            ax.errorbar(
                g["dup_level"],
                g["auroc"],
                yerr=[low, high],
                marker="o",
                capsize=3,
                ls="-" if perturbed else ":",
                label=f"{set_name} {attack} ({run})",
            )
        _dup_ticks(ax, rows["dup_level"].unique())
    ax.axhline(0.5, color="grey", lw=1, ls="--", label="chance")
    ax.set(
        xlabel="duplicates (copies inserted)",
        ylabel="AUROC (members vs controls)",
        ylim=(0, 1.02),
        title="membership inference vs duplicates",
    )
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)
