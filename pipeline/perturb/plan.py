"""The planner: items → members and controls → occurrences in the training sample stream.

Everything here follows from the spec and the chosen items alone (no corpus, no tokenizer):

* **Split.** Each set's items are permuted with ``rng.generator(seed, "split", set, "levels")``;
  the first ``num_controls`` are controls (dup level 0), the rest fill ``dup_levels`` in order with
  ``members_per_level()`` items each.
* **Placement.** A run of ``train_tokens`` consumes ``runs.num_samples(train_tokens)`` samples;
  a set's window is ``phase.sample_range(num_samples)``. Occurrences go to distinct samples (at most
  one per sample over all sets), each inside its set's window, at random. The sample axis is cut at
  every window boundary into elementary intervals; sets are taken tightest window first, and the
  number of a set's occurrences in each of its intervals is drawn as if its samples were chosen
  uniformly from its whole window (hypergeometric), then clamped to the range that keeps the rest
  of the problem feasible (Hall's condition over interval ranges, the check ``spec`` ran). So
  placement always succeeds when the spec validated, and is exactly uniform when windows are not
  crowded. Inside an interval the samples are a uniform draw without replacement, shuffled among
  sets and item copies. The generator is ``rng.generator(seed, "place", "", train_tokens)``.
* **Runs.** One placement per token budget: every perturbed run with that budget (all model sizes
  and seeds) gets the same sample indices. Sample indices count the samples the trainer consumes,
  so they mean the same position in every run; what base text sits there depends on the run's
  sample order, whose hash each run's manifest records (``sample_order_hash``). ``step`` is
  ``sample_index // global_batch_sequences``; ``token_offset`` is -1 until the data layer fixes it.
* **Variants.** After placement, the ``j``-th occurrence of an item in sample order inserts its
  variant ``j mod n`` (``manifest.variant_of_copy``). Variants never enter placement, so a run
  with variants and the same run without them have occurrences at identical sample indices.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from taggant.pipeline import io, manifest
from taggant.pipeline.perturb import rng
from taggant.pipeline.perturb.items import Draft
from taggant.pipeline.perturb.registry import version_of
from taggant.pipeline.spec import ExperimentSpec, PerturbationSpec, RunsSpec

VERSION = "plan.v2"
"""v2: items carry ``variants``, occurrences the ``variant`` they insert."""
SAMPLE_ORDER_VERSION = "sample-order.v1"
"""Version of the data layer's training sample order; part of ``sample_order_hash``."""


