"""The standard figures, drawn from the store through ``pipeline.fit`` (PNG files)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on workers or CI

import matplotlib.pyplot as plt
from taggant.pipeline import fit, store


def dose_response(url: str, metric: str, path: str, experiment: str | None = None) -> str:
    """Gap to controls vs dup level (log x), one line per (run, set), with 95% CIs over items."""
    summary = fit.level_summary(url, metric, experiment)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (run, set_name), g in summary[summary["dup_level"] > 0].groupby(["run", "set"]):
        g = g.sort_values("dup_level")
        ax.errorbar(g["dup_level"], g["mean"], yerr=[g["mean"] - g["ci_low"], g["ci_high"] - g["mean"]],
                    marker="o", capsize=3, label=f"{set_name} ({run})")
    ax.axhline(0, color="grey", lw=1, ls="--", label="controls")
    ax.set(xscale="log", xlabel="duplicates (copies inserted)", ylabel=f"{metric} − controls",
           title="memorization vs duplicates")
    levels = sorted(summary.loc[summary["dup_level"] > 0, "dup_level"].unique())
    ax.set_xticks(levels, [f"×{level}" for level in levels], minor=False)
    ax.set_xticks([], minor=True)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def over_training(url: str, metric: str, path: str, experiment: str | None = None) -> str:
    """Mean gap to controls per (set, dup level) at every probed checkpoint of the perturbed runs,
    with the insertion window of each set that has one narrower than the run shaded: learning and
    forgetting over time."""
    probes = store.read_probes(url).to_pandas()
    if experiment:
        probes = probes[probes["experiment"] == experiment]
    runs = store.read_runs(url, experiment).to_pandas()
    items = store.read_items(url, experiment).to_pandas()
    table = fit.scores(probes, metric)
    table = table[table["run"].isin(runs.loc[runs["perturbed"], "run"]) & (table["dup_level"] > 0)]
    means = table.groupby(["set", "dup_level", "step"])["y"].mean().reset_index()
    fig, ax = plt.subplots(figsize=(7, 4))
    for (set_name, level), g in means.groupby(["set", "dup_level"]):
        line, = ax.plot(g["step"], g["y"], marker=".", label=f"{set_name} ×{level}")
        window = items[(items["set"] == set_name) & (items["last_step"] >= 0)]
        partial = (window["phase_start"] > 0) | (window["phase_end"] < 1)
        if partial.any():  # shade only windows narrower than the whole run
            ax.axvspan(window["first_step"].min(), window["last_step"].max(), color=line.get_color(), alpha=0.08)
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set(xlabel="step", ylabel=f"{metric} − controls", title="memorization over training")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

