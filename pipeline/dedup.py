"""Dedup's record-level steps, free of Ray: sketch a shard into bucket rows, pair the members of
each bucket, verify pairs (by their signatures where those settle them within
``verify_error``, else by exact Jaccard), and route each document to kept, ``exact_dup``
or ``near_dup``.

Documents are numbered by ``doc_index``, their position in the corpus (shards in name order, rows in
order); a cluster keeps its lowest ``doc_index``, i.e. its first document in corpus order. That
choice depends only on the corpus, never on sharding, partitioning or worker count.

The sketch of a document is its exact hash (xxh3-128 of its normalized words, as two uint64
halves), its MinHash signature (``minhash.v1``, seed 0, kept for reuse by decontamination) and its
LSH band keys. It becomes bucket rows ``(key, doc_index, group)``: one *exact row* (key = the
hash's high half, group = its low half) and, for near-duplicates, one *band row* per band (key =
the band key, group = the exact hash's high half). A bucket is the rows of one key; inside it,
rows of one group are copies of one text and count as one member, its lowest ``doc_index``
(`lsh.bucket_pairs`). Exact buckets give the exact edges (copy → member); members of any
bucket give candidate pairs, verified like any other (in an exact bucket they are documents
whose 64-bit high halves collide). Band rows drop their copies: the exact rows connect those.

Rows are split into key partitions by the top bits of the key, so one bucket task holds 1/P of
the band table, and any partition count finds the same buckets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from taggant.pipeline.spec import DedupSpec
from taggant.sketches import components, hashing, lsh, minhash, ngrams

DEDUP_VERSION = "dedup.v3"
"""v2: members of a bucket are paired (each of the first `lsh.LEADERS` with every other), not
starred to its lowest document, which finds true pairs v1 lost; exact copies are collapsed
inside band buckets. v3: candidates whose signatures settle them within ``verify_error``
(`components.screen_edges`) skip the exact Jaccard."""
MINHASH_SEED = 0
KEY_SCHEMA = pa.schema([("key", pa.uint64()), ("doc_index", pa.int64()), ("group", pa.uint64())])


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
    verify_error: float

    @classmethod
    def from_spec(cls, spec: DedupSpec) -> DedupParams:
        if spec.bands:
            bands, rows = spec.bands, spec.rows
        else:
            bands, rows = lsh.choose_bands(spec.threshold, spec.num_perm)
        return cls(
            spec.exact,
            spec.near,
            spec.threshold,
            spec.num_perm,
            spec.ngram_words,
            bands,
            rows,
            spec.verify,
            spec.verify_error,
        )

    def to_dict(self) -> dict:
        """The settings and the versions of the algorithms they select, for the stage's key."""
        return {
            **asdict(self),
            "exact_hash": hashing.EXACT_HASH_VERSION,
            "minhash": minhash.MINHASH_VERSION,
            "ngrams": ngrams.NGRAMS_VERSION,
        }


def key_partition(keys: np.ndarray, parts: int) -> np.ndarray:
    """The key partition in [0, parts) of each uint64 key: its top bits, so partitions are
    ascending key ranges of equal width (keys are uniform hashes)."""
    if not 1 <= parts < 2**32:
        raise ValueError(f"parts must be in [1, 2**32), got {parts}")
    high = np.asarray(keys, dtype=np.uint64) >> np.uint64(32)
    return (high * np.uint64(parts)) >> np.uint64(32)


def _partitioned(
    keys: np.ndarray, doc_index: np.ndarray, groups: np.ndarray, parts: int
) -> list[pa.Table]:
    order = np.lexsort((doc_index, keys))
    keys, doc_index, groups = keys[order], doc_index[order], groups[order]
    bounds = np.searchsorted(key_partition(keys, parts), np.arange(parts + 1))
    table = pa.table({"key": keys, "doc_index": doc_index, "group": groups}, schema=KEY_SCHEMA)
    return [table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def sketch_shard(
    texts: list[str], first_index: int, params: DedupParams, parts: int
) -> tuple[pa.Table, list[pa.Table]]:
    """The sketch table of one shard and its bucket rows.

    Returns:
        (sketch, key_tables): ``sketch`` has ``exact_hi``, ``exact_lo`` and ``signature`` (uint32
        × num_perm), a row per document in order; ``key_tables`` has 2 * parts tables of
        `KEY_SCHEMA` sorted by (key, doc_index): the exact rows of key partition p at p, its
        band rows at parts + p (none without ``params.near``).
    """
    n = len(texts)
    exact, signatures = minhash.sketch(texts, params.num_perm, params.ngram_words, MINHASH_SEED)
    doc_index = np.arange(first_index, first_index + n, dtype=np.int64)
    sketch = pa.table(
        {
            "exact_hi": exact[:, 0],
            "exact_lo": exact[:, 1],
            "signature": pa.FixedSizeListArray.from_arrays(
                pa.array(signatures.reshape(-1)), params.num_perm
            ),
        }
    )
    exact_rows = _partitioned(exact[:, 0], doc_index, exact[:, 1], parts)
    bands = params.bands if params.near else 0
    keys = lsh.band_keys(signatures, bands, params.rows) if bands else np.empty((n, 0), np.uint64)
    band_rows = _partitioned(
        keys.reshape(-1), np.repeat(doc_index, bands), np.repeat(exact[:, 0], bands), parts
    )
    return sketch, exact_rows + band_rows


def bucket(exact_rows: pa.Table, band_rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The exact edges and the candidate pairs of one key partition's rows (all shards').

    Returns:
        (exact, candidates): int64 (m, 2) distinct edges (low, high) each.
    """

    def pairs(rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        return lsh.bucket_pairs(*(rows.column(c).to_numpy() for c in KEY_SCHEMA.names))

    exact, collisions = pairs(exact_rows)
    _, candidates = pairs(band_rows)
    return exact, np.unique(np.concatenate([collisions, candidates]), axis=0)


def ngram_sets(texts: list[str], params: DedupParams) -> ngrams.NgramSets:
    """The n-gram sets that verification compares (same shingles as the MinHash)."""
    return ngrams.ngram_sets(texts, params.ngram_words)


def screen_edges(
    edges: np.ndarray, ids: np.ndarray, signatures: np.ndarray, params: DedupParams
) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, undecided) rows of ``edges``, as their signatures settle them within
    ``params.verify_error``; the rest are rejected.

    Args:
        edges: int64 (m, 2) doc_index pairs.
        ids: int64 (n,) distinct doc_index values, every one named in ``edges`` among them;
            ``signatures[i]`` is the signature of ``ids[i]``.
    """
    return components.screen_edges(edges, ids, signatures, params.threshold, params.verify_error)


def verify_edges(
    edges: np.ndarray, ids: np.ndarray, sets: ngrams.NgramSets, params: DedupParams
) -> np.ndarray:
    """The edges whose documents' exact n-gram Jaccard reaches the threshold.

    Args:
        edges: int64 (m, 2) doc_index pairs.
        ids: int64 (n,) distinct doc_index values, every one named in ``edges`` among them;
            ``sets.doc(i)`` is the set of ``ids[i]``.
    """
    return components.verify_edges(edges, ids, sets, params.threshold)
