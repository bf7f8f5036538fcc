"""Shared real-text fixtures and a pure-Python reference of the `ngrams.v1` shingle hash."""

import random

import numpy as np
import pytest

from taggant.sketches.hashing import exact_hash, words
from taggant.sketches.ngrams import jaccard, ngram_sets
from tests.corpus import pinned_docs

_M64 = (1 << 64) - 1


def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _M64
    return h ^ (h >> 33)


def _word_hash(word: bytes) -> int:
    h = 0x243F6A8885A308D3
    full = len(word) - len(word) % 8
    for i in range(0, full, 8):
        h ^= int.from_bytes(word[i : i + 8], "little") * 0x87C37B91114253D5 & _M64
        h = (((h << 31) | (h >> 33)) & _M64) * 0x4CF5AD432745937F & _M64
    last = int.from_bytes(word[full:], "little") * 0x87C37B91114253D5 & _M64
    return _fmix64(h ^ last ^ len(word))


def _reference_shingles(text: str, ngram: int) -> list[int]:
    hashes = [_word_hash(w) for w in words(text)]
    grams = [hashes[i : i + ngram] for i in range(len(hashes) - ngram + 1)] or [hashes]
    out = []
    for gram in grams:
        g = 0x243F6A8885A308D3
        for w in gram:
            g = (g ^ w) * 0x9E3779B97F4A7C15 & _M64
        out.append(_fmix64(g))
    return out


@pytest.fixture(scope="session")
def reference_shingles():
    """f(text, ngram) -> the `ngrams.v1` shingle hashes of text in order, in pure Python ints."""
    return _reference_shingles


@pytest.fixture(scope="session")
def copyright_texts() -> list[str]:
    """The pinned Debian copyright files (``tests/data``), one per package, in package order.

    710 real licence notices, about half of them exact or near duplicates of another.
    """
    return [d["text"] for d in pinned_docs("copyright")]


def _edit(text: str, rate: float, rng: random.Random) -> str:
    """Word-level edits: each word is substituted (rate/2), deleted (rate/4) or followed by an
    inserted word (rate/4)."""
    out = []
    for word in text.split():
        r = rng.random()
        if r < rate / 2:
            out.append(f"x{rng.randrange(10**9)}")
        elif r < rate * 3 / 4:
            continue
        elif r < rate:
            out.extend((word, f"y{rng.randrange(10**9)}"))
        else:
            out.append(word)
    return " ".join(out)


@pytest.fixture(scope="session")
def edited_pairs(copyright_texts) -> tuple[list[str], list[str], np.ndarray]:
    """(originals, edited copies, exact 5-gram Jaccard of each pair): ~2k pairs of real licence
    text (distinct files of 1-8 kB) at edit rates from 0 to 30%, J spread over [0.2, 1]."""
    rng = random.Random(20240817)
    distinct = {exact_hash(t): t for t in copyright_texts if 1000 <= len(t) <= 8000}
    originals, edited = [], []
    for text in distinct.values():
        for rate in (0.0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.3):
            originals.append(text)
            edited.append(_edit(text, rate, rng))
    sets = ngram_sets(originals + edited)
    rows = np.arange(len(originals))
    return originals, edited, jaccard(sets, rows, rows + len(originals))
