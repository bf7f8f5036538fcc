import numpy as np
import pytest
import xxhash

from taggant.sketches.hashing import exact_hashes
from taggant.sketches.minhash import (
    MINHASH_VERSION,
    agreements,
    jaccard_estimate,
    signatures,
    signatures_from_hashes,
    sketch,
)
from taggant.sketches.ngrams import ngram_hashes, ngram_sets


def _reference_signature(shingles: list[int], num_perm: int, seed: int) -> list[int]:
    """minhash.v1 written out from its docstring, in Python ints."""
    out = []
    for p in range(num_perm):
        a = xxhash.xxh3_64_intdigest(f"minhash.v1:a:{p}".encode(), seed) | 1
        b = xxhash.xxh3_64_intdigest(f"minhash.v1:b:{p}".encode(), seed)
        out.append(min(((a * x + b) & (2**64 - 1)) >> 32 for x in shingles))
    return out


def test_version():
    assert MINHASH_VERSION == "minhash.v1"


def test_signatures_match_python_reference(copyright_texts, reference_shingles):
    texts = [t[:3000] for t in copyright_texts[::97]] + ["", "tiny doc", "ünïcode wörds ﬁ ™ a b c"]
    for num_perm, ngram, seed in [(128, 5, 0), (16, 3, 2**64 - 1)]:
        got = signatures(texts, num_perm=num_perm, ngram=ngram, seed=seed)
        assert got.dtype == np.uint32 and got.shape == (len(texts), num_perm)
        for text, row in zip(texts, got, strict=True):
            assert row.tolist() == _reference_signature(
                reference_shingles(text, ngram), num_perm, seed
            )


def test_same_seed_same_signatures_other_seed_independent(copyright_texts):
    texts = copyright_texts[:100]
    first = signatures(texts, seed=7)
    assert np.array_equal(first, signatures(list(texts), seed=7))
    other = signatures(texts, seed=8)
    assert np.mean(first == other) < 0.01


def test_rows_do_not_depend_on_batching_or_num_perm(copyright_texts):
    # The whole corpus (~15 M characters) spans several internal batches.
    forward = signatures(copyright_texts)
    backward = signatures(copyright_texts[::-1])[::-1]
    assert np.array_equal(forward, backward)
    assert np.array_equal(forward[5:6], signatures(copyright_texts[5:6]))
    assert np.array_equal(forward[:, :64], signatures(copyright_texts, num_perm=64))


def test_sketch_gives_the_exact_hashes_and_signatures_of_one_normalization(copyright_texts):
    # Several internal batches; the last texts repeat earlier ones: a copy (its rows are the
    # first occurrence's) and variants in case and whitespace (sketched, to the same rows).
    repeats = [
        copyright_texts[0],
        copyright_texts[0].upper(),
        "\n".join(copyright_texts[1].split()),
    ]
    texts = copyright_texts + ["", " \n ", "Ünïcode ΣΑΣ ﬁ", *repeats]
    exact, sig = sketch(texts, num_perm=64, ngram=3, seed=5)
    assert np.array_equal(exact, exact_hashes(texts))
    assert np.array_equal(sig, signatures(texts, num_perm=64, ngram=3, seed=5))
    assert np.array_equal(sig[-3], sig[0]) and np.array_equal(sig[-2], sig[0])
    assert np.array_equal(exact[-1], exact[1])


def test_signatures_from_hashes_ignores_order_and_repeats(copyright_texts):
    texts = copyright_texts[:20]
    values, offsets = ngram_hashes(texts)
    sets = ngram_sets(texts)
    expected = signatures(texts)
    assert np.array_equal(signatures_from_hashes(values, offsets), expected)
    assert np.array_equal(signatures_from_hashes(sets.values, sets.offsets), expected)
    with pytest.raises(ValueError):
        signatures_from_hashes(values, np.array([0, 0, len(values)]))


def test_empty_and_short_documents():
    sig = signatures(["", " \n ", "Hello", "hello  ", "hello world"])
    assert np.array_equal(sig[0], sig[1]) and np.array_equal(sig[2], sig[3])
    assert jaccard_estimate(sig[0], sig[2]) < 0.05 and jaccard_estimate(sig[2], sig[4]) < 0.05
    assert signatures([]).shape == (0, 128)


def test_estimate_tracks_exact_jaccard_on_real_text(edited_pairs):
    originals, edited, exact = edited_pairs
    estimate = jaccard_estimate(signatures(originals), signatures(edited))
    error = estimate - exact
    middle = (exact > 0.3) & (exact < 0.9)
    assert exact.min() < 0.3 and middle.sum() > 500  # the pairs span the range
    # Theory for 128 permutations: sd = sqrt(J (1 - J) / 128) <= 0.044.
    assert np.sqrt(np.mean(error**2)) <= 0.05
    assert np.sqrt(np.mean(error[middle] ** 2)) <= 0.05
    assert abs(error.mean()) <= 0.01


def test_jaccard_estimate_shapes():
    a = np.array([1, 2, 3, 4], dtype=np.uint32)
    b = np.array([1, 2, 0, 0], dtype=np.uint32)
    assert jaccard_estimate(a, b) == 0.5 and isinstance(jaccard_estimate(a, b), float)
    rows = np.stack([a, b, a])
    assert jaccard_estimate(rows, rows[::-1]).tolist() == [1.0, 1.0, 1.0]
    assert jaccard_estimate(rows, a).tolist() == [1.0, 0.5, 1.0]
    with pytest.raises(ValueError):
        jaccard_estimate(a, a[:3])


def test_agreements_count_the_slots_jaccard_estimate_averages(copyright_texts):
    sigs = signatures(copyright_texts[:40])
    left, right = np.triu_indices(40, 1)
    counts = agreements(sigs, left, right)
    assert np.array_equal(counts / 128, jaccard_estimate(sigs[left], sigs[right]))
    assert counts.min() < 64 and counts.max() == 128  # the corpus has copies and unlike texts
    with pytest.raises(IndexError):
        agreements(sigs, np.array([0]), np.array([40]))
    with pytest.raises(ValueError):
        agreements(sigs, left, right[:-1])


def test_invalid_arguments():
    for kwargs in ({"num_perm": 0}, {"seed": -1}, {"seed": 2**64}, {"ngram": 0}):
        with pytest.raises(ValueError):
            signatures(["a"], **kwargs)
