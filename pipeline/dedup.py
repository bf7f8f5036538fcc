"""Dedup's record-level steps, free of Ray: sketch a shard, find a band's candidate edges, verify
edges against exact Jaccard, and route each document to kept, ``exact_dup`` or ``near_dup``.

Documents are numbered by ``doc_index``, their position in the corpus (shards in name order, rows in
order); a cluster keeps its lowest ``doc_index``, i.e. its first document in corpus order. That
choice depends only on the corpus, never on sharding or worker count.

The sketch of a document is its exact hash (xxh3-128 of its normalized words, as two uint64
halves), its MinHash signature (``minhash.v1``, seed 0, kept for reuse by decontamination) and its
LSH band keys. Exact duplicates are found by grouping the full 128-bit hash; near duplicates by
grouping band keys; both give star edges (each document to the lowest index in its bucket).
Edges whose documents' full exact hashes differ are near-duplicate candidates like any other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from taggant.pipeline.spec import DedupSpec
from taggant.sketches import components, hashing, lsh, minhash, ngrams

DEDUP_VERSION = "dedup.v1"
MINHASH_SEED = 0
EXACT_KEY = "exact_hi"
"""The column exact duplicates are grouped by: xxh3's high half is already uniform; both halves
confirm a group's edges, and a 64-bit collision only sends a pair on to the near-duplicate check."""


@dataclass(frozen=True)
class DedupParams:
    """The resolved dedup settings (bands and rows chosen from the threshold when not given)."""

    exact: bool
    near: bool
    threshold: float
    num_perm: int
    ngram_words: int
    bands: int
    rows: int
    verify: bool

    @classmethod
    def from_spec(cls, spec: DedupSpec) -> DedupParams:
        bands, rows = (spec.bands, spec.rows) if spec.bands else lsh.choose_bands(spec.threshold, spec.num_perm)
        return cls(spec.exact, spec.near, spec.threshold, spec.num_perm, spec.ngram_words, bands, rows, spec.verify)

    def to_dict(self) -> dict:
        return {**asdict(self), "minhash": minhash.MINHASH_VERSION, "ngrams": ngrams.NGRAMS_VERSION}


def band_column(band: int) -> str:
    return f"band_{band:03d}"


def sketch_shard(texts: list[str], first_index: int, params: DedupParams) -> pa.Table:
    """The sketch table of one shard: ``doc_index``, ``exact_hi``, ``exact_lo``, one ``band_NNN`` column per band, and ``signature`` (uint32 × num_perm)."""
    n = len(texts)
    exact = hashing.exact_hashes(texts)
    signatures = minhash.signatures(texts, params.num_perm, params.ngram_words, MINHASH_SEED)
    keys = lsh.band_keys(signatures, params.bands, params.rows)
    columns = {
        "doc_index": pa.array(np.arange(first_index, first_index + n, dtype=np.int64)),
        "exact_hi": pa.array(exact[:, 0]),
        "exact_lo": pa.array(exact[:, 1]),
    }
    for band in range(params.bands):
        columns[band_column(band)] = pa.array(keys[:, band])
    flat = pa.array(signatures.reshape(-1))
    columns["signature"] = pa.FixedSizeListArray.from_arrays(flat, params.num_perm)
    return pa.table(columns)


def bucket_edges(keys: np.ndarray, doc_index: np.ndarray) -> np.ndarray:
    """Star edges (low, high) between documents that share a key in one column of ``keys``."""
    return lsh.candidate_pairs(keys.reshape(len(doc_index), -1), doc_index)


def confirm_exact(edges: np.ndarray, exact_hi: np.ndarray, exact_lo: np.ndarray) -> np.ndarray:
    """Whether each edge joins documents with equal 128-bit exact hashes (arrays indexed by
    ``doc_index``)."""
    u, v = edges[:, 0], edges[:, 1]
    return (exact_hi[u] == exact_hi[v]) & (exact_lo[u] == exact_lo[v])


def verify_edges(edges: np.ndarray, texts: dict[int, str], params: DedupParams) -> np.ndarray:
    """The edges whose documents' exact n-gram Jaccard reaches the threshold.

    Args:
        edges: int64 (m, 2) doc_index pairs.
        texts: the text of every doc_index named in ``edges``.
    """
    ids = np.array(sorted(texts), dtype=np.int64)
    sets = ngrams.ngram_sets([texts[i] for i in ids], params.ngram_words)
    return components.verify_edges(edges, ids, sets, params.threshold)


def representatives(num_docs: int, edges: np.ndarray) -> np.ndarray:
    """For each doc_index, the lowest doc_index of its cluster (itself when kept)."""
    return components.connected_components(np.arange(num_docs, dtype=np.int64), edges)
