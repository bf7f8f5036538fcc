"""From candidate edges to clusters: exact verification, then connected components.

Clusters are the connected components of the verified edges. Each is keyed by its lowest doc
id, which is the document a dedup keeps: the result does not depend on edge order, batch
boundaries or worker count.
"""

import numba
import numpy as np

from taggant.sketches.ngrams import NgramSets, jaccard


def _prepare(doc_ids, edges) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validates inputs; returns (order, sorted ids, edges, edges as positions in sorted ids)."""
    doc_ids = np.asarray(doc_ids, dtype=np.int64)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if doc_ids.ndim != 1:
        raise ValueError(f"doc_ids must be 1-D, got shape {doc_ids.shape}")
    order = np.argsort(doc_ids)
    sorted_ids = doc_ids[order]
    if np.any(sorted_ids[1:] == sorted_ids[:-1]):
        raise ValueError("doc_ids must be distinct")
    at = np.searchsorted(sorted_ids, edges)
    if not (np.all(at < len(sorted_ids)) and np.array_equal(sorted_ids[at], edges)):
        raise ValueError("edges name doc ids that are not in doc_ids")
    return order, sorted_ids, edges, at


def verify_edges(
    edges: np.ndarray, doc_ids: np.ndarray, sets: NgramSets, threshold: float
) -> np.ndarray:
    """Keeps the candidate edges whose documents have exact n-gram Jaccard >= threshold.

    Args:
        edges: int64 (m, 2) doc id pairs, e.g. from `lsh.candidate_pairs`.
        doc_ids: int64 (n,) distinct ids; document doc_ids[i] has the set sets.doc(i).
        sets: n-gram sets of the documents (`ngrams.ngram_sets`, same ngram as the MinHash).

    Returns:
        int64 (m', 2): the kept rows of `edges`, in their order.
    """
    order, _, edges, at = _prepare(doc_ids, edges)
    if len(sets) != len(order):
        raise ValueError(f"{len(sets)} sets for {len(order)} doc ids")
    return edges[jaccard(sets, order[at[:, 0]], order[at[:, 1]]) >= threshold]


@numba.njit(inline="always")
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving
        x = parent[x]
    return x


@numba.njit(cache=True)
def _union_find(n, left, right):
    parent = np.arange(n)
    for e in range(left.shape[0]):
        a = _find(parent, left[e])
        b = _find(parent, right[e])
        # The lower root wins, so every parent is below its child and each root is its
        # component's minimum.
        if a < b:
            parent[b] = a
        elif b < a:
            parent[a] = b
    # parent[i] <= i, so one ascending pass resolves every node to its root.
    for i in range(n):
        parent[i] = parent[parent[i]]
    return parent


def connected_components(doc_ids: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The representative of each document: the lowest doc id of its connected component.

    Args:
        doc_ids: int64 (n,) distinct ids, any order.
        edges: int64 (m, 2) pairs of ids from `doc_ids`, any order and direction, repeats allowed.

    Returns:
        int64 (n,): representative of doc_ids[i]; equal to doc_ids[i] for a document that is kept
        (a singleton or its cluster's lowest id). Memory O(n + m).
    """
    order, sorted_ids, _, at = _prepare(doc_ids, edges)
    # Union-find runs on positions in ascending id order, so the lowest position is the
    # lowest id.
    root = _union_find(len(order), at[:, 0], at[:, 1])
    representative = np.empty_like(sorted_ids)
    representative[order] = sorted_ids[root]
    return representative
