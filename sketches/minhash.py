"""MinHash signatures of word n-gram shingles (version `minhash.v1`).

Definition (a shipped version never changes behaviour; change it only under a new version):

* shingles: `ngrams.ngram_hashes(texts, ngram)` (normalized words, `ngram`-word shingles, a
  document with fewer words has one shingle of all of them, see `sketches.ngrams`);
* permutation p in [0, num_perm): pi_p(x) = ((a_p * x + b_p) mod 2**64) >> 32, a 32-bit
  multiply-add-shift hash of the 64-bit shingle hash x, with
  a_p = xxh3_64(b"minhash.v1:a:<p>", seed) | 1 and b_p = xxh3_64(b"minhash.v1:b:<p>", seed);
* signature[p] = min over the document's shingles of pi_p(shingle), as uint32.

The first k permutations do not depend on num_perm, so a 64-perm signature is the prefix of the
128-perm one. 32-bit slots are enough: two different shingle minima collide with probability
~2**-32 per slot, far below the estimator's sampling error.
"""

from collections.abc import Iterator

import numba
import numpy as np
import xxhash

from taggant.sketches.hashing import exact_hashes_packed, pack
from taggant.sketches.ngrams import ngram_hashes_packed

MINHASH_VERSION = "minhash.v1"

# Texts are hashed in batches of about this many characters: bounds the shingle buffers and
# reuses warm memory (measured 10-30% faster than hashing 40 MB in one batch).
_BATCH_CHARS = 1 << 22


