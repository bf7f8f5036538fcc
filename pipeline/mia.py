"""Membership inference per (experiment, run, step, set, dup level), with the one-run audit.

Members are a set's items at one dup level; non-members are the set's never-inserted controls,
drawn from the same generator and split from the members at random, so the attack measures what
training did and nothing else (no distribution shift between the two groups). Scores are
oriented so that higher = more likely a member:

* ``loss``: ``-loss.nll_mean``; ``zlib``: ``-zlib_ratio.ratio``; ``min_k``: ``min_k.k20``;
  ``min_k_plus_plus``: ``min_k_plus_plus.k20`` (MIMIR's default k = 20%);
* ``twin_reference``: the standard twin's loss minus the perturbed run's, per item at the same
  step (the twin is the run with the same model size, budget and seed, ``perturbed`` false): a
  reference model trained on the same data without the insertions. Perturbed runs only.

An attack is evaluated where the store has its probe. Per group: AUROC (Mann–Whitney, ties count
one half) with a 95% percentile CI from a bootstrap that resamples members and controls
separately; the empirical ROC (``score ≥ t`` means member, every distinct threshold, from (0, 0)
to (1, 1)); the TPR at 1% and 0.1% FPR, each the largest TPR with FPR ≤ f on that ROC, which
needs at least 1/f controls (otherwise null, with the reason); and the ``privacy_audit`` bound.
A standard twin's rows are the randomization check: its "members" were never inserted, so its
AUROC should cover 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from taggant.pipeline import privacy_audit
from taggant.pipeline.fit import RUN, StoreData, item_weights
from taggant.pipeline.perturb import rng as seeded
from taggant.pipeline.store import MIA_SCHEMA

MIA_VERSION = "mia.v1"
NUM_BOOTSTRAP = 1000
FPR_TARGETS = {"1pct": 0.01, "0p1pct": 0.001}
"""Low-FPR operating points (MIMIR's list); the suffix names the store column."""


@dataclass(frozen=True)
class Attack:
    """A score from one probe metric: ``sign * value`` (``twin``: minus the twin's)."""

    probe: str
    metric: str
    sign: float
    twin: bool = False


ATTACKS = {
    "loss": Attack("loss", "nll_mean", -1.0),
    "zlib": Attack("zlib_ratio", "ratio", -1.0),
    "min_k": Attack("min_k", "k20", 1.0),
    "min_k_plus_plus": Attack("min_k_plus_plus", "k20", 1.0),
    "twin_reference": Attack("loss", "nll_mean", -1.0, twin=True),
}


def roc(members: np.ndarray, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of the rule ``score ≥ t`` at every distinct score t, from high to low,
    with (0, 0) first and (1, 1) last."""
    thresholds = np.unique(np.concatenate([members, controls]))[::-1]
    tpr = (len(members) - np.searchsorted(np.sort(members), thresholds, "left")) / len(members)
    fpr = (len(controls) - np.searchsorted(np.sort(controls), thresholds, "left")) / len(controls)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def auroc_resamples(
    members: np.ndarray, controls: np.ndarray, weights_m: np.ndarray, weights_c: np.ndarray
) -> np.ndarray:
    """AUROC ``P[member > control] + P[tie]/2`` under each row of resampling counts (the
    all-ones row gives the AUROC itself); O(resamples × items)."""
    order = np.argsort(controls, kind="stable")
    sorted_c = controls[order]
    cum = np.concatenate(
        [np.zeros((len(weights_c), 1)), np.cumsum(weights_c[:, order], axis=1)], axis=1
    )
    below = cum[:, np.searchsorted(sorted_c, members, "left")]
    ties = cum[:, np.searchsorted(sorted_c, members, "right")] - below
    return (weights_m * (below + ties / 2)).sum(axis=1) / (len(members) * len(controls))


def tpr_at_fpr(
    fpr: np.ndarray, tpr: np.ndarray, controls: int, target: float
) -> tuple[float | None, str | None]:
    """The largest TPR with FPR ≤ ``target`` on the empirical ROC, or ``None`` and why: below
    ``1/target`` controls, FPR cannot resolve ``target``."""
    needed = math.ceil(1 / target - 1e-9)
    if controls < needed:
        return None, f"FPR {target:g} needs ≥ {needed} controls; the set has {controls}"
    return float(tpr[fpr <= target + 1e-12].max()), None


def attack_scores(data: StoreData) -> pd.DataFrame:
    """One row per (experiment, run, step, set, dup level, item, attack) with its ``score``,
    for every attack whose probe is in the store (rows of the set-level watermark summary and of
    sets without controls excluded)."""
    probes = data.probes[data.probes["item_id"] != data.probes["set"]]
    keys = RUN + ["step", "set", "dup_level", "item_id"]
    frames = []
    for name, attack in ATTACKS.items():
        rows = probes.loc[
            (probes["probe"] == attack.probe) & (probes["metric"] == attack.metric),
            keys + ["value"],
        ]
        if rows.empty:
            continue
        if attack.twin:
            rows = _minus_twin(rows, data.runs)
        frames.append(
            rows.assign(attack=name, score=attack.sign * rows["value"]).drop(columns="value")
        )
    if not frames:
        return pd.DataFrame(columns=keys + ["attack", "score"])
    scores = pd.concat(frames, ignore_index=True)
    controlled = scores[scores["dup_level"] == 0][RUN + ["set"]].drop_duplicates()
    return scores.merge(controlled, on=RUN + ["set"])


def _minus_twin(rows: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Perturbed rows with ``value`` replaced by the perturbed value minus the twin's."""
    pair = ["experiment", "model_size", "train_tokens", "seed"]
    twins = runs.loc[~runs["perturbed"], pair + ["run"]].rename(columns={"run": "twin"})
    perturbed = runs.loc[runs["perturbed"], pair + ["run"]].merge(twins, on=pair)[
        ["experiment", "run", "twin"]
    ]
    own = rows.merge(perturbed, on=RUN)
    twin = rows.rename(columns={"run": "twin", "value": "twin_value"})
    both = own.merge(twin, on=["experiment", "twin", "step", "set", "dup_level", "item_id"])
    return both.assign(value=both["value"] - both["twin_value"]).drop(
        columns=["twin", "twin_value"]
    )


def evaluate(
    data: StoreData,
    final_only: bool = False,
    num_bootstrap: int = NUM_BOOTSTRAP,
    confidence: float = privacy_audit.CONFIDENCE,
) -> pa.Table:
    """Every (experiment, run, step, set, dup level > 0, attack) group of the store (only each
    run's last checkpoint with ``final_only``) as a ``store.MIA_SCHEMA`` table plus
    ``experiment`` and ``run``, sorted by its keys."""
    scores = attack_scores(data)
    if final_only:
        scores = scores[scores["step"] == scores.groupby(RUN)["step"].transform("max")]
    rows = []
    for (experiment, run, step, set_name, attack), g in scores.groupby(
        RUN + ["step", "set", "attack"]
    ):
        controls = g.loc[g["dup_level"] == 0, "score"].to_numpy(dtype=np.float64)
        for level, m in g[g["dup_level"] > 0].groupby("dup_level"):
            key = f"{experiment}/{run}/{step}/{level}/{attack}"
            rng = np.random.default_rng(seeded.derive_seed(0, "mia.bootstrap", set_name, key))
            row = evaluate_group(
                m["score"].to_numpy(dtype=np.float64), controls, rng, num_bootstrap, confidence
            )
            rows.append(
                {
                    "experiment": experiment,
                    "run": run,
                    "step": int(step),
                    "set": set_name,
                    "dup_level": int(level),
                    "attack": attack,
                    **row,
                }
            )
    schema = pa.schema([("experiment", pa.string()), ("run", pa.string()), *MIA_SCHEMA])
    return pa.Table.from_pylist(rows, schema=schema)


def evaluate_group(
    members: np.ndarray,
    controls: np.ndarray,
    rng: np.random.Generator,
    num_bootstrap: int = NUM_BOOTSTRAP,
    confidence: float = privacy_audit.CONFIDENCE,
) -> dict:
    """The ``MIA_SCHEMA`` fields but the keys for one group's member and control scores."""
    fpr, tpr = roc(members, controls)
    ones_m, ones_c = np.ones((1, len(members))), np.ones((1, len(controls)))
    row = {
        "members": len(members),
        "controls": len(controls),
        "auroc": float(auroc_resamples(members, controls, ones_m, ones_c)[0]),
        "auroc_ci_low": None,
        "auroc_ci_high": None,
        "auroc_ci_reason": None,
        "fpr": fpr.tolist(),
        "tpr": tpr.tolist(),
        "version": MIA_VERSION,
    }
    if min(len(members), len(controls)) < 2:
        row["auroc_ci_reason"] = "the bootstrap needs ≥ 2 members and ≥ 2 controls"
    else:
        boot = auroc_resamples(
            members,
            controls,
            item_weights(np.zeros(len(members)), num_bootstrap, rng),
            item_weights(np.zeros(len(controls)), num_bootstrap, rng),
        )
        low, high = np.percentile(boot, [2.5, 97.5])
        row.update(auroc_ci_low=float(low), auroc_ci_high=float(high))
    for suffix, target in FPR_TARGETS.items():
        row[f"tpr_at_{suffix}_fpr"], row[f"tpr_at_{suffix}_fpr_reason"] = tpr_at_fpr(
            fpr, tpr, len(controls), target
        )
    result = privacy_audit.audit(members, controls, rng, confidence)
    row.update(
        epsilon_lb=result.epsilon,
        audit_pairs=result.pairs,
        audit_guesses=result.guesses,
        audit_correct=result.correct,
        audit_confidence=confidence,
    )
    return row


def final_summary(table: pa.Table) -> list[dict]:
    """The rows of each run's last checkpoint without the ROC arrays: the table to read first
    (JSON-safe: every missing value is ``None`` beside its reason)."""
    rows = table.drop_columns(["fpr", "tpr"]).to_pandas()
    rows = rows[rows["step"] == rows.groupby(RUN)["step"].transform("max")]
    return pa.Table.from_pandas(rows, preserve_index=False).to_pylist()
