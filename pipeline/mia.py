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

An attack is evaluated where the store has its probe. Per group (``pipeline.roc_stats``): AUROC
(Mann–Whitney, ties count one half) with a logit-scale CI that never has zero width; the one-sided
randomization p-value of "members score higher" (``auroc_p``, exact under the random split) and
its Holm adjustment over the family of one (experiment, run, step) (``auroc_p_holm``); the
empirical ROC (``score ≥ t`` means member, every distinct threshold, from (0, 0) to (1, 1)); the
TPR at 1% and 0.1% FPR with a threshold calibrated on the controls and a CI, which needs at least
10/FPR controls (otherwise null, with the reason); and the ``privacy_audit`` bound with its
neighbour relation, copies, δ and per-copy value. A standard twin's rows are the randomization
check: its "members" were never inserted, so its AUROC should cover 0.5 and its ``auroc_p`` be
uniform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from taggant.pipeline import privacy_audit, roc_stats
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.fit import RUN, StoreData, one_format
from taggant.pipeline.multiplicity import holm
from taggant.pipeline.perturb import rng as seeded
from taggant.pipeline.store import MIA_SCHEMA

MIA_VERSION = "mia.v2"
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


def attack_scores(data: StoreData) -> pd.DataFrame:
    """One row per (experiment, run, step, set, dup level, item, attack) with its ``score``,
    for every attack whose probe is in the store (rows of the set-level watermark summary and of
    sets without controls excluded)."""
    probes = data.probes[data.probes["item_id"] != data.probes["set"]]
    keys = RUN + ["step", "set", "dup_level", "item_id"]
    frames = []
    for name, attack in ATTACKS.items():
        selected = probes[(probes["probe"] == attack.probe) & (probes["metric"] == attack.metric)]
        one_format(selected, f"attack {name}")
        rows = selected[keys + ["value"]]
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


HOLM_FAMILY = RUN + ["step"]
"""``auroc_p_holm`` adjusts over all rows of one (experiment, run, step): every set × dup level ×
attack tested on that checkpoint."""


