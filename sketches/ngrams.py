"""Word n-gram shingles as 64-bit hashes, and n-gram sets with their overlaps.

Shingles are hashed straight from the normalized UTF-8 bytes in one numba pass (no Python
object per word or per n-gram). The hash is defined here once; `minhash`, dedup verification
and decontamination all use it.

Definition (version `ngrams.v1`; a shipped definition never changes):

* words: `hashing.words(text)` (normalized text split on ASCII whitespace);
* word hash: h = G0; for each full 8-byte chunk c of the word's bytes, read little-endian,
  h = rotl64(h ^ (c * C1), 31) * C2; then word = fmix64(h ^ (r * C1) ^ len(word)), where r is
  the remaining len(word) % 8 bytes read little-endian (0 when there are none);
* n-gram hash: g = G0; for each of its words g = (g ^ word) * K; then shingle = fmix64(g);
* a document with fewer than `ngram` words (including none) has exactly one shingle: the
  n-gram hash of all its words. So every document has at least one shingle, and an empty
  document's single shingle is fmix64(G0).

All arithmetic is modulo 2**64; fmix64 is MurmurHash3's 64-bit finalizer.
"""

from dataclasses import dataclass

import numba
import numpy as np

from taggant.sketches.hashing import IS_SPACE, pack

NGRAMS_VERSION = "ngrams.v1"

_G0 = np.uint64(0x243F6A8885A308D3)  # pi: seed of word and n-gram hashes
_K = np.uint64(0x9E3779B97F4A7C15)  # golden ratio: n-gram combine multiplier
_C1 = np.uint64(0x87C37B91114253D5)  # MurmurHash3 x64 chunk constants
_C2 = np.uint64(0x4CF5AD432745937F)
_F1 = np.uint64(0xFF51AFD7ED558CCD)  # fmix64 constants
_F2 = np.uint64(0xC4CEB9FE1A85EC53)


