"""Fits recover known laws from store rows generated with them, their CIs cover the truth at the
stated rate, and they say nothing (with a reason) where the store cannot support a fit."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from taggant.pipeline import fit
from taggant.pipeline.fit import fit_all, level_summary, load
from taggant.pipeline.store import StoreWriter

LEVELS = [0, 1, 4, 16, 64]


def write_run(
    writer,
    run,
    *,
    slope,
    tokens,
    params,
    steps,
    last_step=None,
    noise=0.3,
    seed=0,
    forget=0.0,
    levels=LEVELS,
):
    """Items at each dup level; loss = 8 + slope*log10(dup) (controls 8) + noise, and after the last
    exposure the gap shrinks by ``forget`` per decade of steps since."""
    rng = np.random.default_rng(seed)
    exposed_until = max(steps) if last_step is None else last_step  # None: inserted until the end
    items = [
        {
            "item_id": f"s/{lvl:02d}-{i:02d}",
            "set": "s",
            "kind": "canary",
            "dup_level": lvl,
            "phase_start": 0.0,
            "phase_end": 1.0 if last_step is None else 0.5,
            "first_step": -1 if lvl == 0 else 0,
            "last_step": -1 if lvl == 0 else exposed_until,
        }
        for lvl in levels
        for i in range(20)
    ]
    writer.write_run(
        run,
        {
            "model_size": "m",
            "train_tokens": tokens,
            "num_params": params,
            "perturbed": True,
            "seed": seed,
        },
    )
    writer.write_items(run, pa.Table.from_pylist(items))
    base = {it["item_id"]: rng.normal(0, noise) for it in items}
    for step in steps:
        rows = []
        for it in items:
            gap = slope * np.log10(it["dup_level"]) if it["dup_level"] else 0.0
            if last_step is not None and it["dup_level"] and step > last_step:
                gap *= max(0.0, 1 - forget * np.log10(step - last_step))
            rows.append(
                {
                    "tokens_seen": step * 1000,
                    "item_id": it["item_id"],
                    "set": "s",
                    "kind": "canary",
                    "dup_level": it["dup_level"],
                    "probe": "loss",
                    "probe_version": "loss.v1",
                    "probe_config": "c",
                    "metric": "nll_mean",
                    "value": 8 + gap + base[it["item_id"]],
                    "schema_version": 1,
                }
            )
        writer.begin_checkpoint(run, step)
        writer.write_probe_rows(run, step, "loss", 0, pa.Table.from_pylist(rows))
        writer.commit_checkpoint(run, step, step * 1000, ["loss"], "c", len(rows))


def test_duplicates_fit_and_level_summary(tmp_path):
    url = str(tmp_path / "store")
    write_run(StoreWriter(url, "e"), "r", slope=-2.0, tokens=10**6, params=10**6, steps=[10, 20])
    [f] = fit_all(load(url), "loss.nll_mean")
    assert f.name == "duplicates" and f.x == "dup_level" and f.n == 80 and f.controls == 20
    assert (f.experiment, f.run, f.step) == ("e", "r", 20)
    assert f.ci_low < -2.0 < f.ci_high
    summary = level_summary(load(url), "loss.nll_mean").set_index("dup_level")
    assert abs(summary.loc[0, "mean"]) < 1e-12  # controls are the baseline
    assert summary.loc[64, "ci_high"] < summary.loc[16, "ci_low"]
    assert set(summary["experiment"]) == {"e"} and set(summary["step"]) == {20}


def test_forgetting_fit_only_for_sets_whose_window_closed(tmp_path):
    url = str(tmp_path / "store")
    write_run(
        StoreWriter(url, "e"),
        "r",
        slope=-3.0,
        tokens=10**6,
        params=10**6,
        steps=[10, 20, 60, 160, 510],
        last_step=10,
        forget=0.4,
    )
    fits = {f.name: f for f in fit_all(load(url), "loss.nll_mean")}
    forgetting = fits["forgetting"]
    assert (
        forgetting.x == "steps_since_last_exposure"
        and forgetting.slope > 0
        and forgetting.ci_low > 0
    )
    assert forgetting.step is None and "checkpoints" in forgetting.reasons["step"]


@pytest.mark.parametrize(
    "name, column", [("dilution", "train_tokens"), ("model_size", "num_params")]
)
def test_cross_run_fits_need_runs_that_differ(tmp_path, name, column):
    url = str(tmp_path / "store")
    writer = StoreWriter(url, "e")
    # Two runs: twice the tokens (or parameters) and weaker (or stronger) memorization.
    write_run(writer, "a", slope=-3.0, tokens=10**6, params=10**6, steps=[10], seed=1)
    other = (
        {"tokens": 4 * 10**6, "params": 10**6}
        if column == "train_tokens"
        else {"tokens": 10**6, "params": 10**7}
    )
    write_run(
        writer, "b", slope=-1.0 if column == "train_tokens" else -5.0, steps=[10], seed=2, **other
    )
    fits = [f for f in fit_all(load(url), "loss.nll_mean") if f.name == name]
    assert fits and all(f.n > 0 and f.run is None and "a, b" in f.reasons["run"] for f in fits)
    single = str(tmp_path / "single")
    write_run(StoreWriter(single, "e"), "a", slope=-3.0, tokens=10**6, params=10**6, steps=[10])
    assert not [f for f in fit_all(load(single), "loss.nll_mean") if f.name == name]


def test_experiments_with_the_same_run_names_are_fitted_apart(tmp_path):
    url = str(tmp_path / "store")
    write_run(
        StoreWriter(url, "weak"), "r", slope=-0.5, tokens=10**6, params=10**6, steps=[10], seed=1
    )
    write_run(
        StoreWriter(url, "strong"), "r", slope=-4.0, tokens=10**6, params=10**6, steps=[20], seed=2
    )
    fits = {f.experiment: f for f in fit_all(load(url), "loss.nll_mean")}
    assert set(fits) == {"weak", "strong"}
    assert fits["weak"].ci_low < -0.5 < fits["weak"].ci_high and fits["weak"].step == 10
    assert fits["strong"].ci_low < -4.0 < fits["strong"].ci_high and fits["strong"].step == 20
    levels = level_summary(load(url), "loss.nll_mean")
    assert len(levels) == 2 * len(LEVELS) and set(levels["experiment"]) == {"weak", "strong"}


def test_cli_fit_json_is_valid_json_with_explicit_keys_and_reasons(tmp_path, capsys):
    from taggant.jobs.cli import main

    url = str(tmp_path / "store")
    # One item per level: a slope but no bootstrap CI; a second set without controls.
    write_run(StoreWriter(url, "e"), "r", slope=-2.0, tokens=10**6, params=10**6, steps=[10])
    write_run(
        StoreWriter(url, "f"),
        "r",
        slope=-2.0,
        tokens=10**6,
        params=10**6,
        steps=[10],
        levels=[1, 4],
    )
    assert main(["fit", "--store", url, "--json"]) == 0
    out = json.loads(
        capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")
    )
    [f] = out["fits"]
    assert {
        "name",
        "experiment",
        "run",
        "step",
        "set",
        "x",
        "y",
        "model",
        "slope",
        "ci_low",
        "ci_high",
        "r2",
        "n",
        "method",
        "reasons",
    } <= f.keys()
    assert (f["experiment"], f["run"], f["step"]) == ("e", "r", 10)
    assert f["ci_low"] < f["slope"] < f["ci_high"] < 0
    assert out["skipped"] == [
        {"experiment": "f", "run": "r", "set": "s", "reason": out["skipped"][0]["reason"]}
    ]
    assert "no never-inserted controls" in out["skipped"][0]["reason"]
    assert {(r["experiment"], r["run"], r["step"]) for r in out["levels"]} == {("e", "r", 10)}


def test_a_ci_that_cannot_be_estimated_is_null_with_its_reason(tmp_path):
    url = str(tmp_path / "store")
    writer = StoreWriter(url, "e")
    items = [
        {
            "item_id": f"s/{i}",
            "set": "s",
            "kind": "canary",
            "dup_level": lvl,
            "phase_start": 0.0,
            "phase_end": 1.0,
            "first_step": 0,
            "last_step": 5,
        }
        for i, lvl in enumerate([0, 0, 1, 4, 16])
    ]
    writer.write_run(
        "r",
        {"model_size": "m", "train_tokens": 10, "num_params": 10, "perturbed": True},
    )
    writer.write_items("r", pa.Table.from_pylist(items))
    rows = [
        {
            "tokens_seen": 5,
            "item_id": it["item_id"],
            "set": "s",
            "kind": "canary",
            "dup_level": it["dup_level"],
            "probe": "loss",
            "probe_version": "loss.v1",
            "probe_config": "c",
            "metric": "nll_mean",
            "value": 8.0 - i,
            "schema_version": 1,
        }
        for i, it in enumerate(items)
    ]
    writer.write_probe_rows("r", 5, "loss", 0, pa.Table.from_pylist(rows))
    writer.commit_checkpoint("r", 5, 5, ["loss"], "c", len(rows))
    [f] = fit_all(load(url), "loss.nll_mean")
    assert f.ci_low is None and f.ci_high is None and "≥ 2 items" in f.reasons["ci_low"]
    json.dumps(f.to_dict(), allow_nan=False)


def test_an_empty_store_has_no_fits_and_an_empty_summary(tmp_path):
    assert fit_all(load(str(tmp_path / "none")), "loss.nll_mean") == []
    assert level_summary(load(str(tmp_path / "none")), "loss.nll_mean").empty


# Coverage of the slope CIs ---------------------------------------------------------------------

SIM_LEVELS = (1, 4, 16, 64)
SIM_ITEMS = 32  # per dup level, and controls


def simulate(kind: str, rng: np.random.Generator) -> tuple[fit.StoreData, float]:
    """Probe rows of one experiment whose gap follows a known log-linear law, and its true slope.

    Data-generating process: every item (member or control) has a random effect ``u ~ N(0, 0.2)``
    (how hard it is) shared by all of its rows, in every run and at every checkpoint, plus
    independent row noise ``N(0, 0.4)``; every (run, step) has a random level ``N(8, 0.5)`` that
    members and controls share. Members add the true gap, controls add nothing. Per kind:

    * ``duplicates``: one run, one checkpoint, gap = -1.0 log10(dup);
    * ``dilution``: budgets of 1M and 4M tokens, gap = -1.0 log10(dup / (tokens / 1e6));
    * ``model_size``: 1e6, 1e7, 1e8 parameters, gap = -0.5 log10(dup) - 0.4 (log10(N) - 6), one
      fit per dup level;
    * ``forgetting``: every member last seen at step 100 and probed 10 to 5000 steps later, gap =
      -2 + 0.3 log10(steps since).

    A bootstrap that holds the control mean fixed ignores the baseline's error, which moves every
    slope whose x varies across runs or checkpoints, and one that treats an item's rows in
    different runs as independent misjudges the shared effect: both under-cover here.
    """
    runs, steps, slope = {
        "duplicates": ([{"train_tokens": 10**6, "num_params": 10**6}], [1000], -1.0),
        "dilution": (
            [{"train_tokens": t, "num_params": 10**6} for t in (10**6, 4 * 10**6)],
            [1000],
            -1.0,
        ),
        "model_size": (
            [{"train_tokens": 10**6, "num_params": n} for n in (10**6, 10**7, 10**8)],
            [1000],
            -0.4,
        ),
        "forgetting": (
            [{"train_tokens": 10**6, "num_params": 10**6}],
            [110, 150, 300, 1100, 5100],
            0.3,
        ),
    }[kind]
    levels = np.repeat((0, *SIM_LEVELS), SIM_ITEMS)
    ids = [f"s/{i:03d}" for i in range(len(levels))]
    effect = rng.normal(0, 0.2, len(levels))
    frames, meta = [], []
    for r, run in enumerate(runs):
        name = f"r{r}"
        meta.append({"experiment": "sim", "run": name, "model_size": "m", "perturbed": True, **run})
        for step in steps:
            lx = np.log10(np.maximum(levels, 1))
            gap = {
                "duplicates": slope * lx,
                "dilution": slope * (lx - np.log10(run["train_tokens"] / 1e6)),
                "model_size": -0.5 * lx + slope * (np.log10(run["num_params"]) - 6),
                "forgetting": np.full(len(levels), -2 + slope * np.log10(step - 100)),
            }[kind]
            value = (
                rng.normal(8, 0.5)
                + effect
                + np.where(levels > 0, gap, 0)
                + rng.normal(0, 0.4, len(levels))
            )
            frames.append(
                pd.DataFrame(
                    {
                        "experiment": "sim",
                        "run": name,
                        "step": step,
                        "tokens_seen": step,
                        "item_id": ids,
                        "set": "s",
                        "dup_level": levels,
                        "probe": "loss",
                        "metric": "nll_mean",
                        "value": value,
                    }
                )
            )
    items = pd.DataFrame(
        {
            "experiment": "sim",
            "run": "r0",
            "item_id": ids,
            "set": "s",
            "dup_level": levels,
            "phase_end": 0.5,
            "last_step": np.where(levels > 0, 100, -1),
        }
    )
    return fit.StoreData(pd.concat(frames, ignore_index=True), pd.DataFrame(meta), items), slope


@pytest.mark.parametrize("kind", ["duplicates", "dilution", "model_size", "forgetting"])
def test_slope_cis_cover_the_true_slope_at_their_nominal_rate(kind):
    rng = np.random.default_rng(20261203)
    covered = []
    for _ in range(REPLICATES[kind]):
        data, truth = simulate(kind, rng)
        table = fit.scores(data.probes, "loss.nll_mean")
        fits = FITTERS[kind](table, data.items if kind == "forgetting" else data.runs, "y", 200)
        assert fits
        covered += [f.ci_low <= truth <= f.ci_high for f in fits]
    assert 0.90 <= np.mean(covered) <= 0.99, (
        f"{kind}: 95% CIs covered the truth {np.mean(covered):.3f} of the time"
    )


REPLICATES = {"duplicates": 150, "dilution": 150, "model_size": 120, "forgetting": 150}
"""Replicates per kind (model size yields one fit per dup level, four per replicate)."""
FITTERS = {
    "duplicates": fit.fit_duplicates,
    "dilution": fit.fit_dilution,
    "model_size": fit.fit_model_size,
    "forgetting": fit.fit_forgetting,
}
