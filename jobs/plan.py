"""The plan stage on Ray: items from seeds, decontamination of the corpus, the manifests.

1. scan (one task per corpus shard, only when a watermark set exists): word counts and each
   watermark set's lowest-priority eligible documents; merged in the driver;
2. items (driver): every set's candidate stream; each round of new candidates is checked against
   every shard (one task per shard) until each set has its distinct, clean items;
3. filter (one task per shard) → ``shard-*.parquet``, the base corpus for tokenization (same
   schema as the input, documents removed by decontamination and watermark sources left out);
4. driver: ``removed.parquet`` (``doc_id, reason``), ``references.parquet`` (canary reference
   secrets), and ``manifests/<run>/`` for every perturbed run (``pipeline.manifest`` layout).

Shard tasks are pure functions of their inputs with fixed output names, so retries and re-runs
write the same bytes; the manifests depend on the spec and the corpus, never on the sharding.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from taggant.pipeline import io
from taggant.pipeline.perturb import canary, decontaminate, plan, registry, variants, watermark
from taggant.pipeline.perturb.decontaminate import Signatures
from taggant.pipeline.perturb.watermark import WatermarkSpec
from taggant.pipeline.spec import ExperimentSpec
from taggant.pipeline.stage import Counts, StageDecl

TASK_RETRIES = 3
REMOVED_SCHEMA = pa.schema([("doc_id", pa.string()), ("reason", pa.string())])
REFERENCES_SCHEMA = pa.schema(
    [("set", pa.string()), ("reference_index", pa.int32()), ("secret", pa.string())]
)


def stage_versions(spec: ExperimentSpec) -> dict[str, str]:
    """Algorithm versions the plan stage's output depends on (part of its stage hash)."""
    versions = {
        "plan": plan.VERSION,
        "decontaminate": decontaminate.VERSION,
        "sample_order": plan.SAMPLE_ORDER_VERSION,
    }
    versions.update(
        {kind: registry.version_of(kind) for kind in sorted({p.kind for p in spec.perturbations})}
    )
    if any(p.variants is not None for p in spec.perturbations):
        versions["variants"] = variants.VERSION
    return versions


def stage_config(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec fields the plan stage reads (its stage hash covers these, its versions and the
    corpus stage's hash)."""
    runs = spec.runs
    return {
        "seed": spec.seed,
        "perturbations": [p.model_dump(mode="json") for p in spec.perturbations],
        "runs": {
            "model_sizes": runs.model_sizes,
            "train_tokens": runs.train_tokens,
            "seeds": runs.seeds,
            "seq_length_tokens": runs.seq_length_tokens,
            "global_batch_sequences": runs.global_batch_sequences,
        },
        "versions": stage_versions(spec),
    }


STAGE = StageDecl(
    name="plan",
    version=plan.VERSION,
    inputs=("dedup",),  # the deduplicated corpus, or the ingested one when dedup is off
    config=stage_config,
    execute=lambda context: run(context.spec, context.folder, context.folders["dedup"]),
)


def _scan(shard: int, url: str, sets: list[WatermarkSpec], seed: int) -> tuple[Counter, list]:
    docs = io.read_table(url, columns=["doc_id", "text"])
    return watermark.scan_shard(
        shard, docs.column("doc_id").to_pylist(), docs.column("text").to_pylist(), sets, seed
    )


def _match(url: str, signatures: Signatures) -> np.ndarray:
    return decontaminate.find_matches(
        signatures, io.read_table(url, columns=["text"]).column("text").to_pylist()
    )


def _filter(url: str, rows: list[int], reasons: list[str], out_url: str) -> list[tuple[str, str]]:
    docs = io.read_table(url)
    keep = np.ones(len(docs), dtype=bool)
    keep[rows] = False
    io.write_table(out_url, docs.filter(pa.array(keep)))
    return list(zip(docs.column("doc_id").take(pa.array(rows, pa.int64())).to_pylist(), reasons))


def run(spec: ExperimentSpec, folder: str, corpus_folder: str) -> dict[str, Any]:
    """Plan ``spec``'s perturbations against the shards of ``corpus_folder`` into ``folder``;
    returns the stage stats (``counts`` balances input = kept + removed by reason)."""
    import ray

    def remote(fn):
        return ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(fn)

    shard_urls = io.glob(io.join(corpus_folder, "shard-*.parquet"))
    sets = spec.perturbations

    corpus = registry.CorpusInputs()
    marked = [p for p in sets if isinstance(p, WatermarkSpec)]
    if marked:
        scans = ray.get(
            [remote(_scan).remote(i, u, marked, spec.seed) for i, u in enumerate(shard_urls)]
        )
        merged = watermark.merge_candidates([docs for _, docs in scans], marked)
        counts = sum((c for c, _ in scans), Counter())
        corpus = registry.CorpusInputs(
            {p.name: d for p, d in zip(marked, merged)}, watermark.Unigrams(counts)
        )

    match = remote(_match)

    def match_shards(signatures: Signatures) -> list[np.ndarray]:
        ref = ray.put(signatures)
        return ray.get([match.remote(u, ref) for u in shard_urls])

    sources = [registry.make_source(p, spec.seed, corpus) for p in sets]
    selection = decontaminate.select_items(sets, sources, match_shards)

    removals = selection.removals()
    filtered = ray.get(
        [
            remote(_filter).remote(
                u,
                [r.row for r in removals if r.shard == i],
                [reason for r, reason in removals.items() if r.shard == i],
                io.join(folder, posixpath.basename(u)),
            )
            for i, u in enumerate(shard_urls)
        ]
    )
    removed = [pair for shard in filtered for pair in shard]
    io.write_table(
        io.join(folder, "removed.parquet"),
        pa.table(
            {"doc_id": [d for d, _ in removed], "reason": [r for _, r in removed]},
            schema=REMOVED_SCHEMA,
        ),
    )

    drafts = [[c.draft for c in items] for items in selection.items]
    _write_references(folder, spec, drafts)
    items = plan.items_table(sets, drafts, spec.seed)
    occurrences = plan.write_manifests(folder, spec, items)

    num_docs = sum(io.parquet_rows(u) for u in shard_urls)
    counts = Counts(input=num_docs, kept=num_docs - len(removed))
    counts.removed.update(Counter(r for _, r in removed))
    return {
        "counts": counts.to_dict(),
        "sets": selection.stats(),
        "rounds": selection.pool.rounds,
        "items": len(items),
        "occurrences": occurrences,
        "versions": stage_versions(spec),
    }


def _write_references(folder: str, spec: ExperimentSpec, drafts: list[list]) -> None:
    rows: dict[str, list] = {"set": [], "reference_index": [], "secret": []}
    for pset, set_drafts in zip(spec.perturbations, drafts):
        if pset.kind != "canary":
            continue
        secrets = canary.reference_secrets(
            pset, spec.seed, {d.params["secret"] for d in set_drafts}
        )
        rows["set"] += [pset.name] * len(secrets)
        rows["reference_index"] += list(range(len(secrets)))
        rows["secret"] += secrets
    io.write_table(io.join(folder, "references.parquet"), pa.table(rows, schema=REFERENCES_SCHEMA))
