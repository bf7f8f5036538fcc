"""Membership inference: AUROC and ROC against scipy's Mann–Whitney U, low-FPR TPRs that refuse to
be estimated from too few controls, the twin-reference score, and per-level results from a store."""

import json

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from taggant.pipeline import fit, mia, store
from taggant.pipeline.store import StoreWriter


def test_auroc_is_mann_whitney_u_and_the_area_under_the_roc():
    rng = np.random.default_rng(0)
    members, controls = (
        np.round(rng.normal(1, 1, 40), 1),
        np.round(rng.normal(0, 1, 30), 1),
    )  # with ties
    auc = mia.auroc_resamples(members, controls, np.ones((1, 40)), np.ones((1, 30)))[0]
    assert auc == pytest.approx(stats.mannwhitneyu(members, controls).statistic / (40 * 30))
    fpr, tpr = mia.roc(members, controls)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc)


def test_tpr_at_low_fpr_needs_enough_controls():
    rng = np.random.default_rng(1)
    members, controls = rng.normal(2, 1, 300), rng.normal(0, 1, 250)
    fpr, tpr = mia.roc(members, controls)
    value, reason = mia.tpr_at_fpr(fpr, tpr, len(controls), 0.01)
    # FPR ≤ 1% of 250 allows 2 false positives: flag every score above the 3rd-highest control
    assert reason is None and value == pytest.approx(np.mean(members > np.sort(controls)[-3]))
    value, reason = mia.tpr_at_fpr(fpr, tpr, len(controls), 0.001)
    assert value is None and "≥ 1000 controls" in reason and "has 250" in reason


def test_group_results_ci_and_nulls_with_reasons():
    rng = np.random.default_rng(2)
    row = mia.evaluate_group(rng.normal(5, 1, 30), rng.normal(0, 1, 30), rng)
    assert row["auroc"] == 1.0 and row["auroc_ci_low"] == row["auroc_ci_high"] == 1.0
    assert row["tpr_at_1pct_fpr"] is None and "≥ 100 controls" in row["tpr_at_1pct_fpr_reason"]
    assert row["audit_pairs"] == 30 and row["epsilon_lb"] > 1.0
    json.dumps(row, allow_nan=False)
    null = mia.evaluate_group(rng.normal(0, 1, 40), rng.normal(0, 1, 40), rng)
    assert null["auroc_ci_low"] < 0.5 < null["auroc_ci_high"]
    one = mia.evaluate_group(np.array([1.0]), rng.normal(0, 1, 5), rng)
    assert one["auroc_ci_low"] is None and "≥ 2 members" in one["auroc_ci_reason"]


def write_pair(url, strength, seed=0):
    """A perturbed run and its standard twin: 30 items per dup level (1, 64) and 30 controls; the
    perturbed run's loss drops by ``strength`` × log2(dup) on members, and every item's difficulty
    is shared by both runs."""
    rng = np.random.default_rng(seed)
    levels = np.repeat([0, 1, 64], 30)
    ids = [f"s/{i:03d}" for i in range(len(levels))]
    difficulty = rng.normal(6, 1, len(levels))
    writer = StoreWriter(url, "e")
    for perturbed in (True, False):
        run = f"m-100t-s0-{'perturbed' if perturbed else 'standard'}"
        writer.write_run(
            run,
            {
                "model_size": "m",
                "train_tokens": 100,
                "seed": 0,
                "perturbed": perturbed,
                "num_params": 10,
            },
        )
        drop = strength * np.log2(np.maximum(levels, 1)) if perturbed else np.zeros(len(levels))
        value = difficulty - drop + rng.normal(0, 0.05, len(levels))
        rows = pa.Table.from_pylist(
            [
                {
                    "tokens_seen": 100,
                    "item_id": i,
                    "set": "s",
                    "kind": "canary",
                    "dup_level": int(lvl),
                    "probe": "loss",
                    "probe_version": "loss.v1",
                    "probe_config": "c",
                    "metric": "nll_mean",
                    "value": float(v),
                    "schema_version": 1,
                }
                for i, lvl, v in zip(ids, levels, value)
            ]
        )
        writer.write_probe_rows(run, 10, "loss", 0, rows)
        writer.commit_checkpoint(run, 10, 100, ["loss.v1"], "c", rows.num_rows)
    return difficulty, levels


def test_twin_reference_subtracts_the_twins_loss(tmp_path):
    url = str(tmp_path / "store")
    write_pair(url, strength=0.1)
    scores = mia.attack_scores(fit.load(url))
    twin = scores[scores["attack"] == "twin_reference"]
    assert set(twin["run"]) == {"m-100t-s0-perturbed"}  # a twin has no twin
    probes = fit.load(url).probes
    loss = probes.pivot_table(index="item_id", columns="run", values="value")
    expected = loss["m-100t-s0-standard"] - loss["m-100t-s0-perturbed"]
    assert twin.set_index("item_id")["score"].sort_index().to_numpy() == pytest.approx(
        expected.sort_index()
    )


def test_store_rows_per_level_and_attack(tmp_path):
    """Shared item difficulty swamps a small effect for the loss attack; the twin reference cancels
    it. The standard twin's "members" were never inserted: its AUROC covers 0.5."""
    url = str(tmp_path / "store")
    write_pair(url, strength=0.05)
    table = mia.evaluate(fit.load(url), num_bootstrap=400)
    rows = {(r["run"].rsplit("-", 1)[1], r["dup_level"], r["attack"]): r for r in table.to_pylist()}
    assert set(rows) == {
        ("perturbed", 1, "loss"),
        ("perturbed", 64, "loss"),
        ("perturbed", 1, "twin_reference"),
        ("perturbed", 64, "twin_reference"),
        ("standard", 1, "loss"),
        ("standard", 64, "loss"),
    }
    assert rows["perturbed", 64, "twin_reference"]["auroc"] == 1.0
    assert rows["perturbed", 64, "loss"]["auroc_ci_low"] < 0.9
    standard = rows["standard", 64, "loss"]
    assert standard["auroc_ci_low"] < 0.5 < standard["auroc_ci_high"]
    StoreWriter(url, "e").write_mia(
        "m-100t-s0-perturbed", table.filter(pa.compute.equal(table["run"], "m-100t-s0-perturbed"))
    )
    back = store.read_mia(url, "e")
    assert back.num_rows == 4 and back.column("fpr").to_pylist()[0][0] == 0.0