@dataclass(frozen=True)
class NgramSets:
    """Per-document sets of n-gram hashes in CSR form.

    Attributes:
        values: uint64 (total,), each document's distinct hashes sorted ascending.
        offsets: int64 (n + 1,), document i owns values[offsets[i]:offsets[i + 1]]; every
            document has at least one value.
    """

    values: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def sizes(self) -> np.ndarray:
        """int64 (n,): number of distinct n-grams of each document."""
        return np.diff(self.offsets)

    def doc(self, i: int) -> np.ndarray:
        """uint64 sorted distinct n-gram hashes of document i (a view)."""
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __getitem__(self, rows: np.ndarray) -> "NgramSets":
        """The sets of documents ``rows`` (integer indices), in that order, as rows of a
        signature array are indexed."""
        rows = np.asarray(rows, dtype=np.int64)
        sizes = self.sizes()[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        starts = np.repeat(self.offsets[rows] - offsets[:-1], sizes)
        return NgramSets(self.values[starts + np.arange(offsets[-1])], offsets)

    @staticmethod
    def concat(parts: "list[NgramSets]") -> "NgramSets":
        """The sets of ``parts``' documents, one part after the other."""
        offsets, total = [np.zeros(1, dtype=np.int64)], 0
        for part in parts:
            offsets.append(part.offsets[1:] - part.offsets[0] + total)
            total += part.offsets[-1] - part.offsets[0]
        values = [p.values[p.offsets[0] : p.offsets[-1]] for p in parts]
        return NgramSets(np.concatenate([np.empty(0, np.uint64), *values]), np.concatenate(offsets))


@numba.njit(inline="always")
def fmix64(h):
    """MurmurHash3's 64-bit finalizer: a bijection of uint64 with full avalanche.

    Callable from numba kernels and from Python on a uint64 scalar or array (never modifies its
    argument: no augmented assignments, which numba applies in place to arrays).
    """
    h = h ^ (h >> np.uint64(33))
    h = h * _F1
    h = h ^ (h >> np.uint64(33))
    h = h * _F2
    return h ^ (h >> np.uint64(33))


@numba.njit(inline="always")
def _rotl31(x):
    return (x << np.uint64(31)) | (x >> np.uint64(33))


@numba.njit(cache=True)
def _word_hashes(buf, start, end, words):
    """Writes the hashes of the words of buf[start:end] to `words`; returns their count."""
    count = 0
    i = start
    while True:
        while i < end and IS_SPACE[buf[i]]:
            i += 1
        if i >= end:
            return count
        h = _G0
        chunk = np.uint64(0)
        shift = np.uint64(0)
        length = 0
        while i < end and not IS_SPACE[buf[i]]:
            chunk |= np.uint64(buf[i]) << shift
            shift += np.uint64(8)
            length += 1
            i += 1
            if shift == np.uint64(64):
                h = _rotl31(h ^ (chunk * _C1)) * _C2
                chunk = np.uint64(0)
                shift = np.uint64(0)
        # Finalized in the caller's branch-free loop: keeps the multiply chain off this
        # branchy, mispredicting byte scan.
        words[count] = h ^ (chunk * _C1) ^ np.uint64(length)
        count += 1


@numba.njit(cache=True)
def _doc_ngram_hashes(buf, start, end, ngram, words, out):
    """Writes the shingle hashes of one document to `out` in text order; returns their count.

    `words` and `out` need room for (end - start) // 2 + 2 values: a word takes at least one
    byte plus one separator.
    """
    nwords = _word_hashes(buf, start, end, words)
    for i in range(nwords):
        words[i] = fmix64(words[i])
    width = min(ngram, nwords)
    count = max(nwords - ngram + 1, 1)
    for i in range(count):
        g = _G0
        for k in range(i, i + width):
            g = (g ^ words[k]) * _K
        out[i] = fmix64(g)
    return count


@numba.njit(cache=True)
def _hashes_kernel(buf, offsets, ngram, distinct):
    n = offsets.shape[0] - 1
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    values = np.empty(buf.shape[0] // 8 + 2 * n, dtype=np.uint64)
    words = np.empty(0, dtype=np.uint64)
    pos = 0
    for d in range(n):
        room = (offsets[d + 1] - offsets[d]) // 2 + 2
        if words.shape[0] < room:
            words = np.empty(room, dtype=np.uint64)
        if values.shape[0] < pos + room:
            grown = np.empty(max(2 * values.shape[0], pos + room), dtype=np.uint64)
            grown[:pos] = values[:pos]
            values = grown
        doc = values[pos : pos + room]
        count = _doc_ngram_hashes(buf, offsets[d], offsets[d + 1], ngram, words, doc)
        if distinct:
            doc[:count].sort()
            kept = 1
            for i in range(1, count):
                if doc[i] != doc[kept - 1]:
                    doc[kept] = doc[i]
                    kept += 1
            count = kept
        pos += count
        out_offsets[d + 1] = pos
    return values[:pos].copy(), out_offsets


def _check_ngram(ngram: int) -> None:
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")


def ngram_hashes(texts: list[str], ngram: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Every shingle hash of every text, in text order, repeats kept (the MinHash input).

    Returns:
        (values, offsets): uint64 (total,) and int64 (n + 1,); text i's shingles are
        values[offsets[i]:offsets[i + 1]], at least one per text. Deterministic.
    """
    return ngram_hashes_packed(*pack(texts), ngram)


def ngram_hashes_packed(buf: np.ndarray, offsets: np.ndarray, ngram: int = 5):
    """`ngram_hashes` of texts already normalized and packed by `hashing.pack`."""
    _check_ngram(ngram)
    return _hashes_kernel(buf, offsets, ngram, False)


def ngram_sets(texts: list[str], ngram: int = 5) -> NgramSets:
    """Each text's set of distinct shingle hashes (for verification and decontamination)."""
    _check_ngram(ngram)
    return NgramSets(*_hashes_kernel(*pack(texts), ngram, True))


@numba.njit(cache=True)
def _jaccard_kernel(values, offsets, left, right):
    out = np.empty(left.shape[0], dtype=np.float64)
    for p in range(left.shape[0]):
        i, i_end = offsets[left[p]], offsets[left[p] + 1]
        j, j_end = offsets[right[p]], offsets[right[p] + 1]
        union = (i_end - i) + (j_end - j)
        shared = 0
        while i < i_end and j < j_end:
            a, b = values[i], values[j]
            shared += a == b
            i += a <= b
            j += b <= a
        out[p] = shared / (union - shared)
    return out


def jaccard(sets: NgramSets, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Exact Jaccard |A & B| / |A | B| of document pairs (sets[left[k]], sets[right[k]]).

    Args:
        sets: n-gram sets; every set is non-empty, so the ratio is always defined.
        left, right: integer (m,) row indices into `sets`.

    Returns:
        float64 (m,) in [0, 1].
    """
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    if left.shape != right.shape or left.ndim != 1:
        raise ValueError(
            f"left and right must be 1-D of equal length, got {left.shape}, {right.shape}"
        )
    for rows in (left, right):
        if rows.size and (rows.min() < 0 or rows.max() >= len(sets)):
            raise IndexError(f"row index out of range for {len(sets)} sets")
    return _jaccard_kernel(sets.values, sets.offsets, left, right)


def count_shared(sets: NgramSets, reference: np.ndarray) -> np.ndarray:
    """For each document, how many of its distinct n-grams occur in `reference`.

    Decontamination: with `reference = np.unique(items.values)` (the n-grams of the items),
    a corpus document with count > 0 shares at least one n-gram with some item; divide by
    `sets.sizes()` for the overlap fraction.

    Args:
        sets: n-gram sets of the documents to test.
        reference: uint64 (k,) sorted distinct hashes, built with the same `ngram`.

    Returns:
        int64 (n,).
    """
    if len(reference) == 0:
        return np.zeros(len(sets), dtype=np.int64)
    at = np.minimum(np.searchsorted(reference, sets.values), len(reference) - 1)
    hit = (reference[at] == sets.values).astype(np.int64)
    return np.add.reduceat(hit, sets.offsets[:-1])
