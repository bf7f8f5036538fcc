"""The dedup stage's partition steps, free of Ray: what one key partition or node partition
computes from its inputs, and what it sends to each node partition.

`jobs.dedup` runs every step as a Ray task and wires the outputs of one step to the inputs of the
next; here the steps are plain functions of arrays and file URLs. Terms:

* documents are numbered by ``doc_index`` (`pipeline.dedup`); node partition q holds the
  documents ``bounds[q] <= doc_index < bounds[q + 1]``, a run of consecutive shards
  (`node_bounds`);
* an edge is an int64 row (low, high) of doc_index values with low < high; the partition of an
  edge's *high end* settles it;
* a *request* is an int64 row (doc_index, q): partition q asks the partition holding the document
  for its payload (MinHash signature or n-gram set), which arrives as a `Package`.

A step returns a frozen dataclass whose routed fields (`task_slots.routed`) hold one value per
node partition, index q being what the step sends to q, so the driver reads
``bucketed.edges[q]``, "what bucket task sends partition q", where it would otherwise compute an
index into the task's returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from taggant.pipeline import io
from taggant.pipeline.dedup import DedupParams, bucket, ngram_sets, screen_edges, verify_edges
from taggant.pipeline.task_slots import routed
from taggant.sketches import components
from taggant.sketches.ngrams import NgramSets

DUPLICATES_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("cluster_id", pa.int64()),
        ("kept_doc_id", pa.string()),
        ("reason", pa.string()),
    ]
)


class Package(NamedTuple):
    """The payloads one partition sends another: ``payload`` row i belongs to ``ids[i]``."""

    ids: np.ndarray  # int64 sorted distinct doc_index values
    payload: Any  # uint32 (k, num_perm) signatures or an NgramSets of k documents


@dataclass(frozen=True)
class Bucketed:
    """One key partition's buckets."""

    edges: list = routed()
    """[q]: int64 (m, 3) rows (low, high, exact) whose high end q holds; exact is 1 for an exact
    edge, 0 for a candidate pair."""
    requests: list = routed()
    """[p]: the requests, to partition p, for the signatures of the candidates' documents."""
    rows: int
    """Bucket rows read."""


@dataclass(frozen=True)
class Sent:
    """One node partition's payloads, sent where they were requested."""

    packages: list = routed()
    """[q]: the `Package` of the documents q asked for (possibly none)."""
    sent: int
    """Payloads sent to partitions other than the sender."""


@dataclass(frozen=True)
class Screening:
    """One node partition's edges after its candidates were screened by their signatures."""

    exact: np.ndarray
    accepted: np.ndarray
    undecided: np.ndarray
    counts: dict[str, int]
    """candidate_edges, exact_edges, signature_accepted, jaccard_checked."""


@dataclass(frozen=True)
class Screened:
    """One node partition's screening and its requests for the n-gram sets it still needs."""

    requests: list = routed()
    """[p]: the requests, to partition p, for the n-gram sets of undecided candidates' ends."""
    screening: Screening


@dataclass(frozen=True)
class Verified:
    """One node partition's duplicate edges, sent on to the first large-star step."""

    edges: list = routed()
    """[q]: its exact and verified near edges with an end in q."""
    counts: dict[str, int]
    """`Screening.counts` and verified_near_edges."""


@dataclass(frozen=True)
class Stars:
    """One node partition's star-contraction step."""

    edges: list = routed()
    """[q]: the step's new edges that the next step's partition q needs."""
    changed: bool
    """Whether any new edge differs from the one it replaces."""


@dataclass(frozen=True)
class Finished:
    """One shard's dedup outcome: its documents kept, and removed as exact and as near duplicates."""

    kept: int
    exact_dup: int
    near_dup: int
    clusters: int
    """Clusters with duplicates whose kept document is in this shard."""


def node_bounds(offsets: np.ndarray, partition_docs: int) -> np.ndarray:
    """Node partitions: runs of consecutive shards of up to ``partition_docs`` documents (at least
    one shard each), as doc_index bounds (Q + 1,), given the shards' first doc_index values and
    the corpus size, ``offsets`` (shards + 1,)."""
    bounds = [0]
    for start, stop in zip(offsets[:-1], offsets[1:], strict=True):
        if stop - bounds[-1] > partition_docs and start > bounds[-1]:
            bounds.append(start)
    return np.array([*bounds, offsets[-1]], dtype=np.int64)


