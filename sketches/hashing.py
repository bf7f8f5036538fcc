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

import numpy as np
import xxhash

# Covers `normalize`, `words` and `exact_hash`; a shipped version never changes behaviour.
EXACT_HASH_VERSION = "exact.v1"

_NFKC_BLOCK_CHARS = 4096


def _nfkc(text: str) -> str:
    if unicodedata.is_normalized("NFKC", text):
        return text
    # "\n" is a normalization boundary (a starter that never composes or reorders), so blocks
    # of whole lines normalize independently. Normalizing only the blocks that need it keeps
    # NFKC's slow path (~90 MB/s) to a few KB per file on real licence text (a "™", a "µ").
    blocks = []
    start = 0
    while start < len(text):
        stop = text.find("\n", start + _NFKC_BLOCK_CHARS) + 1 or len(text)
        block = text[start:stop]
        blocks.append(
            block
            if unicodedata.is_normalized("NFKC", block)
            else unicodedata.normalize("NFKC", block)
        )
        start = stop
    return "".join(blocks)


def normalize(text: str) -> bytes:
    """Normalizes `text` for hashing and shingling: NFKC, then lower-case, then UTF-8.

    Whitespace is kept as is (the word split makes runs of it irrelevant). Deterministic for a
    given Unicode database (Python 3.11 ships Unicode 14.0.0). Raises UnicodeEncodeError on lone
    surrogates, which are not text (ingest quarantines such records).
    """
    if text.isascii():  # ASCII is NFKC-stable: skip the Unicode scan.
        return text.lower().encode("ascii")
    return _nfkc(text).lower().encode("utf-8")


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
    out = np.empty((len(texts), 2), dtype=np.uint64)
    for i, text in enumerate(texts):
        out[i] = np.frombuffer(exact_hash(text), dtype=">u8")
    return out
