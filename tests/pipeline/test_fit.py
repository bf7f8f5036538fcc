"""Fits recover known laws from store rows generated with them, their CIs cover the truth at the
stated rate, and they say nothing (with a reason) where the store cannot support a fit."""

import json

import numpy as np
import pyarrow as pa
import pytest

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
                    "eval_format": "canonical",
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
            "eval_format": "canonical",
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