def distinct_rows(arrays: Iterable[np.ndarray], width: int = 2) -> np.ndarray:
    """The distinct rows, sorted, of int64 (m, width) arrays (none at all gives (0, width))."""
    return np.unique(np.concatenate([np.empty((0, width), np.int64), *arrays]), axis=0)


def partition_of(doc_index: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The node partition q of each doc_index: bounds[q] <= doc_index < bounds[q + 1]."""
    return np.searchsorted(bounds[1:-1], doc_index, side="right")


def by_high_end(edges: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """[q]: the rows of ``edges`` whose high end (column 1) q holds."""
    part = partition_of(edges[:, 1], bounds)
    return [edges[part == q] for q in range(len(bounds) - 1)]


def by_either_end(edges: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """[q]: the edges with an end in q (one copy where both ends are)."""
    low, high = partition_of(edges[:, 0], bounds), partition_of(edges[:, 1], bounds)
    return [edges[(low == q) | (high == q)] for q in range(len(bounds) - 1)]


def requests_for(edges: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """[p]: the requests to p for the payloads of ``edges``' documents that p holds. Both ends of
    an edge are asked for by the partition of its high end, which settles the edge; a document is
    asked for once per edge (`send` removes the repeats)."""
    docs = edges.reshape(-1)
    requests = np.c_[docs, np.repeat(partition_of(edges[:, 1], bounds), 2)]
    holder = partition_of(docs, bounds)
    return [requests[holder == p] for p in range(len(bounds) - 1)]


def take(urls: list[str], offsets: np.ndarray, wanted: np.ndarray, columns: list[str]) -> pa.Table:
    """``columns`` of the documents ``wanted`` (sorted distinct doc_index values, at least one),
    in that order, reading only the files (one per shard, ``urls``; shard i starts at doc_index
    ``offsets[i]``) that hold them."""
    shard_of = np.searchsorted(offsets, wanted, side="right") - 1
    tables = [
        io.read_table(urls[shard], columns=columns).take(
            pa.array(wanted[shard_of == shard] - offsets[shard])
        )
        for shard in np.unique(shard_of)
    ]
    return pa.concat_tables(tables)


def local_signatures(
    sketch_urls: list[str], offsets: np.ndarray, params: DedupParams, docs: np.ndarray
) -> np.ndarray:
    """The signatures of ``docs`` (sorted distinct doc_index values): uint32 (k, num_perm)."""
    if not len(docs):
        return np.empty((0, params.num_perm), np.uint32)
    column = take(sketch_urls, offsets, docs, ["signature"]).column("signature")
    return column.combine_chunks().flatten().to_numpy().reshape(len(docs), params.num_perm)


def local_sets(
    shard_urls: list[str], offsets: np.ndarray, params: DedupParams, docs: np.ndarray
) -> NgramSets:
    """The n-gram sets of ``docs`` (sorted distinct doc_index values), read from their shards."""
    if not len(docs):
        return NgramSets(np.empty(0, np.uint64), np.zeros(1, np.int64))
    texts = take(shard_urls, offsets, docs, ["text"]).column("text").to_pylist()
    return ngram_sets(texts, params)


def received(packages: list[Package], concat: Callable[[list], Any]) -> tuple[np.ndarray, Any]:
    """The doc_index values and payloads (joined by ``concat``) of the packages a partition was
    sent, one package after the other."""
    return np.concatenate([p.ids for p in packages]), concat([p.payload for p in packages])


def bucket_partition(
    keys_urls: list[str], part: int, parts: int, bounds: np.ndarray, verify: bool
) -> Bucketed:
    """Key partition ``part`` of ``parts``, read from every shard's key file (its exact rows in
    row group ``part``, its band rows in ``parts + part``): its exact edges and candidate pairs
    routed to the partitions of their high ends, and the signature requests of its candidates
    (none without ``verify``)."""
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
    return Bucketed(
        edges=by_high_end(tagged, bounds),
        requests=requests_for(candidates if verify else candidates[:0], bounds),
        rows=sum(r.num_rows for r in rows),
    )


def send(read: Callable[[np.ndarray], Any], nodes: int, p: int, requests: list[np.ndarray]) -> Sent:
    """Node partition p's answer to ``requests`` (rows to p, from every sender): each document
    read once where it lives by ``read`` (sorted distinct doc_index values → their payloads), and
    its payload sent once to each partition that asked for it."""
    requests = distinct_rows(requests)
    docs = np.unique(requests[:, 0])
    payload = read(docs)
    packages = []
    for q in range(nodes):
        wanted = requests[requests[:, 1] == q, 0]  # sorted distinct: requests are
        packages.append(Package(wanted, payload[np.searchsorted(docs, wanted)]))
    return Sent(packages=packages, sent=int(np.sum(requests[:, 1] != p)))


def screen(
    params: DedupParams, bounds: np.ndarray, edges: list[np.ndarray], packages: list[Package]
) -> Screened:
    """One node partition's edges (the `Bucketed.edges` every key partition sent it), its
    candidates settled by their signatures (``packages``: what `send` sent it) where those
    settle them within ``params.verify_error``, and the n-gram set requests of the candidates
    left undecided. Without ``params.verify`` every candidate is accepted unchecked."""
    tagged = distinct_rows(edges, width=3)
    exact, near = tagged[tagged[:, 2] == 1, :2], tagged[tagged[:, 2] == 0, :2]
    undecided = near[:0]
    if params.verify and len(near):
        near, undecided = screen_edges(near, *received(packages, np.concatenate), params)
    counts = {
        "candidate_edges": len(tagged),
        "exact_edges": len(exact),
        "signature_accepted": len(near),
        "jaccard_checked": len(undecided),
    }
    return Screened(
        requests=requests_for(undecided, bounds),
        screening=Screening(exact=exact, accepted=near, undecided=undecided, counts=counts),
    )


def verify(
    params: DedupParams, bounds: np.ndarray, screening: Screening, packages: list[Package]
) -> Verified:
    """One node partition's exact edges, accepted edges and those of its undecided candidates
    whose exact n-gram Jaccard (``packages``: the n-gram sets `send` sent it) reaches the
    threshold, routed to the partitions of their ends."""
    verified = screening.undecided
    if len(verified):
        verified = verify_edges(verified, *received(packages, NgramSets.concat), params)
    near = np.concatenate([screening.accepted, verified])
    return Verified(
        edges=by_either_end(np.concatenate([screening.exact, near]), bounds),
        counts={**screening.counts, "verified_near_edges": len(near)},
    )


def large_star(bounds: np.ndarray, q: int, edges: list[np.ndarray]) -> Stars:
    """The large-star step (`components.large_star`) of node partition q, given every edge with
    an end in q; its new edges routed to the partitions of their high ends."""
    stars, changed = components.large_star(distinct_rows(edges), bounds[q], bounds[q + 1])
    return Stars(edges=by_high_end(stars, bounds), changed=changed)


def small_star(bounds: np.ndarray, q: int, edges: list[np.ndarray]) -> Stars:
    """The small-star step (`components.small_star`) of node partition q, given every edge whose
    high end q holds; its new edges routed to the partitions of their ends."""
    stars, changed = components.small_star(distinct_rows(edges), bounds[q], bounds[q + 1])
    return Stars(edges=by_either_end(stars, bounds), changed=changed)


def finish(
    shard_urls: list[str],
    sketch_urls: list[str],
    offsets: np.ndarray,
    shard: int,
    out_url: str,
    duplicates_url: str,
    stars: list[np.ndarray],
) -> Finished:
    """Filter one shard into ``out_url`` and write its removed documents to ``duplicates_url``,
    given the star edges (center, leaf) of its node partition after contraction: a leaf is
    removed, kept for it is its center, and the reason is "exact" where their exact hashes
    (in ``sketch_urls``) match, "near" otherwise."""
    first, stop = offsets[shard], offsets[shard + 1]
    stars = distinct_rows(stars)
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
        theirs = take(sketch_urls, offsets, centers, halves).take(at)
        is_exact = np.logical_and.reduce(
            [mine.column(h).to_numpy() == theirs.column(h).to_numpy() for h in halves]
        )
        duplicates = pa.table(
            {
                "doc_id": docs.column("doc_id").take(rows),
                "cluster_id": leaves[:, 0],
                "kept_doc_id": take(shard_urls, offsets, centers, ["doc_id"])["doc_id"].take(at),
                "reason": np.where(is_exact, "exact", "near"),
            },
            schema=DUPLICATES_SCHEMA,
        )
    io.write_table(duplicates_url, duplicates)
    n_exact = int(is_exact.sum())
    return Finished(
        kept=int(keep.sum()),
        exact_dup=n_exact,
        near_dup=len(leaves) - n_exact,
        clusters=len(np.unique(stars[(stars[:, 0] >= first) & (stars[:, 0] < stop), 0])),
    )
