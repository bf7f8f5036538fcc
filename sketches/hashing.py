"""Text normalization and the exact document hash.

Normalization (shared by the exact hash, the n-gram shingles and MinHash):

1. Unicode NFKC (compatibility forms folded: "ﬁ" -> "fi", "™" -> "TM", no-break, en/em and
   ideographic spaces -> U+0020);
2. `str.lower()` (full Unicode lower-casing, not `casefold`: "ß" stays "ß");
3. UTF-8 encoding.

Words are the maximal runs of bytes of the normalized text that are not ASCII whitespace
(space, \\t, \\n, \\v, \\f, \\r): exactly `normalize(text).split()`. Other Unicode separators that
NFKC keeps (U+0085, U+1680, U+2028, U+2029) are part of words.

The exact hash is xxh3-128 of the normalized words joined by single spaces, so two documents
have the same exact hash iff they have the same word sequence.
"""

import unicodedata
from collections.abc import Iterator

import numba
import numpy as np
import xxhash

# Covers `normalize`, `words` and `exact_hash`; a shipped version never changes behaviour.
EXACT_HASH_VERSION = "exact.v1"

_BLOCK_CHARS = 4096
_ASCII = bytes(range(128))

IS_SPACE = np.zeros(256, dtype=np.bool_)
"""The word separators: a lookup table over byte values, for numba kernels."""
IS_SPACE[list(b" \t\n\v\f\r")] = True


def _line_blocks(text: str) -> Iterator[str]:
    """Consecutive blocks of whole lines, each about `_BLOCK_CHARS` long or more."""
    start = 0
    while start < len(text):
        stop = text.find("\n", start + _BLOCK_CHARS) + 1 or len(text)
        yield text[start:stop]
        start = stop


def _nfkc(text: str) -> str:
    if unicodedata.is_normalized("NFKC", text):
        return text
    # "\n" is a normalization boundary (a starter that never composes or reorders), so blocks
    # of whole lines normalize independently. Normalizing only the blocks that need it keeps
    # NFKC's slow path (~90 MB/s) to a few KB per file on real licence text (a "™", a "µ").
    return "".join(
        block if unicodedata.is_normalized("NFKC", block) else unicodedata.normalize("NFKC", block)
        for block in _line_blocks(text)
    )


def _lower_utf8(text: str, by_blocks: bool = True) -> bytes:
    """`text.lower().encode("utf-8")`, faster.

    str.lower() on a non-ASCII string runs ~10x slower than bytes.lower() on its UTF-8, and the
    two agree unless a non-ASCII character changes case (bytes.lower() folds A-Z only).
    Lower-casing maps each character on its own except a capital sigma (final or not), which
    changes either way: testing the non-ASCII characters alone is exact. Where some do change
    (an accented capital in a name), blocks of whole lines are lowered independently, which is
    exact too: the final-sigma context never reaches across a newline (neither cased nor
    case-ignorable).
    """
    data = text.encode("utf-8")
    others = data.translate(None, _ASCII).decode("utf-8")
    if others.lower() == others:
        return data.lower()
    if not by_blocks:
        return text.lower().encode("utf-8")
    return b"".join(_lower_utf8(block, by_blocks=False) for block in _line_blocks(text))


def normalize(text: str) -> bytes:
    """Normalizes `text` for hashing and shingling: NFKC, then lower-case, then UTF-8.

    Whitespace is kept as is (the word split makes runs of it irrelevant). Deterministic for a
    given Unicode database (Python 3.11 ships Unicode 14.0.0). Raises UnicodeEncodeError on lone
    surrogates, which are not text (ingest quarantines such records).
    """
    if text.isascii():  # ASCII is NFKC-stable: skip the Unicode scan.
        return text.lower().encode("ascii")
    return _lower_utf8(_nfkc(text))


def pack(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Normalizes and concatenates texts for the numba kernels.

    Returns:
        (buf, offsets): uint8 (total_bytes,) normalized UTF-8 and int64 (n + 1,) byte offsets;
        text i is buf[offsets[i]:offsets[i + 1]].
    """
    parts = [normalize(t) for t in texts]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return np.frombuffer(b"".join(parts), dtype=np.uint8), offsets


def words(text: str) -> list[bytes]:
    """The words of `text`: `normalize(text)` split on ASCII whitespace (see module docstring)."""
    return normalize(text).split()


def exact_hash(text: str) -> bytes:
    """xxh3-128 digest (16 bytes, big-endian) of the normalized words joined by single spaces.

    Equal for texts that differ only in case, compatibility forms or whitespace runs.
    """
    return xxhash.xxh3_128_digest(b" ".join(words(text)))


def exact_hashes(texts: list[str]) -> np.ndarray:
    """`exact_hash` of each text as an (n, 2) uint64 array of (high, low) 64-bit halves.

    Row order under lexicographic comparison equals the order of the 16-byte digests, so the
    array can be sorted or grouped with numpy (`np.unique(h, axis=0)`) or stored as two columns.
    """
    return exact_hashes_packed(*pack(texts))


@numba.njit(cache=True)
def _joined_words_kernel(buf, offsets):
    out = np.empty(buf.shape[0], dtype=np.uint8)
    out_offsets = np.zeros_like(offsets)
    pos = 0
    for d in range(offsets.shape[0] - 1):
        first = pos
        after_space = True  # drops leading whitespace
        # Branch-free: every byte is written (whitespace as one space) and the position moves
        # on unless it continues a whitespace run; a trailing space is taken back below.
        for i in range(offsets[d], offsets[d + 1]):
            space = IS_SPACE[buf[i]]
            out[pos] = 32 if space else buf[i]
            pos += not (space and after_space)
            after_space = space
        if pos > first and out[pos - 1] == 32:
            pos -= 1
        out_offsets[d + 1] = pos
    return out[:pos], out_offsets


def exact_hashes_packed(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """`exact_hashes` of texts already normalized and packed by `pack`: (n, 2) uint64.

    The words are joined by single spaces in one numba pass; only the xxh3 call is per text.
    """
    joined, at = _joined_words_kernel(buf, offsets)
    view = memoryview(joined)
    digests = b"".join(xxhash.xxh3_128_digest(view[at[i] : at[i + 1]]) for i in range(len(at) - 1))
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64).reshape(-1, 2)
