import numpy as np
import pytest

from taggant.sketches.ngrams import count_shared, fmix64, jaccard, ngram_hashes, ngram_sets


def test_hashes_match_python_reference(copyright_texts, reference_shingles):
    # One-letter words give more shingles than bytes / 8: the kernel's buffer has to grow.
    letters = " ".join("abcdefghij"[i % 10] for i in range(3000))
    texts = copyright_texts[:40] + [
        "",
        "one",
        "two words",
        "a b c d e",
        "ü" * 20 + " " + "x" * 17,
        letters,
    ]
    for ngram in (1, 3, 5):
        values, offsets = ngram_hashes(texts, ngram)
        assert values.dtype == np.uint64 and offsets.dtype == np.int64
        for i, text in enumerate(texts):
            assert values[offsets[i] : offsets[i + 1]].tolist() == reference_shingles(text, ngram)


def test_short_and_empty_documents_have_one_shingle_of_all_their_words():
    values, offsets = ngram_hashes(["", "   ", "a b", "A  b", "a b c d", "a b c d e"], 5)
    assert np.diff(offsets).tolist() == [1, 1, 1, 1, 1, 1]
    empty, blank, ab, ab_upper, abcd, abcde = values
    assert empty == blank and ab == ab_upper
    assert len({empty, ab, abcd, abcde}) == 4


def test_shingles_see_words_not_whitespace_or_case():
    values, offsets = ngram_hashes(
        ["The quick brown fox jumps over", "the\nQUICK  brown\tfox jumps over "]
    )
    assert values[offsets[0] : offsets[1]].tolist() == values[offsets[1] : offsets[2]].tolist()


def test_sets_are_sorted_distinct_hashes(reference_shingles):
    text = "to be or not to be , to be or not to be , that is it"
    sets = ngram_sets([text, ""], ngram=3)
    assert len(sets) == 2 and sets.sizes().tolist() == [len(set(reference_shingles(text, 3))), 1]
    assert sets.doc(0).tolist() == sorted(set(reference_shingles(text, 3)))


def test_jaccard_matches_python_sets_of_word_tuples(copyright_texts):
    texts = copyright_texts[:60]
    sets = ngram_sets(texts)
    tuples = []
    for text in texts:
        w = text.lower().split()  # these files are NFKC-stable ASCII/Latin text
        tuples.append({tuple(w[i : i + 5]) for i in range(len(w) - 4)} or {tuple(w)})
    left, right = np.triu_indices(len(texts), 1)
    expected = [
        len(tuples[i] & tuples[j]) / len(tuples[i] | tuples[j])
        for i, j in zip(left, right, strict=True)
    ]
    np.testing.assert_allclose(jaccard(sets, left, right), expected, rtol=0, atol=1e-12)
    assert jaccard(sets, [3], [3]).tolist() == [1.0]
    with pytest.raises(IndexError):
        jaccard(sets, [0], [len(texts)])


def test_count_shared_finds_contaminated_documents(copyright_texts):
    items = ["The quick brown fox jumps over the lazy dog near the river bank today"]
    corpus = copyright_texts[:30] + [
        "preamble text. the quick brown fox jumps over the lazy dog, and more.",
        "nothing to see here at all, move along please",
    ]
    reference = np.unique(ngram_sets(items, ngram=8).values)
    counts = count_shared(ngram_sets(corpus, ngram=8), reference)
    # Only "the quick brown fox jumps over the lazy" survives the punctuation: 1 shared 8-gram.
    assert counts.tolist() == [0] * 30 + [1, 0]
    assert count_shared(ngram_sets(corpus[:2]), np.empty(0, np.uint64)).tolist() == [0, 0]


def test_ngram_must_be_positive():
    with pytest.raises(ValueError):
        ngram_hashes(["a"], 0)


def test_fmix64_is_pure_on_arrays(reference_shingles):
    x = np.array([[1, 2], [3, 2**64 - 1]], dtype=np.uint64)
    column = x[:, 1]
    mixed = fmix64(column)
    assert x.tolist() == [[1, 2], [3, 2**64 - 1]]
    # The empty document's single shingle is fmix64(G0), computed by the Python reference.
    assert fmix64(np.uint64(0x243F6A8885A308D3)) == reference_shingles("", 5)[0]
    assert mixed.tolist() == [int(fmix64(np.uint64(2))), int(fmix64(np.uint64(2**64 - 1)))]


def test_sets_indexing_and_concat_keep_each_documents_set(copyright_texts):
    sets = ngram_sets(copyright_texts[:30])
    rows = np.array([7, 0, 29, 7])
    taken = sets[rows]
    assert [taken.doc(i).tolist() for i in range(4)] == [sets.doc(r).tolist() for r in rows]
    joined = type(sets).concat([sets[rows[:2]], sets[[]], sets[rows[2:]]])
    assert np.array_equal(joined.values, taken.values)
    assert np.array_equal(joined.offsets, taken.offsets)