def permutations(num_perm: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The multipliers and offsets (a, b) of the `num_perm` permutations of `seed`.

    Returns:
        Two uint64 (num_perm,) arrays; every a is odd. Depends only on (p, seed), never on the
        numpy version or platform.
    """
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    a = [
        xxhash.xxh3_64_intdigest(b"%s:a:%d" % (MINHASH_VERSION.encode(), p), seed) | 1
        for p in range(num_perm)
    ]
    b = [
        xxhash.xxh3_64_intdigest(b"%s:b:%d" % (MINHASH_VERSION.encode(), p), seed)
        for p in range(num_perm)
    ]
    return np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64)


@numba.njit(cache=True)
def _signatures_kernel(values, offsets, a, b):
    n = offsets.shape[0] - 1
    out = np.empty((n, a.shape[0]), dtype=np.uint32)
    for d in range(n):
        shingles = values[offsets[d] : offsets[d + 1]]
        # Permutation-outer: the inner loop is a branch-free min-reduction over a contiguous
        # slice, which LLVM vectorizes (an iterator loop, `for x in shingles`, is 3x slower).
        for p in range(a.shape[0]):
            ap, bp = a[p], b[p]
            low = np.uint64(0xFFFFFFFF)
            for i in range(shingles.shape[0]):
                low = min(low, (shingles[i] * ap + bp) >> np.uint64(32))
            out[d, p] = low
    return out


def signatures_from_hashes(
    values: np.ndarray, offsets: np.ndarray, num_perm: int = 128, seed: int = 0
) -> np.ndarray:
    """MinHash signatures of shingle hashes given in CSR form.

    Args:
        values: uint64 (total,) shingle hashes, e.g. from `ngram_hashes` or `NgramSets.values`
            (order and repeats do not matter).
        offsets: int64 (n + 1,); document i's shingles are values[offsets[i]:offsets[i + 1]],
            at least one each.

    Returns:
        uint32 (n, num_perm). Deterministic in (values, offsets, num_perm, seed).
    """
    a, b = permutations(num_perm, seed)
    values = np.ascontiguousarray(values, dtype=np.uint64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    # The kernel does not bounds-check: validate the CSR layout here.
    if (
        offsets.size == 0
        or offsets[0] < 0
        or offsets[-1] > len(values)
        or np.any(np.diff(offsets) < 1)
    ):
        raise ValueError("offsets must be n + 1 strictly increasing indices into values")
    return _signatures_kernel(values, offsets, a, b)


def signatures(texts: list[str], num_perm: int = 128, ngram: int = 5, seed: int = 0) -> np.ndarray:
    """MinHash signatures of texts (`minhash.v1`, see the module docstring).

    Args:
        texts: documents; any str, including empty ones (one shingle of no words).
        num_perm: signature length.
        ngram: words per shingle.
        seed: permutation seed in [0, 2**64); different seeds give independent signatures.

    Returns:
        uint32 (len(texts), num_perm). Row i depends only on texts[i] and the arguments, never
        on the batch it was computed in.
    """
    a, b = permutations(num_perm, seed)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    for start, stop in _batches(texts):
        out[start:stop] = _signatures_kernel(
            *ngram_hashes_packed(*pack(texts[start:stop]), ngram), a, b
        )
    return out


def sketch(
    texts: list[str], num_perm: int = 128, ngram: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`hashing.exact_hashes` and `signatures` of texts from one normalization of each text.

    Each distinct text is sketched once: a repeat (byte-identical copies are common in real
    corpora: 39% of the bytes of Debian's copyright and changelog files) gets the rows of its
    first occurrence.

    Returns:
        (uint64 (n, 2) exact hashes, uint32 (n, num_perm) signatures), equal to the two
        functions' results.
    """
    first: dict[str, int] = {}
    source = np.array([first.setdefault(t, i) for i, t in enumerate(texts)], dtype=np.int64)
    distinct = list(first)  # in order of first occurrence
    a, b = permutations(num_perm, seed)
    exact = np.empty((len(distinct), 2), dtype=np.uint64)
    out = np.empty((len(distinct), num_perm), dtype=np.uint32)
    for start, stop in _batches(distinct):
        packed = pack(distinct[start:stop])
        exact[start:stop] = exact_hashes_packed(*packed)
        out[start:stop] = _signatures_kernel(*ngram_hashes_packed(*packed, ngram), a, b)
    at = (np.cumsum(source == np.arange(len(texts))) - 1)[source]  # each text's distinct row
    return exact[at], out[at]


def _batches(texts: list[str]) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive runs of texts of about `_BATCH_CHARS` characters each."""
    start, chars = 0, 0
    for stop, text in enumerate(texts, 1):
        chars += len(text)
        if chars >= _BATCH_CHARS or stop == len(texts):
            yield start, stop
            start, chars = stop, 0


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Estimated Jaccard: the fraction of equal slots of two signatures (same num_perm, seed).

    Works on a pair of 1-D signatures (returns a float) or row-wise on (n, num_perm) arrays,
    with numpy broadcasting (one signature against many rows). Standard error is
    sqrt(J (1 - J) / num_perm): 0.044 at J = 0.5 with 128 permutations.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"signature lengths differ: {a.shape[-1]} vs {b.shape[-1]}")
    estimate = np.mean(a == b, axis=-1)
    return float(estimate) if estimate.ndim == 0 else estimate


@numba.njit(cache=True)
def _agreements_kernel(signatures, left, right):
    out = np.empty(left.shape[0], dtype=np.int64)
    for k in range(left.shape[0]):
        a, b = signatures[left[k]], signatures[right[k]]
        equal = 0
        for p in range(a.shape[0]):
            equal += a[p] == b[p]
        out[k] = equal
    return out


def agreements(signatures: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """How many slots the signatures of each pair (left[k], right[k]) share: int64 (m,).

    Under MinHash each slot agrees with probability J, independently across slots, so the count
    is Binomial(num_perm, J); `jaccard_estimate` is the same count over num_perm. Unlike it,
    this never gathers the pairs' signatures into new arrays.

    Args:
        signatures: uint32 (n, num_perm).
        left, right: integer (m,) row indices into `signatures`.
    """
    signatures = np.ascontiguousarray(signatures, dtype=np.uint32)
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    if signatures.ndim != 2 or left.shape != right.shape or left.ndim != 1:
        raise ValueError(
            f"signatures {signatures.shape}, left {left.shape}, right {right.shape}: need "
            "(n, num_perm) and two equal (m,)"
        )
    for rows in (left, right):
        if rows.size and (rows.min() < 0 or rows.max() >= len(signatures)):
            raise IndexError(f"row index out of range for {len(signatures)} signatures")
    return _agreements_kernel(signatures, left, right)
