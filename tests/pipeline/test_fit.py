"""Fits recover known laws from store rows generated with them, and say nothing where the store
cannot support a fit."""

import numpy as np
import pyarrow as pa
import pytest

from taggant.pipeline.fit import fit_store, level_summary, loglinear
from taggant.pipeline.store import StoreWriter

LEVELS = [0, 1, 4, 16, 64]


def write_run(writer, run, *, slope, tokens, params, steps, last_step=None, noise=0.3, seed=0, forget=0.0):
    """Items at each dup level; loss = 8 + slope*log10(dup) (controls 8) + noise, and after the last
    exposure the gap shrinks by ``forget`` per decade of steps since."""
    rng = np.random.default_rng(seed)
    exposed_until = max(steps) if last_step is None else last_step  # None: inserted until the end
    items = [{"item_id": f"s/{lvl:02d}-{i:02d}", "set": "s", "kind": "canary", "dup_level": lvl,
              "phase_start": 0.0, "phase_end": 1.0 if last_step is None else 0.5,
              "first_step": -1 if lvl == 0 else 0, "last_step": -1 if lvl == 0 else exposed_until}
             for lvl in LEVELS for i in range(20)]
    writer.write_run(run, {"run": run, "model_size": "m", "train_tokens": tokens, "num_params": params,
                           "perturbed": True, "seed": seed})
    writer.write_items(run, pa.Table.from_pylist(items))
    base = {it["item_id"]: rng.normal(0, noise) for it in items}
    for step in steps:
        rows = []
        for it in items:
            gap = slope * np.log10(it["dup_level"]) if it["dup_level"] else 0.0
            if last_step is not None and it["dup_level"] and step > last_step:
                gap *= max(0.0, 1 - forget * np.log10(step - last_step))
            rows.append({"tokens_seen": step * 1000, "item_id": it["item_id"], "set": "s", "kind": "canary",
                         "dup_level": it["dup_level"], "probe": "loss", "probe_version": "loss.v1",
                         "metric": "nll_mean", "value": 8 + gap + base[it["item_id"]], "schema_version": 1})
        writer.begin_checkpoint(run, step)
        writer.write_probe_rows(run, step, "loss", 0, pa.Table.from_pylist(rows))
        writer.commit_checkpoint(run, step, step * 1000, ["loss"], len(rows))


def test_loglinear_recovers_a_known_slope_with_a_covering_ci():
    rng = np.random.default_rng(1)
    x = np.repeat([1, 4, 16, 64], 30)
    y = 2.0 - 1.5 * np.log10(x) + rng.normal(0, 0.2, len(x))
    a, b, low, high, r2 = loglinear(x, y, np.arange(len(x)))
    assert low < -1.5 < high and abs(b + 1.5) < 0.1 and abs(a - 2.0) < 0.1 and r2 > 0.9


def test_loglinear_ci_covers_zero_without_an_effect():
    rng = np.random.default_rng(2)
    x = np.repeat([1, 4, 16, 64], 30)
    _, _, low, high, _ = loglinear(x, rng.normal(0, 1, len(x)), np.arange(len(x)))
    assert low < 0 < high


def test_duplicates_fit_and_level_summary(tmp_path):
    url = str(tmp_path / "store")
    write_run(StoreWriter(url, "e"), "r", slope=-2.0, tokens=10**6, params=10**6, steps=[10, 20])
    [fit] = fit_store(url, "loss.nll_mean")
    assert fit.name == "duplicates" and fit.x == "dup_level" and fit.n == 80
    assert fit.ci_low < -2.0 < fit.ci_high
    summary = level_summary(url, "loss.nll_mean").set_index("dup_level")
    assert abs(summary.loc[0, "mean"]) < 1e-12  # controls are the baseline
    assert summary.loc[64, "ci_high"] < summary.loc[16, "ci_low"]


def test_forgetting_fit_only_for_sets_whose_window_closed(tmp_path):
    url = str(tmp_path / "store")
    write_run(StoreWriter(url, "e"), "r", slope=-3.0, tokens=10**6, params=10**6, steps=[10, 20, 60, 160, 510],
              last_step=10, forget=0.4)
    fits = {f.name: f for f in fit_store(url, "loss.nll_mean")}
    forgetting = fits["forgetting"]
    assert forgetting.x == "steps_since_last_exposure" and forgetting.slope > 0 and forgetting.ci_low > 0


@pytest.mark.parametrize("name, column", [("dilution", "train_tokens"), ("model_size", "num_params")])
def test_cross_run_fits_need_runs_that_differ(tmp_path, name, column):
    url = str(tmp_path / "store")
    writer = StoreWriter(url, "e")
    # Two runs: twice the tokens (or parameters) and weaker (or stronger) memorization.
    write_run(writer, "a", slope=-3.0, tokens=10**6, params=10**6, steps=[10], seed=1)
    other = {"tokens": 4 * 10**6, "params": 10**6} if column == "train_tokens" else {"tokens": 10**6, "params": 10**7}
    write_run(writer, "b", slope=-1.0 if column == "train_tokens" else -5.0, steps=[10], seed=2, **other)
    fits = [f for f in fit_store(url, "loss.nll_mean") if f.name == name]
    assert fits and all(f.n > 0 for f in fits)
    single = str(tmp_path / "single")
    write_run(StoreWriter(single, "e"), "a", slope=-3.0, tokens=10**6, params=10**6, steps=[10])
    assert not [f for f in fit_store(single, "loss.nll_mean") if f.name == name]


def test_cli_fit_json_lists_fits_with_the_documented_fields(tmp_path, capsys):
    import json

    from taggant.jobs.cli import main

    url = str(tmp_path / "store")
    write_run(StoreWriter(url, "e"), "r", slope=-2.0, tokens=10**6, params=10**6, steps=[10])
    assert main(["fit", "--store", url, "--json"]) == 0
    [fit] = json.loads(capsys.readouterr().out)
    assert {"name", "set", "x", "y", "model", "slope", "ci_low", "ci_high", "r2", "n", "method"} <= fit.keys()
    assert fit["ci_low"] < fit["slope"] < fit["ci_high"] < 0


def test_an_empty_store_has_no_fits_and_an_empty_summary(tmp_path):
    assert fit_store(str(tmp_path / "none"), "loss.nll_mean") == []
    assert level_summary(str(tmp_path / "none"), "loss.nll_mean").empty
