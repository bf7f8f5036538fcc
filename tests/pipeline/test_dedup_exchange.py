"""The dedup stage's partition steps without Ray, on small arrays and files, each against an
answer worked out by hand (or, for star contraction, by a breadth-first search)."""

from collections import deque
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from taggant.pipeline import io
from taggant.pipeline.dedup import DedupParams, sketch_shard
from taggant.pipeline.dedup_exchange import (
    Finished,
    Package,
    Screening,
    bucket_partition,
    by_either_end,
    by_high_end,
    distinct_rows,
    finish,
    large_star,
    local_sets,
    local_signatures,
    node_bounds,
    partition_of,
    requests_for,
    screen,
    send,
    small_star,
    verify,
)
from taggant.pipeline.perturb.rng import generator
from taggant.pipeline.spec import DedupSpec
from taggant.sketches import minhash, ngrams
from taggant.sketches.ngrams import NgramSets

BOUNDS = np.array([0, 3, 5, 9])  # node partitions {0, 1, 2}, {3, 4}, {5, ..., 8}
PARAMS = DedupParams.from_spec(DedupSpec())


def rows(a) -> list[list[int]]:
    return np.asarray(a).reshape(-1, 2).tolist()


def test_node_bounds_are_runs_of_whole_shards_up_to_the_partition_size():
    offsets = np.array([0, 3, 5, 9, 10])  # shards of 3, 2, 4 and 1 documents
    assert node_bounds(offsets, 4).tolist() == [0, 3, 5, 9, 10]
    assert node_bounds(offsets, 5).tolist() == [0, 5, 10]
    assert node_bounds(offsets, 100).tolist() == [0, 10]
    # A shard larger than the partition size is a partition of its own.
    assert node_bounds(np.array([0, 10, 12]), 4).tolist() == [0, 10, 12]


def test_documents_and_edges_go_to_the_partitions_that_hold_their_ends():
    assert partition_of(np.array([0, 2, 3, 4, 5, 8]), BOUNDS).tolist() == [0, 0, 1, 1, 2, 2]
    edges = np.array([[0, 1], [1, 4], [2, 8], [3, 4], [4, 5]])
    assert [rows(e) for e in by_high_end(edges, BOUNDS)] == [
        [[0, 1]],
        [[1, 4], [3, 4]],
        [[2, 8], [4, 5]],
    ]
    assert [rows(e) for e in by_either_end(edges, BOUNDS)] == [
        [[0, 1], [1, 4], [2, 8]],
        [[1, 4], [3, 4], [4, 5]],
        [[2, 8], [4, 5]],
    ]


def test_both_ends_of_an_edge_are_requested_by_the_partition_of_its_high_end():
    # (1, 4) is settled by partition 1, (2, 8) by partition 2; 1 and 2 live in 0, 4 in 1, 8 in 2.
    requests = requests_for(np.array([[1, 4], [2, 8]]), BOUNDS)
    assert [rows(r) for r in requests] == [[[1, 1], [2, 2]], [[4, 1]], [[8, 2]]]
    assert [len(r) for r in requests_for(np.empty((0, 2), np.int64), BOUNDS)] == [0, 0, 0]


def test_distinct_rows_are_sorted_without_repeats_and_empty_input_keeps_its_width():
    assert distinct_rows([]).shape == (0, 2)
    assert distinct_rows([], width=3).shape == (0, 3)
    assert rows(distinct_rows([np.array([[2, 1], [0, 5]]), np.array([[0, 5]])])) == [
        [0, 5],
        [2, 1],
    ]


def test_send_reads_each_document_once_and_packs_it_for_every_partition_that_asked():
    reads = []

    def read(docs):
        reads.append(docs.tolist())
        return docs * 10

    # Partition 1 holds 3 and 4: two senders ask it for 4 on behalf of 0 (twice) and of 1, and
    # for 3 on behalf of 2.
    requests = [np.array([[4, 0], [3, 2]]), np.array([[4, 0], [4, 1], [3, 2]])]
    sent = send(read, 3, 1, requests)
    assert reads == [[3, 4]]
    assert [(p.ids.tolist(), p.payload.tolist()) for p in sent.packages] == [
        ([4], [40]),
        ([4], [40]),
        ([3], [30]),
    ]
    assert sent.sent == 2  # to partitions 0 and 2; its own partition's request is not counted


def signatures_for_screening() -> np.ndarray:
    """Signatures of documents 0–3: 0 and 2 equal; 1 agrees with none; 3 agrees with 2 in 102 of
    128 slots (J ≈ 0.8, which their signatures cannot settle within 1e-6)."""
    base = np.arange(128, dtype=np.uint32)
    third = base.copy()
    third[102:] += 5000
    return np.stack([base, base + 1000, base, third])


