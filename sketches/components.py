"""From candidate edges to clusters: screening by signatures, exact verification, then
connected components.

Clusters are the connected components of the verified edges, found by star contraction
(`large_star`, `small_star`), which works on node ranges so that no process needs the whole
graph. Each is keyed by its lowest doc id, which is the document a dedup keeps: the result does
not depend on edge order, batch boundaries or worker count.
"""

import numpy as np
from scipy.special import bdtr, bdtrc

from taggant.sketches.minhash import agreements
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


def decisive_agreements(num_perm: int, threshold: float, error: float) -> tuple[int, int]:
    """The slot-agreement counts at which a pair's signatures decide it without exact Jaccard.

    Agreements X of two num_perm-slot signatures are Binomial(num_perm, J) over the choice of
    permutations. Deciding "J >= threshold" when X >= accept and "J < threshold" when
    X <= reject is wrong with probability at most ``error`` for every pair: P(X >= k | J) rises
    with J, so for J < threshold it is below P(X >= k | threshold) <= error, and likewise for
    rejection. Near the threshold neither holds and the pair needs its exact Jaccard.

    Returns:
        (reject, accept): reject at X <= reject (-1: never), accept at X >= accept
        (num_perm + 1: never). ``error`` 0 gives (-1, num_perm + 1).
    """
    if not (0.0 < threshold < 1.0 and 0.0 <= error < 0.5 and num_perm >= 1):
        raise ValueError(
            f"need 0 < threshold < 1, 0 <= error < 0.5, num_perm >= 1; got {threshold}, "
            f"{error}, {num_perm}"
        )
    k = np.arange(num_perm + 1)
    at_most = bdtr(k, num_perm, threshold)  # P(X <= k | J = threshold)
    at_least = np.r_[1.0, bdtrc(k[:-1], num_perm, threshold)]  # P(X >= k | J = threshold)
    rejecting, accepting = np.flatnonzero(at_most <= error), np.flatnonzero(at_least <= error)
    reject = int(rejecting[-1]) if len(rejecting) else -1
    accept = int(accepting[0]) if len(accepting) else num_perm + 1
    return reject, accept


def screen_edges(
    edges: np.ndarray, doc_ids: np.ndarray, signatures: np.ndarray, threshold: float, error: float
) -> tuple[np.ndarray, np.ndarray]:
    """Splits candidate edges into those their MinHash signatures accept within ``error``
    (`decisive_agreements`) and those they leave undecided; the rest are rejected.

    Args:
        edges: int64 (m, 2) doc id pairs.
        doc_ids: int64 (n,) distinct ids; document doc_ids[i] has signature signatures[i].
        signatures: uint32 (n, num_perm).

    Returns:
        (accepted, undecided): rows of `edges`, in their order.
    """
    order, _, edges, at = _prepare(doc_ids, edges)
    if len(signatures) != len(order):
        raise ValueError(f"{len(signatures)} signatures for {len(order)} doc ids")
    reject, accept = decisive_agreements(signatures.shape[1], threshold, error)
    agree = agreements(signatures, order[at[:, 0]], order[at[:, 1]])
    return edges[agree >= accept], edges[(agree > reject) & (agree < accept)]


MAX_ROUNDS = 200
"""Star contraction takes O(log(n)**2) rounds (a few on real dedup graphs); more means a bug."""


def large_star(edges: np.ndarray, low: int, high: int) -> tuple[np.ndarray, bool]:
    """The large-star step of star contraction (Kiveris et al., "Connected Components in
    MapReduce and Beyond", 2014) for the nodes u in [low, high).

    Each such u with neighbours N(u) and m(u) = min(N(u) + {u}) gives the edges (m(u), v) for
    v in N(u) with v > u: every node hooks its higher neighbours onto its lowest one.

    Args:
        edges: int64 (m, 2) undirected edges (low, high) with low < high, which must include
            every edge with an endpoint in [low, high) (others are ignored).

    Returns:
        (edges, changed): the distinct new edges (low, high) that the nodes in range emit, and
        whether any differs from the edge it replaces.
    """
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    inside = (src >= low) & (src < high)
    src, dst = src[inside], dst[inside]
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    starts = np.ones(len(src), dtype=bool)
    starts[1:] = src[1:] != src[:-1]
    # Sorted by (src, dst): each node's first arc holds its lowest neighbour.
    lowest = np.minimum(src, dst[np.flatnonzero(starts)[np.cumsum(starts) - 1]])
    up = dst > src
    out = np.stack([lowest[up], dst[up]], axis=1)
    return _distinct(out), bool(np.any(lowest[up] != src[up]))


def small_star(edges: np.ndarray, low: int, high: int) -> tuple[np.ndarray, bool]:
    """The small-star step for the nodes v in [low, high): v and each of its lower neighbours
    hook onto the lowest of them, m(v); v's higher neighbours are left to them.

    Args:
        edges: int64 (m, 2) undirected edges (low, high) with low < high, which must include
            every edge whose high end is in [low, high) (others are ignored).

    Returns:
        (edges, changed): the distinct new edges, and whether some v had two or more lower
        neighbours (otherwise the edges come back unchanged).
    """
    lo, hi = edges[:, 0], edges[:, 1]
    inside = (hi >= low) & (hi < high)
    lo, hi = lo[inside], hi[inside]
    order = np.lexsort((lo, hi))
    lo, hi = lo[order], hi[order]
    starts = np.ones(len(hi), dtype=bool)
    starts[1:] = hi[1:] != hi[:-1]
    lowest = lo[np.flatnonzero(starts)[np.cumsum(starts) - 1]]
    moved = lo != lowest
    out = np.concatenate(
        [
            np.stack([lowest[moved], lo[moved]], axis=1),
            np.stack([lowest[starts], hi[starts]], axis=1),
        ]
    )
    return _distinct(out), bool(moved.any())


def _distinct(edges: np.ndarray) -> np.ndarray:
    return np.unique(edges.reshape(-1, 2), axis=0)


def normalized(edges: np.ndarray) -> np.ndarray:
    """Distinct undirected edges as (low, high) with low < high; self loops dropped."""
    edges = np.sort(np.asarray(edges, dtype=np.int64).reshape(-1, 2), axis=1)
    return _distinct(edges[edges[:, 0] != edges[:, 1]])


def connected_components(doc_ids: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The representative of each document: the lowest doc id of its connected component.

    Star contraction in one partition: large-star and small-star steps alternate until neither
    changes the graph, which leaves every component a star around its lowest node. The
    distributed dedup runs the same steps per node range (`jobs.dedup`).

    Args:
        doc_ids: int64 (n,) distinct ids, any order.
        edges: int64 (m, 2) pairs of ids from `doc_ids`, any order and direction, repeats allowed.

    Returns:
        int64 (n,): representative of doc_ids[i]; equal to doc_ids[i] for a document that is kept
        (a singleton or its cluster's lowest id). Memory O(n + m).
    """
    order, sorted_ids, _, at = _prepare(doc_ids, edges)
    # Positions in ascending id order: the lowest position is the lowest id.
    stars = normalized(at)
    for _ in range(MAX_ROUNDS):
        stars, large_changed = large_star(stars, 0, len(order))
        stars, small_changed = small_star(stars, 0, len(order))
        if not (large_changed or small_changed):
            break
    else:
        raise RuntimeError(f"star contraction did not converge in {MAX_ROUNDS} rounds")
    root = np.arange(len(order))
    root[stars[:, 1]] = stars[:, 0]
    representative = np.empty_like(sorted_ids)
    representative[order] = sorted_ids[root]
    return representative
