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

The driver holds shard offsets, object references and counts, never an array over documents.
Every file name depends only on the shard's name, every task is a pure function of its inputs
and is retried, so a killed worker or node (Ray rebuilds lost objects from their lineage) and a
re-run write the same bytes, whatever the partition or worker count.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from taggant.pipeline import io
from taggant.pipeline.dedup import (
    DEDUP_VERSION,
    DedupParams,
    bucket,
    ngram_sets,
    screen_edges,
    sketch_shard,
    verify_edges,
)
from taggant.pipeline.stage import Counts, StageDecl
from taggant.sketches import components
from taggant.sketches.ngrams import NgramSets

TASK_RETRIES = 3
PARTITION_DOCS = 1_000_000
"""Documents per key partition and (at least one shard) per node partition: ~0.5 GB of band
rows (24 bytes × 19 keys a document) per bucket task."""
DUPLICATES_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("cluster_id", pa.int64()),
        ("kept_doc_id", pa.string()),
        ("reason", pa.string()),
    ]
)

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


def _edges(arrays, width: int = 2) -> np.ndarray:
    """The distinct rows of int64 (m, width) arrays."""
    return np.unique(np.concatenate([np.empty((0, width), np.int64), *arrays]), axis=0)


def _partition_of(doc_index: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The node partition q of each doc_index: bounds[q] <= doc_index < bounds[q + 1]."""
    return np.searchsorted(bounds[1:-1], doc_index, side="right")


def _by_high_end(edges: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """Edges split by the node partition of their high end."""
    part = _partition_of(edges[:, 1], bounds)
    return [edges[part == q] for q in range(len(bounds) - 1)]


def _by_either_end(edges: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """Edges split by the node partitions of their ends (one copy where both ends share one)."""
    low, high = _partition_of(edges[:, 0], bounds), _partition_of(edges[:, 1], bounds)
    return [edges[(low == q) | (high == q)] for q in range(len(bounds) - 1)]


def _take(urls: list[str], offsets: np.ndarray, wanted: np.ndarray, columns: list[str]) -> pa.Table:
    """``columns`` of the documents ``wanted`` (sorted distinct doc_index values, at least one),
    in that order, reading only the files (one per shard, ``urls``) that hold them."""
    shard_of = np.searchsorted(offsets, wanted, side="right") - 1
    tables = [
        io.read_table(urls[shard], columns=columns).take(
            pa.array(wanted[shard_of == shard] - offsets[shard])
        )
        for shard in np.unique(shard_of)
    ]
    return pa.concat_tables(tables)


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


def _bucket(keys_urls: list[str], part: int, parts: int, bounds: np.ndarray, verify: bool) -> tuple:
    """Key partition ``part`` → per node partition q, the edges whose high end lies in q as int64
    (m, 3) rows (low, high, exact); then the `_requests` of the candidates (none without
    ``verify``); last, the number of bucket rows read."""
    rows = [
        pa.concat_tables([io.read_row_group(u, kind * parts + part) for u in keys_urls])
        for kind in (0, 1)  # exact rows, band rows
    ]
    exact, candidates = bucket(*rows)
    tagged = np.concatenate(
        [
            np.c_[exact, np.ones(len(exact), np.int64)],
            np.c_[candidates, np.zeros(len(candidates), np.int64)],
        ]
    )
    nodes = len(bounds) - 1
    high = _partition_of(tagged[:, 1], bounds)
    return (
        *(tagged[high == q] for q in range(nodes)),
        *_requests(candidates if verify else candidates[:0], bounds),
        sum(r.num_rows for r in rows),
    )


def _requests(edges: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """Per node partition p, the (doc_index, partition q) rows asking p for the payload of a
    document it holds: both ends of every edge are asked for by the partition q of its high
    end, which settles the edge."""
    docs = edges.reshape(-1)
    requests = np.c_[docs, np.repeat(_partition_of(edges[:, 1], bounds), 2)]
    holder = _partition_of(docs, bounds)
    return [requests[holder == p] for p in range(len(bounds) - 1)]


def _local_signatures(
    sketch_urls: list[str], offsets: np.ndarray, params: DedupParams, docs: np.ndarray
) -> np.ndarray:
    """The signatures of ``docs`` (sorted distinct doc_index values): uint32 (k, num_perm)."""
    if not len(docs):
        return np.empty((0, params.num_perm), np.uint32)
    column = _take(sketch_urls, offsets, docs, ["signature"]).column("signature")
    return column.combine_chunks().flatten().to_numpy().reshape(len(docs), params.num_perm)


def _local_sets(
    shard_urls: list[str], offsets: np.ndarray, params: DedupParams, docs: np.ndarray
) -> NgramSets:
    """The n-gram sets of ``docs`` (sorted distinct doc_index values), read from their shards."""
    if not len(docs):
        return NgramSets(np.empty(0, np.uint64), np.zeros(1, np.int64))
    texts = _take(shard_urls, offsets, docs, ["text"]).column("text").to_pylist()
    return ngram_sets(texts, params)


def _send(read: Callable[[np.ndarray], Any], nodes: int, p: int, *requests: np.ndarray) -> tuple:
    """Node partition p's requested documents → per node partition q, (doc_index values asked
    for by q, their ``read`` payload: signatures or n-gram sets); last, how many it sends to
    other partitions. Each document is read once where it lives, and its payload travels once
    to each partition that needs it."""
    requests = _edges(requests)
    docs = np.unique(requests[:, 0])
    payload = read(docs)
    packages = []
    for q in range(nodes):
        wanted = requests[requests[:, 1] == q, 0]  # sorted distinct: requests are
        packages.append((wanted, payload[np.searchsorted(docs, wanted)]))
    return (*packages, int(np.sum(requests[:, 1] != p)))


def _received(packages: tuple, concat: Callable[[list], Any]) -> tuple[np.ndarray, Any]:
    """The doc_index values and payloads of the packages a partition was sent, concatenated."""
    return np.concatenate([ids for ids, _ in packages]), concat([x for _, x in packages])


def _screen(params: DedupParams, bounds: np.ndarray, buckets: int, *inputs) -> tuple:
    """One node partition's candidates settled by signatures → the `_requests` of its undecided
    candidates; then (exact edges, accepted edges, undecided candidates, counts). ``inputs``:
    the ``buckets`` edge arrays, then the signature packages."""
    tagged = _edges(inputs[:buckets], width=3)
    exact, near = tagged[tagged[:, 2] == 1, :2], tagged[tagged[:, 2] == 0, :2]
    undecided = near[:0]
    if params.verify and len(near):
        near, undecided = screen_edges(near, *_received(inputs[buckets:], np.concatenate), params)
    counts = {
        "candidate_edges": len(tagged),
        "exact_edges": len(exact),
        "signature_accepted": len(near),
        "jaccard_checked": len(undecided),
    }
    return (*_requests(undecided, bounds), (exact, near, undecided, counts))


def _verify(params: DedupParams, bounds: np.ndarray, screened: tuple, *packages) -> tuple:
    """One node partition's exact edges and verified candidates, split for the first large-star
    step; last, its counts. ``packages``: the n-gram set packages of its undecided candidates'
    documents."""
    exact, accepted, undecided, counts = screened
    verified = undecided
    if len(undecided):
        verified = verify_edges(undecided, *_received(packages, NgramSets.concat), params)
    near = np.concatenate([accepted, verified])
    counts = {**counts, "verified_near_edges": len(near)}
    return (*_by_either_end(np.concatenate([exact, near]), bounds), counts)


def _large_star(bounds: np.ndarray, q: int, *edges: np.ndarray) -> tuple:
    stars, changed = components.large_star(_edges(edges), bounds[q], bounds[q + 1])
    return (*_by_high_end(stars, bounds), changed)


def _small_star(bounds: np.ndarray, q: int, *edges: np.ndarray) -> tuple:
    stars, changed = components.small_star(_edges(edges), bounds[q], bounds[q + 1])
    return (*_by_either_end(stars, bounds), changed)


def _finish(
    shard_urls: list[str],
    sketch_urls: list[str],
    offsets: np.ndarray,
    shard: int,
    out_url: str,
    duplicates_url: str,
    *stars: np.ndarray,
) -> dict[str, int]:
    """Filter one shard and write its duplicates, given the star edges (center, leaf) of its node
    partition: a leaf is removed, and kept for it is its center."""
    first, stop = offsets[shard], offsets[shard + 1]
    stars = _edges(stars)
    leaves = stars[(stars[:, 1] >= first) & (stars[:, 1] < stop)]
    centers = np.unique(leaves[:, 0])
    docs = io.read_table(shard_urls[shard])
    keep = np.ones(docs.num_rows, dtype=bool)
    keep[leaves[:, 1] - first] = False
    io.write_table(out_url, docs.filter(pa.array(keep)))

    duplicates = DUPLICATES_SCHEMA.empty_table()
    is_exact = np.zeros(0, dtype=bool)
    if len(leaves):
        rows = pa.array(leaves[:, 1] - first)
        at = pa.array(np.searchsorted(centers, leaves[:, 0]))
        halves = ["exact_hi", "exact_lo"]
        mine = io.read_table(sketch_urls[shard], columns=halves).take(rows)
        theirs = _take(sketch_urls, offsets, centers, halves).take(at)
        is_exact = np.logical_and.reduce(
            [mine.column(h).to_numpy() == theirs.column(h).to_numpy() for h in halves]
        )
        duplicates = pa.table(
            {
                "doc_id": docs.column("doc_id").take(rows),
                "cluster_id": leaves[:, 0],
                "kept_doc_id": _take(shard_urls, offsets, centers, ["doc_id"])["doc_id"].take(at),
                "reason": np.where(is_exact, "exact", "near"),
            },
            schema=DUPLICATES_SCHEMA,
        )
    io.write_table(duplicates_url, duplicates)
    n_exact = int(is_exact.sum())
    return {
        "kept": int(keep.sum()),
        "exact_dup": n_exact,
        "near_dup": len(leaves) - n_exact,
        "clusters": len(np.unique(stars[(stars[:, 0] >= first) & (stars[:, 0] < stop), 0])),
    }


def node_bounds(offsets: np.ndarray, partition_docs: int) -> np.ndarray:
    """Node partitions: runs of consecutive shards of up to ``partition_docs`` documents (at least
    one shard each), as doc_index bounds (q + 1,)."""
    bounds = [0]
    for start, stop in zip(offsets[:-1], offsets[1:], strict=True):
        if stop - bounds[-1] > partition_docs and start > bounds[-1]:
            bounds.append(start)
    return np.array([*bounds, offsets[-1]], dtype=np.int64)


def run(
    params: DedupParams, folder: str, corpus_folder: str, partition_docs: int = PARTITION_DOCS
) -> dict[str, Any]:
    """Deduplicate the shards of ``corpus_folder`` into ``folder``; returns the stage stats.

    ``partition_docs`` sets the work per task (see `PARTITION_DOCS`), never the result.
    """
    import ray

    def remote(fn, returns: int = 1):
        return ray.remote(num_cpus=1, max_retries=TASK_RETRIES, num_returns=returns)(fn)

    shard_urls = io.glob(io.join(corpus_folder, "shard-*.parquet"))
    names = [posixpath.basename(u) for u in shard_urls]
    rows = [io.parquet_rows(u) for u in shard_urls]
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
    num_docs = int(offsets[-1])
    parts = max(1, math.ceil(num_docs / partition_docs))
    bounds = node_bounds(offsets, partition_docs)
    nodes = len(bounds) - 1
    fan_out = nodes + 1  # a task's outputs: one per node partition, then its counts or flag

    sketch_urls = [io.join(folder, "sketches", n) for n in names]
    keys_urls = [io.join(folder, "keys", n) for n in names]
    ray.get(
        [
            remote(_sketch).remote(u, int(o), params, parts, s, k)
            for u, o, s, k in zip(shard_urls, offsets[:-1], sketch_urls, keys_urls, strict=True)
        ]
    )
    buckets = [
        remote(_bucket, 2 * nodes + 1).remote(keys_urls, p, parts, bounds, params.verify)
        for p in range(parts)
    ]
    send = remote(_send, fan_out)
    read_signatures = partial(_local_signatures, sketch_urls, offsets, params)
    signatures = [
        send.remote(read_signatures, nodes, p, *(b[nodes + p] for b in buckets))
        for p in range(nodes)
    ]
    screened = [
        remote(_screen, fan_out).remote(
            params, bounds, parts, *(b[q] for b in buckets), *(s[q] for s in signatures)
        )
        for q in range(nodes)
    ]
    read_sets = partial(_local_sets, shard_urls, offsets, params)
    sets = [send.remote(read_sets, nodes, p, *(s[p] for s in screened)) for p in range(nodes)]
    edges = [
        remote(_verify, fan_out).remote(params, bounds, screened[q][-1], *(s[q] for s in sets))
        for q in range(nodes)
    ]
    counts = ray.get([e[-1] for e in edges])
    bucket_rows = sum(ray.get([b[-1] for b in buckets]))
    signatures_sent = sum(ray.get([s[-1] for s in signatures]))
    sets_sent = sum(ray.get([s[-1] for s in sets]))

    large_task, small_task = remote(_large_star, fan_out), remote(_small_star, fan_out)
    for rounds in range(1, components.MAX_ROUNDS + 1):
        large = [large_task.remote(bounds, q, *(e[q] for e in edges)) for q in range(nodes)]
        edges = [small_task.remote(bounds, q, *(s[q] for s in large)) for q in range(nodes)]
        if not any(ray.get([s[-1] for s in large] + [e[-1] for e in edges])):
            break
    else:
        raise RuntimeError(f"star contraction did not converge in {rounds} rounds")

    node_of = _partition_of(offsets[:-1], bounds)
    finish_task = remote(_finish)
    finished = ray.get(
        [
            finish_task.remote(
                shard_urls,
                sketch_urls,
                offsets,
                i,
                io.join(folder, n),
                io.join(folder, "duplicates.parquet", n),
                *(e[node_of[i]] for e in edges),
            )
            for i, n in enumerate(names)
        ]
    )
    n_exact, n_near = sum(f["exact_dup"] for f in finished), sum(f["near_dup"] for f in finished)
    stats = Counts(input=num_docs, kept=sum(f["kept"] for f in finished))
    stats.removed.update({"exact_dup": n_exact, "near_dup": n_near})
    return {
        "counts": stats.to_dict(),
        "params": params.to_dict(),
        **{k: sum(c[k] for c in counts) for k in counts[0]},
        "clusters_with_duplicates": sum(f["clusters"] for f in finished),
        "bucket_rows": bucket_rows,
        "signatures_sent": signatures_sent,
        "sets_sent": sets_sent,
        "key_partitions": parts,
        "node_partitions": nodes,
        "components_rounds": rounds,
    }