def sample_order_hash(runs: RunsSpec, train_tokens: int, seed: int) -> str:
    """Hex SHA-256 of what fixes the order of training samples of one run: sequence length, global
    batch, number of samples, the run's data seed and ``SAMPLE_ORDER_VERSION``. The data layer
    computes the same with this function; training refuses a manifest whose hash differs."""
    key = {
        "version": SAMPLE_ORDER_VERSION,
        "seq_length_tokens": runs.seq_length_tokens,
        "global_batch_sequences": runs.global_batch_sequences,
        "num_samples": runs.num_samples(train_tokens),
        "seed": seed,
    }
    return hashlib.sha256(
        json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def dup_levels(pset: PerturbationSpec, seed: int) -> np.ndarray:
    """int64 (count,): the dup level of each item of ``pset`` (0 = control)."""
    order = rng.generator(seed, "split", pset.name, "levels").permutation(pset.count)
    levels = np.zeros(pset.count, dtype=np.int64)
    levels[order[pset.num_controls :]] = np.repeat(pset.dup_levels, pset.members_per_level())
    return levels


def items_table(
    sets: Sequence[PerturbationSpec], drafts: Sequence[Sequence[Draft]], seed: int
) -> pa.Table:
    """The manifest's items: every set's drafts (members and controls) with their dup levels."""
    columns: dict[str, list] = {name: [] for name in manifest.ITEMS_SCHEMA.names}
    for pset, set_drafts in zip(sets, drafts):
        assert len(set_drafts) == pset.count, (
            f"{pset.name}: {len(set_drafts)} drafts for {pset.count} items"
        )
        levels = dup_levels(pset, seed)
        for i, draft in enumerate(set_drafts):
            columns["item_id"].append(item_id(pset.name, i))
            columns["set"].append(pset.name)
            columns["kind"].append(pset.kind)
            columns["version"].append(version_of(pset.kind))
            columns["text"].append(draft.text)
            columns["prefix_chars"].append(draft.prefix_chars)
            columns["token_ids"].append([])
            columns["dup_level"].append(int(levels[i]))
            columns["phase_start"].append(pset.phase.start_frac)
            columns["phase_end"].append(pset.phase.end_frac)
            columns["params"].append(
                json.dumps(draft.params, sort_keys=True, separators=(",", ":"))
            )
            columns["variants"].append(list(draft.variants))
            columns["variant_token_ids"].append([])
    return pa.table(columns, schema=manifest.ITEMS_SCHEMA)


def item_id(set_name: str, index: int) -> str:
    """``<set>/<index:06d>``."""
    return f"{set_name}/{index:06d}"


def place(
    windows: Sequence[tuple[int, int]], needs: Sequence[int], gen: np.random.Generator
) -> list[np.ndarray]:
    """Distinct sample indices for each set, inside its window, in random order.

    Args:
        windows: ``[lo, hi)`` sample range of each set.
        needs: occurrences of each set; must satisfy Hall's condition (``spec`` checks it).
        gen: the only source of randomness.

    Returns:
        int64 arrays, one per set, of length ``needs[s]``.
    """
    bounds = np.unique(np.array([b for w in windows for b in w] or [0], dtype=np.int64))
    caps = np.diff(bounds)
    first = np.searchsorted(bounds, [lo for lo, _ in windows])
    last = np.searchsorted(bounds, [hi for _, hi in windows])
    counts = np.zeros((len(windows), len(caps)), dtype=np.int64)
    free = caps.copy()
    pending = np.array(needs, dtype=np.int64)
    for s in sorted(range(len(windows)), key=lambda s: (windows[s][1] - windows[s][0], s)):
        left, pending[s] = int(needs[s]), 0
        width = int(caps[first[s] : last[s]].sum())
        for k in range(first[s], last[s]):
            drawn = int(gen.hypergeometric(caps[k], width - caps[k], left)) if left else 0
            low, high = _feasible_range(k, int(last[s]), left, free, pending, first, last)
            counts[s, k] = min(max(drawn, low), high)
            free[k] -= counts[s, k]
            left -= int(counts[s, k])
            width -= int(caps[k])
        assert left == 0, (
            "placement left occurrences over: the spec's feasibility check was skipped"
        )
    positions: list[list[np.ndarray]] = [[] for _ in windows]
    for k in range(len(caps)):
        total = int(counts[:, k].sum())
        picks = (
            bounds[k] + gen.choice(int(caps[k]), total, replace=False)
            if total
            else np.empty(0, np.int64)
        )
        for s, part in enumerate(np.split(picks, np.cumsum(counts[:, k])[:-1])):
            positions[s].append(part)
    return [gen.permutation(np.concatenate(p)) if p else np.empty(0, np.int64) for p in positions]


def _feasible_range(
    k: int,
    end: int,
    left: int,
    free: np.ndarray,
    pending: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
) -> tuple[int, int]:
    """The counts ``v`` the current set may put in elementary interval ``k`` (its remaining window
    is ``[k, end)`` and it has ``left`` occurrences to place) so that every set can still be
    placed: Hall's condition on every range ``[i, j)`` of intervals must survive.

    With slack(i, j) = free samples − demand of pending sets inside ``[i, j)``: ranges holding ``k``
    but not all of ``[k+1, end)`` lose ``v`` samples (``v`` ≤ slack); the ranges starting at ``k+1``
    that hold ``[k+1, end)`` gain the ``left − v`` still to place (``left − v`` ≤ slack)."""
    n = len(free)
    cap = np.concatenate([[0], np.cumsum(free)])
    inside = np.zeros((n + 1, n + 1), dtype=np.int64)
    np.add.at(inside, (first, last), pending)
    # demand[i, j] = Σ pending sets with first ≥ i and last ≤ j.
    demand = np.cumsum(np.cumsum(inside[::-1], axis=0)[::-1], axis=1)
    slack = cap[None, :] - cap[:, None] - demand
    high = min(left, int(free[k]))
    if end > k + 1:
        high = min(high, int(slack[: k + 1, k + 1 : end].min()))
    low = max(0, left - int(slack[k + 1, end:].min()))
    assert low <= high, "no feasible placement: the spec's feasibility check was skipped"
    return low, high


def occurrences_table(
    sets: Sequence[PerturbationSpec], runs: RunsSpec, train_tokens: int, seed: int
) -> pa.Table:
    """Occurrences of one token budget (``item_id, sample_index, step, token_offset``), unsorted."""
    num_samples = runs.num_samples(train_tokens)
    windows = [pset.phase.sample_range(num_samples) for pset in sets]
    positions = place(
        windows,
        [pset.num_occurrences for pset in sets],
        rng.generator(seed, "place", "", train_tokens),
    )
    ids, samples = [], []
    for pset, where in zip(sets, positions):
        names = np.array([item_id(pset.name, i) for i in range(pset.count)], dtype=object)
        ids.append(names[np.repeat(np.arange(pset.count), dup_levels(pset, seed))])
        samples.append(where)
    sample_index = np.concatenate(samples) if samples else np.empty(0, np.int64)
    return pa.table(
        {
            "item_id": pa.array(np.concatenate(ids) if ids else [], pa.string()),
            "sample_index": pa.array(sample_index, pa.int64()),
            "step": pa.array(sample_index // runs.global_batch_sequences, pa.int64()),
            "token_offset": pa.array(np.full(len(sample_index), -1, np.int32), pa.int32()),
        }
    )


def assign_variants(occurrences: pa.Table, items: pa.Table) -> pa.Table:
    """``occurrences`` with a ``variant`` column: the ``j``-th occurrence (in sample order) of an
    item with ``n`` variants inserts variant ``j mod n``; ``-1`` (its text) where ``n`` is 0."""
    counts = dict(
        zip(items["item_id"].to_pylist(), (len(v or []) for v in items["variants"].to_pylist()))
    )
    ids = occurrences["item_id"].to_pylist()
    copies: dict[str, int] = {}
    variant = np.empty(len(ids), np.int32)
    for row in np.argsort(occurrences["sample_index"].to_numpy(), kind="stable"):
        item = ids[row]
        copy = copies.get(item, 0)
        copies[item] = copy + 1
        variant[row] = manifest.variant_of_copy(copy, counts[item])
    return occurrences.append_column("variant", pa.array(variant, pa.int32()))


def write_manifests(folder: str, spec: ExperimentSpec, items: pa.Table) -> dict[str, int]:
    """Write ``<folder>/manifests/<run>/`` for every perturbed run; returns occurrences per run."""
    per_budget = {
        t: occurrences_table(spec.perturbations, spec.runs, t, spec.seed)
        for t in spec.runs.train_tokens
    }
    written = {}
    for run in spec.runs.grid():
        if not run.perturbed:
            continue
        occ = assign_variants(per_budget[run.train_tokens], items)
        occ = occ.append_column("run", pa.array([run.name] * len(occ), pa.string()))
        occ = occ.select(manifest.OCCURRENCES_SCHEMA.names)
        manifest.write(
            io.join(folder, "manifests", run.name),
            items,
            occ,
            sample_order_hash(spec.runs, run.train_tokens, run.seed),
        )
        written[run.name] = len(occ)
    return written
