"""Membership inference: AUROC and ROC against scipy's Mann–Whitney U, p-values against scipy's
exact and permutation tests, low-FPR TPRs that refuse to be estimated from too few controls, the
twin-reference score, per-level results from a store, Holm within a checkpoint, and the
pre-specified headline audit."""

import itertools
import json

import numpy as np
import pyarrow as pa
import pytest
from scipy import special, stats

from taggant.pipeline import fit, mia, roc_stats, store
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.multiplicity import holm
from taggant.pipeline.store import StoreWriter


def test_auroc_is_mann_whitney_u_and_the_area_under_the_roc():
    rng = np.random.default_rng(0)
    members, controls = (
        np.round(rng.normal(1, 1, 40), 1),
        np.round(rng.normal(0, 1, 30), 1),
    )  # with ties
    auc = roc_stats.auroc(members, controls)
    assert auc == pytest.approx(stats.mannwhitneyu(members, controls).statistic / (40 * 30))
    fpr, tpr = roc_stats.roc(members, controls)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc)


def test_the_p_value_is_the_exact_permutation_p_value():
    """No ties: scipy's exact Mann–Whitney. Ties: every split enumerated by brute force. Past
    the enumeration budget: the +1 Monte Carlo estimate of the same number."""
    rng = np.random.default_rng(5)
    members, controls = rng.normal(0.8, 1, 14), rng.normal(0, 1, 11)
    p, method = roc_stats.mann_whitney_p(members, controls, rng)
    exact = stats.mannwhitneyu(members, controls, alternative="greater", method="exact")
    assert method == "exact" and p == pytest.approx(exact.pvalue, rel=1e-9)
    members, controls = np.round(members[:9]), np.round(controls[:8])  # heavy ties
    p, method = roc_stats.mann_whitney_p(members, controls, rng)
    pooled = np.concatenate([members, controls])

    def u(chosen):  # U of a split by brute force: pairs won, ties one half
        mask = np.zeros(len(pooled), bool)
        mask[list(chosen)] = True
        diff = pooled[mask][:, None] - pooled[~mask][None, :]
        return (diff > 0).sum() + (diff == 0).sum() / 2

    splits = np.array([u(c) for c in itertools.combinations(range(len(pooled)), 9)])
    assert method == "exact" and p == pytest.approx(np.mean(splits >= u(range(9))), rel=1e-9)
    members, controls = rng.normal(0.3, 1, 14), rng.normal(0, 1, 11)
    p, method = roc_stats.mann_whitney_p(members, controls, rng, 4999, exact_budget=0)
    exact = stats.mannwhitneyu(members, controls, alternative="greater", method="exact")
    # Monte Carlo sd ≤ 0.5/√4999 = 0.007
    assert method.startswith("permutation (4999") and p == pytest.approx(exact.pvalue, abs=0.025)


def test_tpr_at_low_fpr_needs_ten_controls_per_fpr_and_stays_below_the_target():
    rng = np.random.default_rng(1)
    members, controls = rng.normal(2, 1, 300), rng.normal(0, 1, 1500)
    result = roc_stats.tpr_at_fpr(members, controls, 0.01, 0.95)
    # j = ⌊0.01·1501⌋ − 1 = 14: flag what is above the 15th-highest control, 14 controls above
    threshold = np.sort(controls)[-15]
    assert result["reason"] is None and result["false_positives"] == 14 < 0.01 * 1500
    assert result["value"] == pytest.approx(np.mean(members > threshold))
    assert result["ci_low"] < result["value"] < result["ci_high"]
    result = roc_stats.tpr_at_fpr(members, controls, 0.001, 0.95)
    assert result["value"] is None and result["ci_low"] is None
    assert "≥ 10000 controls" in result["reason"] and "has 1500" in result["reason"]


def test_group_results_ci_and_nulls_with_reasons():
    rng = np.random.default_rng(2)
    row = mia.evaluate_group(rng.normal(5, 1, 30), rng.normal(0, 1, 30), rng, copies=4)
    assert row["auroc"] == 1.0 and 0.85 < row["auroc_ci_low"] < row["auroc_ci_high"] < 1.0
    assert row["auroc_p"] == pytest.approx(1 / special.comb(60, 30)) and row["auroc_p_method"]
    assert row["tpr_at_1pct_fpr"] is None and "≥ 1000 controls" in row["tpr_at_1pct_fpr_reason"]
    assert row["audit_pairs"] == 30 and row["epsilon_lb"] > 1.0
    assert row["audit_neighbour"] == "replace-one" and row["audit_copies"] == 4
    assert row["epsilon_lb_per_copy"] == pytest.approx(row["epsilon_lb"] / 8)
    json.dumps(row, allow_nan=False)
    null = mia.evaluate_group(rng.normal(0, 1, 40), rng.normal(0, 1, 40), rng)
    assert null["auroc_ci_low"] < 0.5 < null["auroc_ci_high"] and null["auroc_p"] > 0.05
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
                    "eval_format": "canonical",
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
    it. The standard twin's "members" were never inserted: its AUROC covers 0.5. Holm adjusts
    within each (run, step); the headline is the one pre-specified attack per set and level."""
    url = str(tmp_path / "store")
    write_pair(url, strength=0.05)
    table = mia.evaluate(fit.load(url), delta=1e-5)
    rows = {(r["run"].rsplit("-", 1)[1], r["dup_level"], r["attack"]): r for r in table.to_pylist()}
    assert set(rows) == {
        ("perturbed", 1, "loss"),
        ("perturbed", 64, "loss"),
        ("perturbed", 1, "twin_reference"),
        ("perturbed", 64, "twin_reference"),
        ("standard", 1, "loss"),
        ("standard", 64, "loss"),
    }
    twin = rows["perturbed", 64, "twin_reference"]
    assert twin["auroc"] == 1.0 and twin["auroc_p"] == pytest.approx(1 / special.comb(60, 30))
    assert rows["perturbed", 64, "loss"]["auroc_ci_low"] < 0.9
    standard = rows["standard", 64, "loss"]
    assert standard["auroc_ci_low"] < 0.5 < standard["auroc_ci_high"]
    for run in ("perturbed", "standard"):
        family = [r for k, r in rows.items() if k[0] == run]
        raw = np.array([r["auroc_p"] for r in family])
        assert [r["auroc_p_holm"] for r in family] == pytest.approx(holm(raw))
    assert {r["audit_delta"] for r in rows.values()} == {1e-5}
    headline = mia.headline_audit(table, "twin_reference")
    assert [(h["dup_level"], h["attack"]) for h in headline] == [
        (1, "twin_reference"),
        (64, "twin_reference"),
    ]
    assert headline[1]["epsilon_lb"] == twin["epsilon_lb"] > 0
    assert headline[1]["epsilon_lb_per_copy"] == pytest.approx(twin["epsilon_lb"] / 128)
    assert headline[1]["audit_neighbour"] == "replace-one" and headline[1]["audit_copies"] == 64
    assert len(mia.headline_audit(table, "loss", 10)) == 4
    with pytest.raises(DataError, match="steps \\[10\\]"):
        mia.headline_audit(table, "loss", 11)
    with pytest.raises(ConfigError, match="audit_attack"):
        mia.headline_audit(table, "best")
    StoreWriter(url, "e").write_mia(
        "m-100t-s0-perturbed", table.filter(pa.compute.equal(table["run"], "m-100t-s0-perturbed"))
    )
    back = store.read_mia(url, "e")
    assert back.num_rows == 4 and back.column("fpr").to_pylist()[0][0] == 0.0
    assert back.column("version").to_pylist() == ["mia.v2"] * 4