def test_screen_accepts_settles_and_leaves_undecided_what_the_signatures_say():
    # Exact edge (0, 1); candidates (0, 2), (1, 3), (2, 3), one of them sent by both buckets.
    edges = [np.array([[0, 1, 1], [0, 2, 0]]), np.array([[0, 2, 0], [1, 3, 0], [2, 3, 0]])]
    signatures = signatures_for_screening()
    packages = [
        Package(np.array([0, 1]), signatures[:2]),
        Package(np.array([2, 3]), signatures[2:]),
    ]
    screened = screen(PARAMS, BOUNDS, edges, packages)
    s = screened.screening
    assert (rows(s.exact), rows(s.accepted), rows(s.undecided)) == ([[0, 1]], [[0, 2]], [[2, 3]])
    assert s.counts == {
        "candidate_edges": 4,
        "exact_edges": 1,
        "signature_accepted": 1,
        "jaccard_checked": 1,
    }
    # (2, 3) is settled by partition 1, which asks partition 0 for 2 and itself for 3.
    assert [rows(r) for r in screened.requests] == [[[2, 1]], [[3, 1]], []]


def test_screen_without_verification_accepts_every_candidate():
    edges = [np.array([[0, 1, 1], [0, 2, 0], [1, 3, 0]])]
    screened = screen(replace(PARAMS, verify=False), BOUNDS, edges, [])
    assert rows(screened.screening.accepted) == [[0, 2], [1, 3]]
    assert screened.screening.counts["jaccard_checked"] == 0
    assert [len(r) for r in screened.requests] == [0, 0, 0]


def test_verify_keeps_the_undecided_edges_whose_exact_jaccard_reaches_the_threshold():
    def sets(*members) -> NgramSets:
        values = [np.array(sorted(m), np.uint64) for m in members]
        return NgramSets(np.concatenate(values), np.r_[0, np.cumsum([len(v) for v in values])])

    ten = set(range(1, 11))
    # J(2, 3) = 9/11 ≥ 0.8; J(2, 4) = 5/15 < 0.8.
    docs = sets(ten, set(range(1, 10)) | {11}, set(range(1, 6)) | set(range(20, 25)))
    screening = Screening(
        exact=np.array([[0, 1]]),
        accepted=np.array([[0, 2]]),
        undecided=np.array([[2, 3], [2, 4]]),
        counts={"candidate_edges": 4},
    )
    packages = [
        Package(np.array([2]), docs[np.array([0])]),
        Package(np.array([3, 4]), docs[np.array([1, 2])]),
    ]
    verified = verify(PARAMS, BOUNDS, screening, packages)
    assert verified.counts == {"candidate_edges": 4, "verified_near_edges": 2}
    assert [rows(e) for e in verified.edges] == [[[0, 1], [0, 2], [2, 3]], [[2, 3]], []]


def components_by_search(n: int, edges: np.ndarray) -> np.ndarray:
    """The lowest node of each node's connected component, by breadth-first search."""
    neighbours = [[] for _ in range(n)]
    for u, v in edges.tolist():
        neighbours[u].append(v)
        neighbours[v].append(u)
    lowest = np.full(n, -1)
    for start in range(n):  # ascending: the first unvisited node is its component's lowest
        if lowest[start] >= 0:
            continue
        lowest[start], queue = start, deque([start])
        while queue:
            for v in neighbours[queue.popleft()]:
                if lowest[v] < 0:
                    lowest[v] = start
                    queue.append(v)
    return lowest


def test_star_steps_across_partitions_leave_every_node_hooked_to_its_components_lowest():
    n, bounds = 30, np.array([0, 7, 16, 30])
    rng = generator(0, "test", "dedup_exchange", "stars")
    pairs = rng.integers(0, n, size=(24, 2))
    edges = distinct_rows([np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)])
    routed = [by_either_end(edges, bounds)]  # as `verify` sends them: routed[task][q]
    for _ in range(50):
        large = [large_star(bounds, q, [r[q] for r in routed]) for q in range(3)]
        small = [small_star(bounds, q, [s.edges[q] for s in large]) for q in range(3)]
        routed = [s.edges for s in small]
        if not any(s.changed for s in large + small):
            break
    stars = distinct_rows(e for r in routed for e in r)
    lowest = components_by_search(n, edges)
    leaves = np.flatnonzero(lowest != np.arange(n))
    assert len(leaves) > 5  # the random graph has real components
    assert len(set(stars[:, 1].tolist())) == len(stars)  # one star edge per leaf
    assert dict(zip(stars[:, 1].tolist(), stars[:, 0].tolist())) == {
        int(v): int(lowest[v]) for v in leaves
    }


