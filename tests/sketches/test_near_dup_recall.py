"""End to end on Debian's copyright files: MinHash -> LSH -> exact verification -> components.

Ground truth: every unordered pair of files whose word 5-gram sets have exact Jaccard >= 0.8.
A pair is found when both files end in the same cluster (same representative).
recall = found true pairs / true pairs; precision = true pairs among same-cluster pairs.
"""

import numpy as np
import pytest

from taggant.sketches.components import connected_components, verify_edges
from taggant.sketches.hashing import exact_hashes
from taggant.sketches.lsh import band_keys, candidate_pairs, choose_bands
from taggant.sketches.minhash import jaccard_estimate, signatures
from taggant.sketches.ngrams import jaccard, ngram_sets

THRESHOLD = 0.8


@pytest.fixture(scope="module")
def corpus(copyright_texts):
    sets = ngram_sets(copyright_texts)
    left, right = np.triu_indices(len(copyright_texts), 1)
    return sets, left, right, jaccard(sets, left, right)


def _clusters(texts, sets):
    doc_ids = np.arange(len(texts), dtype=np.int64)
    bands, rows = choose_bands(THRESHOLD, 128)
    edges = candidate_pairs(band_keys(signatures(texts), bands, rows), doc_ids)
    return connected_components(doc_ids, verify_edges(edges, doc_ids, sets, THRESHOLD))


def test_pipeline_recall_and_precision(copyright_texts, corpus):
    sets, left, right, exact = corpus
    representative = _clusters(copyright_texts, sets)
    true = exact >= THRESHOLD
    near = true & (exact < 1.0)
    same = representative[left] == representative[right]
    assert true.sum() > 500 and near.sum() > 30  # the corpus has real work in it
    assert (same & true).sum() / true.sum() >= 0.95
    assert (same & near).sum() / near.sum() >= 0.9
    assert (same & true).sum() / same.sum() >= 0.98
    # Every cluster is keyed by its lowest member.
    assert np.all(representative <= np.arange(len(copyright_texts)))


def test_exact_duplicates_always_share_a_cluster(copyright_texts, corpus):
    sets, left, right, _ = corpus
    representative = _clusters(copyright_texts, sets)
    hashes = exact_hashes(copyright_texts)
    identical = np.all(hashes[left] == hashes[right], axis=1)
    assert identical.sum() > 100
    assert np.all(representative[left[identical]] == representative[right[identical]])


def test_estimate_error_on_natural_pairs(copyright_texts, corpus):
    _, left, right, exact = corpus
    sig = signatures(copyright_texts)
    related = exact >= 0.2
    error = jaccard_estimate(sig[left[related]], sig[right[related]]) - exact[related]
    assert np.sqrt(np.mean(error**2)) <= 0.05
