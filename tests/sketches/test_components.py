import numpy as np
import pytest

from taggant.sketches.components import (
    MAX_ROUNDS,
    connected_components,
    large_star,
    normalized,
    small_star,
    verify_edges,
)
from taggant.sketches.ngrams import jaccard, ngram_sets


def _components_by_search(doc_ids, edges):
    """Lowest id of each document's component, by breadth-first search."""
    neighbours = {d: set() for d in doc_ids.tolist()}
    for a, b in edges.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    lowest = {}
    for start in neighbours:
        if start in lowest:
            continue
        seen, frontier = {start}, [start]
        while frontier:
            frontier = [n for d in frontier for n in neighbours[d] if n not in seen]
            seen.update(frontier)
        for d in seen:
            lowest[d] = min(seen)
    return np.array([lowest[d] for d in doc_ids.tolist()])


def test_keeps_lowest_id_of_each_cluster():
    doc_ids = np.array([42, 7, 19, 3, 88, 5])
    edges = np.array([[42, 19], [19, 88], [7, 5]])
    assert connected_components(doc_ids, edges).tolist() == [19, 5, 19, 3, 19, 5]


@pytest.mark.parametrize("seed", range(5))
def test_matches_graph_search_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    doc_ids = rng.choice(2 * 10**12, size=300, replace=False) - 10**12
    edges = doc_ids[rng.integers(0, 300, size=(250, 2))]
    expected = _components_by_search(doc_ids, edges)
    assert np.array_equal(connected_components(doc_ids, edges), expected)
    # Order and direction of edges do not matter.
    shuffled = rng.permutation(edges)[:, ::-1]
    assert np.array_equal(connected_components(doc_ids, shuffled), expected)


@pytest.mark.parametrize("seed", range(3))
def test_star_steps_on_node_ranges_match_one_range(seed):
    # How the dedup job runs them: each range sees only the edges that touch it.
    rng = np.random.default_rng(seed)
    n = 400
    edges = normalized(rng.integers(0, n, size=(300, 2)))
    bounds = [0, 37, 150, 151, 300, n]
    ranges = list(zip(bounds[:-1], bounds[1:], strict=True))

    def touching(e, low, high, ends):
        return e[np.any((e[:, ends] >= low) & (e[:, ends] < high), axis=1)]

    stars = edges
    for _ in range(MAX_ROUNDS):
        step = [large_star(touching(stars, a, b, [0, 1]), a, b) for a, b in ranges]
        stars = normalized(np.concatenate([e for e, _ in step]))
        step2 = [small_star(touching(stars, a, b, [1]), a, b) for a, b in ranges]
        stars = normalized(np.concatenate([e for e, _ in step2]))
        if not any(changed for _, changed in step + step2):
            break
    root = np.arange(n)
    root[stars[:, 1]] = stars[:, 0]
    assert len(np.unique(stars[:, 1])) == len(stars)  # a star: every leaf has one center
    assert np.array_equal(root, _components_by_search(np.arange(n), edges))


def test_without_edges_every_document_is_its_own_representative():
    doc_ids = np.array([3, 1, 2])
    assert connected_components(doc_ids, np.empty((0, 2), np.int64)).tolist() == [3, 1, 2]


def test_rejects_unknown_or_repeated_ids():
    with pytest.raises(ValueError):
        connected_components(np.array([1, 2]), np.array([[1, 3]]))
    with pytest.raises(ValueError):
        connected_components(np.array([1, 1]), np.empty((0, 2), np.int64))


def test_verify_edges_keeps_pairs_at_or_above_threshold(copyright_texts):
    texts = copyright_texts[:80]
    sets = ngram_sets(texts)
    doc_ids = np.arange(1000, 1080)[::-1].copy()  # row i is doc 1079 - i
    left, right = np.triu_indices(80, 1)
    similarity = jaccard(sets, left, right)
    assert 0 < np.sum(similarity >= 0.8) < len(left)
    edges = np.stack([doc_ids[left], doc_ids[right]], axis=1)
    kept = verify_edges(edges, doc_ids, sets, 0.8)
    assert np.array_equal(kept, edges[similarity >= 0.8])
    with pytest.raises(ValueError):
        verify_edges(edges, doc_ids[:-1], sets, 0.8)
