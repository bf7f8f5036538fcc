"""LSH banding of MinHash signatures: band choice, band keys, candidate edges.

A signature of b * r slots is cut into b bands of r consecutive slots. Two documents become a
candidate pair when all r slots of at least one band agree. Each slot agrees with probability
J (their Jaccard similarity), so

    P(candidate | J) = 1 - (1 - J**r)**b

an S-curve with its steepest rise near J ~ (1 / b)**(1 / r). With 128 permutations:

    b x r     J=0.5   0.6   0.7   0.75   0.8   0.85   0.9
    18 x 7     0.13  0.40  0.79  0.92  0.986  1.00  1.00   (the default for threshold 0.8)
    16 x 8     0.06  0.24  0.61  0.82  0.947  0.99  1.00
     9 x 13    0.00  0.01  0.08  0.20  0.399  0.69  0.93   (datasketch's choice for 0.8)

Candidates are then verified (`components.verify_edges`), so false candidates cost time only.
Each bucket gives pairs among its first members and the rest (`bucket_pairs`), not a star.
"""

import numba
import numpy as np

# numba's on-disk cache does not notice edits to another module's functions; fmix64 is frozen
# with ngrams.v1, so the cached band-key kernel stays valid.
from taggant.sketches.ngrams import fmix64


def candidate_probability(jaccard, bands: int, rows: int):
    """P(candidate | J) = 1 - (1 - J**rows)**bands, elementwise over `jaccard` (float or array)."""
    return 1.0 - (1.0 - np.asarray(jaccard, dtype=np.float64) ** rows) ** bands


def choose_bands(
    threshold: float = 0.8, num_perm: int = 128, min_recall: float = 0.95
) -> tuple[int, int]:
    """The banding that catches pairs at `threshold` with `min_recall` and the fewest false ones.

    Takes the largest rows r (the sharpest S-curve, so the fewest candidates below the threshold)
    for which b = num_perm // r bands give candidate_probability(threshold, b, r) >= min_recall;
    every band that fits is used, since more bands only raise recall above the threshold.
    Defaults give (18, 7): 98.6% at J = 0.8 (16 x 8 gives 94.7%).

    Returns:
        (bands, rows) with bands * rows <= num_perm.
    """
    if not (0.0 < threshold <= 1.0 and 0.0 < min_recall < 1.0 and num_perm >= 1):
        raise ValueError(
            f"need 0 < threshold <= 1, 0 < min_recall < 1, num_perm >= 1; got "
            f"{threshold}, {min_recall}, {num_perm}"
        )
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if candidate_probability(threshold, bands, rows) >= min_recall:
            return bands, rows
    raise ValueError(
        f"no banding of {num_perm} permutations reaches recall {min_recall} at Jaccard {threshold}"
    )


