"""The dedup stage on Ray, with no step that holds the corpus, its band table or its graph whole.

1. sketch (a task per corpus shard) → ``sketches/<shard>`` (exact hashes, MinHash signatures) and
   ``keys/<shard>``: the shard's bucket rows sorted by key, one Parquet row group per key
   partition and kind (`pipeline.dedup.sketch_shard`);
2. bucket (a task per key partition): reads its row groups of every key file, so its memory is
   1/P of the band table; gives exact edges and candidate pairs, each sent to the node partition
   (a run of consecutive shards) of its higher end;
3. screen (two tasks per node partition): each partition reads, once, the MinHash signatures
   of its documents named by candidates and sends each to the partitions holding the high ends
   of those candidates (itself included); each then settles the candidates whose high end it
   holds where their signatures do so within ``verify_error`` (`pipeline.dedup.screen_edges`);
4. verify (two tasks per node partition): the same exchange with the n-gram sets of the
   documents of undecided candidates, read from their texts, then their exact Jaccard;
5. connected components by star contraction: large-star and small-star steps alternate, a task
   per node partition each, edges passed between them as Ray objects, until no step changes the
   graph; every cluster is then a star around its lowest doc_index;
6. finish (a task per shard) → ``shard-*.parquet`` with the kept documents, same schema, and
   ``duplicates.parquet/shard-*.parquet`` with the removed ones (one Parquet dataset).

Steps 2–6 are the Ray-free functions of `pipeline.dedup_exchange`; each returns a dataclass that
names what it sends to each node partition (`pipeline.task_slots`), and the driver (`run`) wires
those named slots, as object references, into the next step. The driver holds shard offsets, object references and
counts, never an array over documents.
Every file name depends only on the shard's name, every task is a pure function of its inputs
and is retried, so a killed worker or node (Ray rebuilds lost objects from their lineage) and a
re-run write the same bytes, whatever the partition or worker count.
"""

from __future__ import annotations

import math
import posixpath
from functools import partial
from typing import Any

import numpy as np

from taggant.pipeline import dedup_exchange as exchange
from taggant.pipeline import io
from taggant.pipeline.dedup import DEDUP_VERSION, DedupParams, sketch_shard
from taggant.pipeline.dedup_exchange import Bucketed, Finished, Screened, Sent, Stars, Verified
from taggant.pipeline.stage import Counts, StageDecl
from taggant.pipeline.task_slots import Each, call, spread, unflat, width
from taggant.sketches import components

TASK_RETRIES = 3
PARTITION_DOCS = 1_000_000
"""Documents per key partition and (at least one shard) per node partition: ~0.5 GB of band
rows (24 bytes × 19 keys a document) per bucket task."""

STAGE = StageDecl(
    name="dedup",
    version=DEDUP_VERSION,
    inputs=("ingest",),
    config=lambda spec: DedupParams.from_spec(spec.dedup).to_dict(),
    execute=lambda context: run(
        DedupParams.from_spec(context.spec.dedup), context.folder, context.folders["ingest"]
    ),
    skip=lambda spec: not (spec.dedup.exact or spec.dedup.near),
)


def _sketch(
    shard_url: str,
    first_index: int,
    params: DedupParams,
    parts: int,
    sketch_url: str,
    keys_url: str,
) -> None:
    texts = io.read_table(shard_url, columns=["text"]).column("text").to_pylist()
    sketch, key_tables = sketch_shard(texts, first_index, params, parts)
    io.write_table(sketch_url, sketch)
    io.write_row_groups(keys_url, key_tables)


