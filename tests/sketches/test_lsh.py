import numpy as np
import pytest

from taggant.sketches.lsh import band_keys, candidate_pairs, candidate_probability, choose_bands
from taggant.sketches.minhash import signatures


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


def test_candidate_pairs_are_star_edges_to_each_bucket_minimum():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 6, size=(40, 3)).astype(np.uint64)  # small key range: big buckets
    doc_ids = rng.permutation(1000)[:40].astype(np.int64) - 500
    expected = set()
    for band in keys.T:
        for key in np.unique(band):
            bucket = sorted(doc_ids[band == key].tolist())
            expected |= {(bucket[0], other) for other in bucket[1:]}
    edges = candidate_pairs(keys, doc_ids)
    assert edges.dtype == np.int64 and edges.shape[1] == 2
    assert [tuple(e) for e in edges.tolist()] == sorted(expected)


def test_candidate_pairs_without_collisions():
    keys = np.arange(12, dtype=np.uint64).reshape(4, 3)
    assert candidate_pairs(keys, np.arange(4)).shape == (0, 2)
    assert candidate_pairs(np.empty((0, 3), np.uint64), np.empty(0, np.int64)).shape == (0, 2)