def evaluate(
    data: StoreData,
    final_only: bool = False,
    confidence: float = privacy_audit.CONFIDENCE,
    *,
    delta: float = 0.0,
    num_permutations: int = roc_stats.NUM_PERMUTATIONS,
) -> pa.Table:
    """Every (experiment, run, step, set, dup level > 0, attack) group of the store (only each
    run's last checkpoint with ``final_only``) as a ``store.MIA_SCHEMA`` table plus
    ``experiment`` and ``run``, sorted by its keys; audits at ``delta``. ``auroc_p_holm`` is
    Holm-adjusted over ``HOLM_FAMILY``, so it depends on which groups the store holds."""
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
            rng = np.random.default_rng(seeded.derive_seed(0, "mia.group", set_name, key))
            row = evaluate_group(
                m["score"].to_numpy(dtype=np.float64),
                controls,
                rng,
                confidence,
                delta=delta,
                copies=int(level),
                num_permutations=num_permutations,
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
    frame = pd.DataFrame(rows, columns=["experiment", "run", *MIA_SCHEMA.names])
    for _, family in frame.groupby(HOLM_FAMILY):
        frame.loc[family.index, "auroc_p_holm"] = holm(family["auroc_p"].to_numpy())
    schema = pa.schema([("experiment", pa.string()), ("run", pa.string()), *MIA_SCHEMA])
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def evaluate_group(
    members: np.ndarray,
    controls: np.ndarray,
    rng: np.random.Generator,
    confidence: float = privacy_audit.CONFIDENCE,
    *,
    delta: float = 0.0,
    copies: int = 1,
    num_permutations: int = roc_stats.NUM_PERMUTATIONS,
) -> dict:
    """The ``MIA_SCHEMA`` fields but the keys and ``auroc_p_holm`` (a family-level value, see
    ``evaluate``) for one group's member and control scores, members inserted ``copies`` times;
    ``rng`` draws the permutations (when not exact) and the audit's pairs."""
    fpr, tpr = roc_stats.roc(members, controls)
    p, p_method = roc_stats.mann_whitney_p(members, controls, rng, num_permutations)
    low, high = roc_stats.auroc_ci(members, controls, confidence)
    row = {
        "members": len(members),
        "controls": len(controls),
        "auroc": roc_stats.auroc(members, controls),
        "auroc_ci_low": low,
        "auroc_ci_high": None if low is None else high,
        "auroc_ci_reason": high if low is None else None,
        "auroc_ci_method": roc_stats.AUROC_CI_METHOD,
        "auroc_p": p,
        "auroc_p_method": p_method,
        "fpr": fpr.tolist(),
        "tpr": tpr.tolist(),
        "version": MIA_VERSION,
    }
    for suffix, target in FPR_TARGETS.items():
        result = roc_stats.tpr_at_fpr(members, controls, target, confidence)
        row[f"tpr_at_{suffix}_fpr"] = result["value"]
        for field in ("ci_low", "ci_high", "false_positives", "reason"):
            row[f"tpr_at_{suffix}_fpr_{field}"] = result[field]
    result = privacy_audit.audit(members, controls, rng, confidence, delta=delta)
    row.update(
        epsilon_lb=result.epsilon,
        epsilon_lb_per_copy=result.per_copy(copies),
        audit_neighbour=privacy_audit.NEIGHBOUR,
        audit_copies=copies,
        audit_delta=delta,
        audit_pairs=result.pairs,
        audit_guesses=result.guesses,
        audit_correct=result.correct,
        audit_confidence=confidence,
    )
    return row


HEADLINE_FIELDS = [
    "experiment",
    "run",
    "set",
    "dup_level",
    "step",
    "attack",
    "epsilon_lb",
    "epsilon_lb_per_copy",
    "audit_neighbour",
    "audit_copies",
    "audit_delta",
    "audit_confidence",
    "audit_pairs",
    "audit_guesses",
    "audit_correct",
]


def headline_audit(table: pa.Table, attack: str, step: str | int = "last") -> list[dict]:
    """The pre-specified audit: per (experiment, run, set, dup level) the ``HEADLINE_FIELDS`` of
    the row of ``attack`` at ``step`` (``"last"``: each run's last checkpoint in ``table``), for
    ``evaluate`` output. Fixing the attack and checkpoint before looking is what makes each
    ``epsilon_lb`` a ``audit_confidence`` bound: the maximum over attacks and steps is not.

    Rows are still many bounds, one per run × set × level, each valid on its own. Runs of one
    experiment share their split (the same coins decide members and controls in every run), so
    their bounds are not independent evidence and must not be pooled or counted as
    replications. Runs without the attack (a standard twin has no ``twin_reference``) have no row.

    Raises:
        ConfigError: ``attack`` not in ``ATTACKS`` or ``step`` neither ``"last"`` nor a
            non-negative int.
        DataError: an int ``step`` that no run of the table has.
    """
    if attack not in ATTACKS:
        raise ConfigError([("fit.audit_attack", f"{attack!r} is not one of {sorted(ATTACKS)}")])
    if step != "last" and not (isinstance(step, int) and step >= 0):
        raise ConfigError([("fit.audit_step", f"{step!r}: use 'last' or a checkpoint step ≥ 0")])
    rows = table.select(HEADLINE_FIELDS).to_pandas()
    rows = rows[rows["attack"] == attack]
    if step == "last":
        rows = rows[rows["step"] == rows.groupby(RUN)["step"].transform("max")]
    elif (rows["step"] == step).any():
        rows = rows[rows["step"] == step]
    else:
        steps = sorted(set(table.column("step").to_pylist()))
        raise DataError(
            f"no membership rows of attack {attack} at step {step}; the table has steps {steps}: "
            "set fit.audit_step to one of them or 'last'"
        )
    rows = rows.sort_values(["experiment", "run", "set", "dup_level"])
    return pa.Table.from_pandas(rows, preserve_index=False).to_pylist()


def final_summary(table: pa.Table) -> list[dict]:
    """The rows of each run's last checkpoint without the ROC arrays: the table to read first
    (JSON-safe: every missing value is ``None`` beside its reason)."""
    rows = table.drop_columns(["fpr", "tpr"]).to_pandas()
    rows = rows[rows["step"] == rows.groupby(RUN)["step"].transform("max")]
    return pa.Table.from_pandas(rows, preserve_index=False).to_pylist()
