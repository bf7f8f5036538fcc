import numpy as np
import pytest

from taggant.sketches.components import connected_components, verify_edges
from taggant.sketches.lsh import (
    LEADERS,
    band_keys,
    bucket_pairs,
    candidate_pairs,
    candidate_probability,
    choose_bands,
)
from taggant.sketches.minhash import signatures
from taggant.sketches.ngrams import jaccard, ngram_sets


def test_default_banding_catches_95_percent_at_jaccard_0_8():
    bands, rows = choose_bands()
    assert (bands, rows) == (18, 7)
    assert candidate_probability(0.8, bands, rows) >= 0.95
    assert candidate_probability(0.8, 16, 8) < 0.95  # the next sharper banding falls short


@pytest.mark.parametrize(
    "threshold,num_perm,min_recall", [(0.7, 128, 0.9), (0.9, 256, 0.99), (0.5, 64, 0.8)]
)
def test_choose_bands_takes_the_most_rows_that_reach_the_recall(threshold, num_perm, min_recall):
    bands, rows = choose_bands(threshold, num_perm, min_recall)
    assert bands == num_perm // rows
    assert candidate_probability(threshold, bands, rows) >= min_recall
    assert candidate_probability(threshold, num_perm // (rows + 1), rows + 1) < min_recall


def test_choose_bands_rejects_unreachable_recall():
    with pytest.raises(ValueError):
        choose_bands(0.1, 4, 0.99)


def test_probability_matches_monte_carlo_of_agreeing_slots():
    # The formula's model: each slot agrees independently with probability J.
    rng = np.random.default_rng(0)
    for jac in (0.5, 0.7, 0.8, 0.9):
        agree = rng.random((20_000, 18, 7)) < jac
        simulated = agree.all(axis=2).any(axis=1).mean()
        assert abs(simulated - candidate_probability(jac, 18, 7)) < 0.015


def test_probability_matches_real_signatures(edited_pairs):
    originals, edited, exact = edited_pairs
    bands, rows = 16, 8
    collide = (
        band_keys(signatures(originals), bands, rows) == band_keys(signatures(edited), bands, rows)
    ).any(axis=1)
    predicted = candidate_probability(exact, bands, rows)
    for low, high in [(0.3, 0.55), (0.55, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)]:
        inside = (exact >= low) & (exact < high)
        assert inside.sum() >= 50
        sd = np.sqrt(np.sum(predicted[inside] * (1 - predicted[inside]))) / inside.sum()
        assert abs(collide[inside].mean() - predicted[inside].mean()) <= 4 * sd + 0.02


def test_band_keys_hash_band_contents_and_index():
    sig = np.array(
        [[1, 2, 3, 4, 9], [1, 2, 5, 6, 9], [3, 4, 1, 2, 0], [1, 2, 3, 4, 7]], dtype=np.uint32
    )
    keys = band_keys(sig, bands=2, rows=2)
    assert keys.shape == (4, 2) and keys.dtype == np.uint64
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] != keys[1, 1]
    assert np.array_equal(keys[0], keys[3])  # slot 4 is outside the bands
    assert keys[0, 0] != keys[2, 1]  # same values (1, 2) in another band
    with pytest.raises(ValueError):
        band_keys(sig, bands=3, rows=2)


def _bucket_pairs_by_enumeration(keys, doc_ids, groups, leaders):
    copies, pairs = set(), set()
    for key in np.unique(keys):
        inside = keys == key
        members = {}
        rows = zip(doc_ids[inside].tolist(), groups[inside].tolist(), strict=True)
        for doc, group in sorted(rows):
            if group in members:
                copies.add((members[group], doc))
            else:
                members[group] = doc
        heads = sorted(members.values())
        pairs |= {
            (heads[i], heads[j])
            for i in range(min(leaders, len(heads)))
            for j in range(i + 1, len(heads))
        }
    return sorted(copies), sorted(pairs)


@pytest.mark.parametrize("leaders", [1, 3, 100])
def test_bucket_pairs_collapse_copies_then_pair_the_first_members_with_all(leaders):
    rng = np.random.default_rng(leaders)
    keys = rng.integers(0, 8, size=300).astype(np.uint64)  # small key range: big buckets
    doc_ids = rng.permutation(10_000)[:300].astype(np.int64) - 5000
    groups = rng.integers(0, 40, size=300).astype(np.uint64)
    copies, pairs = bucket_pairs(keys, doc_ids, groups, leaders)
    expected_copies, expected_pairs = _bucket_pairs_by_enumeration(keys, doc_ids, groups, leaders)
    assert copies.dtype == pairs.dtype == np.int64
    assert [tuple(e) for e in copies.tolist()] == expected_copies
    assert [tuple(e) for e in pairs.tolist()] == expected_pairs


def test_a_true_pair_in_a_bucket_led_by_a_dissimilar_document_is_found(copyright_texts):
    # Hand-built bucket {0, 1, 2}: document 0 leads it and resembles neither 1 nor 2, which are
    # one text with a few words changed (Jaccard >= 0.8). A star (each member to the bucket's
    # lowest document) offers only (0, 1) and (0, 2), both rejected: the pair was lost.
    base = max(copyright_texts, key=len)[:6000]
    words = base.split()
    edited = " ".join(w if i % 97 else "changed" for i, w in enumerate(words))
    texts = [copyright_texts[0], base, edited]
    doc_ids = np.arange(3)
    sets = ngram_sets(texts)
    similarity = jaccard(sets, [0, 0, 1], [1, 2, 2])
    assert similarity[0] < 0.8 and similarity[1] < 0.8 and similarity[2] >= 0.8
    keys = np.full(3, 7, dtype=np.uint64)

    def clusters(leaders):
        _, pairs = bucket_pairs(keys, doc_ids, doc_ids.astype(np.uint64), leaders)
        return connected_components(doc_ids, verify_edges(pairs, doc_ids, sets, 0.8)).tolist()

    assert clusters(leaders=1) == [0, 1, 2]  # the star: 1 and 2 stay apart
    assert clusters(leaders=LEADERS) == [0, 1, 1]


def test_candidate_pairs_pair_documents_that_share_any_band():
    keys = np.array([[1, 2], [1, 3], [4, 3], [5, 6]], dtype=np.uint64)
    doc_ids = np.array([10, 20, 30, 40])
    assert candidate_pairs(keys, doc_ids).tolist() == [[10, 20], [20, 30]]


def test_candidate_pairs_without_collisions():
    keys = np.arange(12, dtype=np.uint64).reshape(4, 3)
    assert candidate_pairs(keys, np.arange(4)).shape == (0, 2)
    assert candidate_pairs(np.empty((0, 3), np.uint64), np.empty(0, np.int64)).shape == (0, 2)