@numba.njit(cache=True)
def _band_keys_kernel(signatures, bands, rows):
    out = np.empty((signatures.shape[0], bands), dtype=np.uint64)
    for d in range(signatures.shape[0]):
        for j in range(bands):
            # The band index seeds the hash, so equal slot values in different bands give
            # different keys and all bands can share one table. Each step is a bijection of h.
            h = np.uint64(j)
            for s in range(j * rows, (j + 1) * rows):
                h = fmix64(h ^ np.uint64(signatures[d, s]))
            out[d, j] = h
    return out


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per band: a hash of the band's `rows` slots and its index.

    Args:
        signatures: uint32 (n, num_perm) with num_perm >= bands * rows; slots beyond are unused.

    Returns:
        uint64 (n, bands). Equal band contents give equal keys; different ones collide with
        probability ~2**-64.
    """
    signatures = np.ascontiguousarray(signatures, dtype=np.uint32)
    if signatures.ndim != 2 or bands < 1 or rows < 1 or bands * rows > signatures.shape[1]:
        raise ValueError(
            f"{bands} x {rows} bands do not fit signatures of shape {signatures.shape}"
        )
    return _band_keys_kernel(signatures, bands, rows)


LEADERS = 8
"""Members per bucket paired with every other member (see `bucket_pairs`)."""


def bucket_pairs(
    keys: np.ndarray, doc_ids: np.ndarray, groups: np.ndarray, leaders: int = LEADERS
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs among rows of equal key (a bucket), with copies collapsed first.

    Inside a bucket, rows of equal `groups` value (e.g. equal exact hashes: copies of one text)
    are one member, its lowest doc id; the others come back as `copies` edges to it. Members are
    then paired, not starred to the bucket's lowest id: each of the `leaders` lowest members
    with every higher one, so a bucket of m members gives all m (m - 1) / 2 pairs up to
    m = leaders + 1 and fewer than leaders * m beyond. A star (leaders = 1) verified against
    exact Jaccard loses a true pair (a, b) whenever every bucket they share is led by a
    document similar to neither; here that needs both beyond the first `leaders` members of
    every shared bucket, and none of those leaders similar to both.

    Args:
        keys: uint64 (m,) bucket keys (all bands may share one array: band keys carry their
            band index).
        doc_ids: int64 (m,) doc ids; distinct within a bucket.
        groups: uint64 (m,) copy groups.
        leaders: >= 1.

    Returns:
        (copies, pairs): int64 (c, 2) and (p, 2) distinct edges (low, high), sorted.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    doc_ids = np.asarray(doc_ids, dtype=np.int64)
    groups = np.asarray(groups, dtype=np.uint64)
    if keys.ndim != 1 or doc_ids.shape != keys.shape or groups.shape != keys.shape:
        raise ValueError(f"keys {keys.shape}, doc_ids {doc_ids.shape}, groups {groups.shape}")
    if leaders < 1:
        raise ValueError(f"leaders must be >= 1, got {leaders}")
    order = np.lexsort((doc_ids, groups, keys))
    keys, doc_ids, groups = keys[order], doc_ids[order], groups[order]
    new_member = np.ones(len(keys), dtype=bool)
    new_member[1:] = (keys[1:] != keys[:-1]) | (groups[1:] != groups[:-1])
    # Sorted by (key, group, id): each member's first row holds its lowest id.
    member_id = doc_ids[np.flatnonzero(new_member)[np.cumsum(new_member) - 1]]
    copies = np.stack([member_id[~new_member], doc_ids[~new_member]], axis=1)

    keys, doc_ids = keys[new_member], doc_ids[new_member]
    order = np.lexsort((doc_ids, keys))
    keys, doc_ids = keys[order], doc_ids[order]
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = keys[1:] != keys[:-1]
    first = np.flatnonzero(starts)[np.cumsum(starts) - 1]
    rank = np.arange(len(keys)) - first
    pairs = [np.empty((0, 2), dtype=np.int64)]
    for i in range(leaders):
        later = rank > i
        if not later.any():
            break
        pairs.append(np.stack([doc_ids[first[later] + i], doc_ids[later]], axis=1))
    return _distinct(copies), _distinct(np.concatenate(pairs))


def _distinct(edges: np.ndarray) -> np.ndarray:
    return np.unique(edges.reshape(-1, 2), axis=0)


def candidate_pairs(keys: np.ndarray, doc_ids: np.ndarray, leaders: int = LEADERS) -> np.ndarray:
    """Candidate pairs of documents that share a band bucket (`bucket_pairs` on every band).

    Args:
        keys: uint64 (n, bands) from `band_keys`.
        doc_ids: int64 (n,) distinct ids of the rows of `keys`.

    Returns:
        int64 (m, 2) distinct edges (low, high) with low < high, sorted by (low, high).
    """
    keys = np.asarray(keys, dtype=np.uint64)
    doc_ids = np.asarray(doc_ids, dtype=np.int64)
    if keys.ndim != 2 or doc_ids.shape != (keys.shape[0],):
        raise ValueError(f"keys {keys.shape} and doc_ids {doc_ids.shape} do not match")
    rows = np.repeat(doc_ids, keys.shape[1])
    # Every row its own group: no copies.
    groups = np.arange(len(rows), dtype=np.uint64)
    return bucket_pairs(keys.reshape(-1), rows, groups, leaders)[1]