WORDS = [f"word{i}" for i in range(200)]
TEXTS = [
    [" ".join(WORDS), " ".join(WORDS), " ".join(f"other{i}" for i in range(50))],  # A, A, B
    [" ".join([*WORDS[:-1], "changed"]), " ".join(f"third{i}" for i in range(50))],  # A', C
]
OFFSETS = np.array([0, 3, 5])  # doc_index 0, 1, 2 in shard 0; 3, 4 in shard 1


@pytest.fixture
def shards(tmp_path):
    """Two shards (text, doc_id) and their sketch and key files (2 key partitions), written as the
    dedup stage's sketch step writes them."""
    urls = {"shard": [], "sketch": [], "keys": []}
    for i, texts in enumerate(TEXTS):
        name = f"shard-{i}.parquet"
        ids = [f"d{OFFSETS[i] + j}" for j in range(len(texts))]
        io.write_table(str(tmp_path / "in" / name), pa.table({"doc_id": ids, "text": texts}))
        sketch, keys = sketch_shard(texts, int(OFFSETS[i]), PARAMS, 2)
        io.write_table(str(tmp_path / "sketches" / name), sketch)
        io.write_row_groups(str(tmp_path / "keys" / name), keys)
        for kind, folder in (("shard", "in"), ("sketch", "sketches"), ("keys", "keys")):
            urls[kind].append(str(tmp_path / folder / name))
    return urls


def test_buckets_give_the_copy_as_an_exact_edge_and_the_near_copy_as_a_candidate(shards):
    # A's copy (1) joins it exactly; A' (3) is a near copy (J = 191/201 of 5-word shingles), so
    # is a candidate of A's bucket member 0 (copies count once in a band bucket).
    bucketed = [bucket_partition(shards["keys"], p, 2, OFFSETS, True) for p in range(2)]
    edges = [distinct_rows([b.edges[q] for b in bucketed], width=3).tolist() for q in range(2)]
    assert edges == [[[0, 1, 1]], [[0, 3, 0]]]
    # Partition 1 settles (0, 3): it asks partition 0 for 0 and itself for 3.
    requests = [rows(distinct_rows([b.requests[p] for b in bucketed])) for p in range(2)]
    assert requests == [[[0, 1]], [[3, 1]]]
    assert sum(b.rows for b in bucketed) == 5 * (1 + PARAMS.bands)  # an exact row, bands rows
    unverified = [bucket_partition(shards["keys"], p, 2, OFFSETS, False) for p in range(2)]
    assert all(len(r) == 0 for b in unverified for r in b.requests)


def test_local_payloads_are_read_from_the_shards_that_hold_the_documents(shards):
    wanted = np.array([1, 3])  # one from each shard
    texts = [TEXTS[0][1], TEXTS[1][0]]
    _, expected = minhash.sketch(texts, PARAMS.num_perm, PARAMS.ngram_words, 0)
    got = local_signatures(shards["sketch"], OFFSETS, PARAMS, wanted)
    assert np.array_equal(got, expected)
    sets = local_sets(shards["shard"], OFFSETS, PARAMS, wanted)
    reference = ngrams.ngram_sets(texts, PARAMS.ngram_words)
    assert np.array_equal(sets.values, reference.values)
    assert np.array_equal(sets.offsets, reference.offsets)
    assert local_signatures(shards["sketch"], OFFSETS, PARAMS, wanted[:0]).shape == (0, 128)
    assert len(local_sets(shards["shard"], OFFSETS, PARAMS, wanted[:0])) == 0


def test_finish_removes_the_leaves_and_names_the_center_kept_for_each(shards, tmp_path):
    stars = np.array([[0, 1], [0, 3]])  # A kept; its copy and its near copy removed
    outcomes = []
    for shard in range(2):
        out = str(tmp_path / "out" / f"shard-{shard}.parquet")
        duplicates = str(tmp_path / "dups" / f"shard-{shard}.parquet")
        ours = [by_either_end(stars, OFFSETS)[shard]]  # OFFSETS: a node partition per shard
        outcomes.append(
            finish(shards["shard"], shards["sketch"], OFFSETS, shard, out, duplicates, ours)
        )
        assert io.read_table(out).column("doc_id").to_pylist() == [["d0", "d2"], ["d4"]][shard]
        assert (
            io.read_table(duplicates).to_pylist()
            == [
                [{"doc_id": "d1", "cluster_id": 0, "kept_doc_id": "d0", "reason": "exact"}],
                [{"doc_id": "d3", "cluster_id": 0, "kept_doc_id": "d0", "reason": "near"}],
            ][shard]
        )
    assert outcomes == [
        Finished(kept=2, exact_dup=1, near_dup=0, clusters=1),
        Finished(kept=1, exact_dup=0, near_dup=1, clusters=0),
    ]