def run(
    params: DedupParams, folder: str, corpus_folder: str, partition_docs: int = PARTITION_DOCS
) -> dict[str, Any]:
    """Deduplicate the shards of ``corpus_folder`` into ``folder``; returns the stage stats.

    ``partition_docs`` sets the work per task (see `PARTITION_DOCS`), never the result.
    """
    import ray

    shard_urls = io.glob(io.join(corpus_folder, "shard-*.parquet"))
    names = [posixpath.basename(u) for u in shard_urls]
    rows = [io.parquet_rows(u) for u in shard_urls]
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
    num_docs = int(offsets[-1])
    parts = max(1, math.ceil(num_docs / partition_docs))
    bounds = exchange.node_bounds(offsets, partition_docs)
    nodes = len(bounds) - 1

    def remote(fn):
        return ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(fn)

    task = remote(call)

    def submit(step, returns: type, *args):
        """``step(*args)`` as a Ray task; its result a ``returns`` of object references."""
        shape, values = spread(args)
        refs = task.options(num_returns=width(returns, nodes)).remote(step, shape, *values)
        return unflat(returns, refs, nodes)

    sketch_urls = [io.join(folder, "sketches", n) for n in names]
    keys_urls = [io.join(folder, "keys", n) for n in names]
    ray.get(
        [
            remote(_sketch).remote(u, int(o), params, parts, s, k)
            for u, o, s, k in zip(shard_urls, offsets[:-1], sketch_urls, keys_urls, strict=True)
        ]
    )
    buckets: list[Bucketed] = [
        submit(exchange.bucket_partition, Bucketed, keys_urls, p, parts, bounds, params.verify)
        for p in range(parts)
    ]
    read_signatures = partial(exchange.local_signatures, sketch_urls, offsets, params)
    signatures: list[Sent] = [
        submit(exchange.send, Sent, read_signatures, nodes, p, Each(b.requests[p] for b in buckets))
        for p in range(nodes)
    ]
    screened: list[Screened] = [
        submit(
            exchange.screen,
            Screened,
            params,
            bounds,
            Each(b.edges[q] for b in buckets),
            Each(s.packages[q] for s in signatures),
        )
        for q in range(nodes)
    ]
    read_sets = partial(exchange.local_sets, shard_urls, offsets, params)
    sets: list[Sent] = [
        submit(exchange.send, Sent, read_sets, nodes, p, Each(s.requests[p] for s in screened))
        for p in range(nodes)
    ]
    verified: list[Verified] = [
        submit(
            exchange.verify,
            Verified,
            params,
            bounds,
            screened[q].screening,
            Each(s.packages[q] for s in sets),
        )
        for q in range(nodes)
    ]
    counts = ray.get([v.counts for v in verified])
    bucket_rows = sum(ray.get([b.rows for b in buckets]))
    signatures_sent = sum(ray.get([s.sent for s in signatures]))
    sets_sent = sum(ray.get([s.sent for s in sets]))

    edges = [v.edges for v in verified]  # edges[task][q]: what one task sent partition q
    for rounds in range(1, components.MAX_ROUNDS + 1):
        large: list[Stars] = [
            submit(exchange.large_star, Stars, bounds, q, Each(e[q] for e in edges))
            for q in range(nodes)
        ]
        small: list[Stars] = [
            submit(exchange.small_star, Stars, bounds, q, Each(s.edges[q] for s in large))
            for q in range(nodes)
        ]
        edges = [s.edges for s in small]
        if not any(ray.get([s.changed for s in large + small])):
            break
    else:
        raise RuntimeError(f"star contraction did not converge in {rounds} rounds")

    node_of = exchange.partition_of(offsets[:-1], bounds)
    finished = [
        submit(
            exchange.finish,
            Finished,
            shard_urls,
            sketch_urls,
            offsets,
            i,
            io.join(folder, n),
            io.join(folder, "duplicates.parquet", n),
            Each(e[node_of[i]] for e in edges),
        )
        for i, n in enumerate(names)
    ]

    n_exact = sum(ray.get([f.exact_dup for f in finished]))
    n_near = sum(ray.get([f.near_dup for f in finished]))
    stats = Counts(input=num_docs, kept=sum(ray.get([f.kept for f in finished])))
    stats.removed.update({"exact_dup": n_exact, "near_dup": n_near})
    return {
        "counts": stats.to_dict(),
        "params": params.to_dict(),
        **{k: sum(c[k] for c in counts) for k in counts[0]},
        "clusters_with_duplicates": sum(ray.get([f.clusters for f in finished])),
        "bucket_rows": bucket_rows,
        "signatures_sent": signatures_sent,
        "sets_sent": sets_sent,
        "key_partitions": parts,
        "node_partitions": nodes,
        "components_rounds": rounds,
    }
