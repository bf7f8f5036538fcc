"""The dedup stage on Ray: sketch shards in parallel, group each band across the corpus, verify,
take connected components, and filter shards in parallel.

1. sketch (one task per corpus shard) → ``sketches/shard-*.parquet``;
2. band buckets (one task per LSH band, plus one for exact hashes): each reads a single column
   of every sketch file, so its memory is that column of the band table, never the corpus;
3. verify (one task per shard, for the near edges whose higher end lies in it);
4. connected components in the driver over ``doc_index`` (8 bytes a document);
5. filter (one task per shard) → ``shard-*.parquet`` with the kept documents, same schema.

Every file name depends only on the shard's name and every task is a pure function of its inputs,
so retries (a killed worker) and re-runs write the same bytes.
"""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np
import pyarrow as pa

from taggant.pipeline import io
from taggant.pipeline.dedup import (
    DEDUP_VERSION,
    EXACT_KEY,
    DedupParams,
    band_column,
    bucket_edges,
    confirm_exact,
    representatives,
    sketch_shard,
    verify_edges,
)
from taggant.pipeline.stage import Counts, StageDecl

STAGE = StageDecl(
    name="dedup",
    version=DEDUP_VERSION,
    inputs=("ingest",),
    config=lambda spec: DedupParams.from_spec(spec.dedup).to_dict(),
    execute=lambda context: run(DedupParams.from_spec(context.spec.dedup), context.folder,
                                context.folders["ingest"]),
    # With both kinds off the ingested shards are the corpus.
    skip=lambda spec: not (spec.dedup.exact or spec.dedup.near),
)
TASK_RETRIES = 3
DUPLICATES_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("cluster_id", pa.int64()), ("kept_doc_id", pa.string()), ("reason", pa.string())]
)


def _sketch(shard_url: str, first_index: int, params: DedupParams, out_url: str) -> None:
    texts = io.read_table(shard_url, columns=["text"]).column("text").to_pylist()
    io.write_table(out_url, sketch_shard(texts, first_index, params))


def _column(sketch_urls: list[str], name: str) -> np.ndarray:
    return np.concatenate([io.read_table(u, columns=[name]).column(name).to_numpy() for u in sketch_urls])


def _bucket(sketch_urls: list[str], column: str) -> np.ndarray:
    # Sketch files in shard order hold documents 0..n-1 in order: the index is the row number,
    # so a bucket task reads one column, not two.
    keys = _column(sketch_urls, column)
    return bucket_edges(keys, np.arange(len(keys), dtype=np.int64))


def _take(shard_urls: list[str], offsets: np.ndarray, wanted: np.ndarray, column: str) -> dict[int, str]:
    """``column`` of the documents ``wanted`` (doc_index values), reading only their shards."""
    values: dict[int, str] = {}
    shard_of = np.searchsorted(offsets, wanted, side="right") - 1
    for shard in np.unique(shard_of):
        rows = wanted[shard_of == shard]
        data = io.read_table(shard_urls[shard], columns=[column]).column(column)
        values.update(zip(rows.tolist(), data.take(pa.array(rows - offsets[shard])).to_pylist()))
    return values


def _verify(edges: np.ndarray, shard_urls: list[str], offsets: np.ndarray, params: DedupParams) -> np.ndarray:
    return verify_edges(edges, _take(shard_urls, offsets, np.unique(edges), "text"), params)


def _filter(shard_url: str, keep: np.ndarray, out_url: str) -> None:
    docs = io.read_table(shard_url)
    io.write_table(out_url, docs.filter(pa.array(keep)))


def run(params: DedupParams, folder: str, corpus_folder: str) -> dict[str, Any]:
    """Deduplicate the shards of ``corpus_folder`` into ``folder``; returns the stage stats."""
    import ray

    def remote(fn):
        return ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(fn)

    shard_urls = io.glob(io.join(corpus_folder, "shard-*.parquet"))
    names = [posixpath.basename(u) for u in shard_urls]
    offsets = np.concatenate([[0], np.cumsum([io.parquet_rows(u) for u in shard_urls])]).astype(np.int64)
    num_docs = int(offsets[-1])

    sketch_urls = [io.join(folder, "sketches", n) for n in names]
    ray.get([remote(_sketch).remote(u, int(o), params, s) for u, o, s in zip(shard_urls, offsets, sketch_urls)])

    columns = ([EXACT_KEY] if params.exact else []) + (
        [band_column(b) for b in range(params.bands)] if params.near else []
    )
    bucket = remote(_bucket)
    edge_sets = ray.get([bucket.remote(sketch_urls, c) for c in columns])
    edges = np.unique(np.concatenate([np.empty((0, 2), np.int64), *edge_sets]), axis=0)

    exact_hi, exact_lo = _column(sketch_urls, "exact_hi"), _column(sketch_urls, "exact_lo")
    exact_edge = confirm_exact(edges, exact_hi, exact_lo)
    near = edges[~exact_edge]
    if params.verify and len(near):
        owner = np.searchsorted(offsets, near[:, 1], side="right") - 1
        verify = remote(_verify)
        near = np.concatenate([np.empty((0, 2), np.int64), *ray.get([
            verify.remote(near[owner == s], shard_urls, offsets, params) for s in np.unique(owner)
        ])])
    rep = representatives(num_docs, np.concatenate([edges[exact_edge], near]))

    keep = rep == np.arange(num_docs)
    ray.get([
        remote(_filter).remote(u, keep[offsets[i]:offsets[i + 1]], io.join(folder, n))
        for i, (u, n) in enumerate(zip(shard_urls, names))
    ])

    removed = np.flatnonzero(~keep)
    is_exact = (exact_hi[removed] == exact_hi[rep[removed]]) & (exact_lo[removed] == exact_lo[rep[removed]])
    ids = _take(shard_urls, offsets, np.unique(np.concatenate([removed, rep[removed]])), "doc_id")
    duplicates = pa.table(
        {
            "doc_id": [ids[i] for i in removed.tolist()],
            "cluster_id": rep[removed],
            "kept_doc_id": [ids[i] for i in rep[removed].tolist()],
            "reason": np.where(is_exact, "exact", "near"),
        },
        schema=DUPLICATES_SCHEMA,
    )
    io.write_table(io.join(folder, "duplicates.parquet"), duplicates)

    n_exact = int(is_exact.sum())
    counts = Counts(input=num_docs, kept=int(keep.sum()))
    counts.removed.update({"exact_dup": n_exact, "near_dup": len(removed) - n_exact})
    return {
        "counts": counts.to_dict(),
        "params": params.to_dict(),
        "candidate_edges": len(edges),
        "verified_near_edges": len(near),
        "clusters_with_duplicates": int(len(np.unique(rep[removed]))),
    }

