"""Rank placement: ranks go to bundles sorted by node so that tensor-parallel groups share a node,
for several layouts Ray may hand out; and on the real local Ray, the bundles' reports lead to a
rendezvous address that is the node's IP, never loopback."""

import ipaddress

import pytest

from taggant.jobs.placement import (
    BundlePlacement,
    order_ranks,
    probe_bundles,
    rank_bundles,
    rank_coordinates,
    split_tensor_groups,
)


def layout(*nodes: str) -> list[BundlePlacement]:
    """One bundle per entry, on the named node; GPU ids count up per node in bundle order."""
    seen: dict[str, int] = {}
    out = []
    for node in nodes:
        out.append(BundlePlacement(node, (seen.get(node, 0),)))
        seen[node] = seen.get(node, 0) + 1
    return out


def nodes_by_rank(placements: list[BundlePlacement]) -> list[str]:
    return [placements[b].node_ip for b in rank_bundles(placements)]


@pytest.mark.parametrize(
    ("bundles", "tp", "expected"),
    [
        # interleaved by Ray: regrouped so each TP pair sits on one node
        (("a", "b", "a", "b"), 2, ["a", "a", "b", "b"]),
        (("b", "a", "a", "b", "a", "b", "a", "b"), 4, ["b"] * 4 + ["a"] * 4),
        # three nodes of two GPUs each, TP = 2, DP = 3
        (("c", "a", "b", "a", "c", "b"), 2, ["c", "c", "a", "a", "b", "b"]),
        # one node: nothing moves
        (("a",) * 4, 4, ["a"] * 4),
    ],
)
def test_tensor_groups_land_on_one_node(bundles, tp, expected):
    placements = layout(*bundles)
    assert nodes_by_rank(placements) == expected
    assert split_tensor_groups(expected, tp) == []
    order = rank_bundles(placements)
    assert sorted(order) == list(range(len(bundles)))  # every bundle used once
    assert order[0] == 0  # rank 0 stays on bundle 0's node: the rendezvous node


def test_gpu_ids_order_ranks_inside_a_node():
    placements = [
        BundlePlacement("a", (3,)),
        BundlePlacement("a", (1,)),
        BundlePlacement("b", (0,)),
        BundlePlacement("a", (2,)),
    ]
    assert rank_bundles(placements) == [1, 3, 0, 2]


def test_an_uneven_placement_reports_the_split_group(caplog):
    placements = layout("a", "a", "a", "b")  # 3 bundles on a: the second TP pair straddles
    assert split_tensor_groups(nodes_by_rank(placements), 2) == [1]
    order_ranks(placements, 2, "run-x")
    assert "tensor-parallel groups [1] span nodes" in caplog.text


def test_rank_coordinates_follow_megatron_order():
    # TP=2, DP=2, PP=2: tensor innermost, pipeline outermost
    coords = [rank_coordinates(r, 2, 2) for r in range(8)]
    assert coords == [
        (0, 0, 0),
        (1, 0, 0),
        (0, 1, 0),
        (1, 1, 0),
        (0, 0, 1),
        (1, 0, 1),
        (0, 1, 1),
        (1, 1, 1),
    ]


@pytest.mark.ray
def test_bundles_on_the_local_ray_report_the_node_ip(local_ray):
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{"CPU": 0.5}] * 2, strategy="PACK")
    try:
        local_ray.get(pg.ready())
        placements = probe_bundles(pg, 2)
    finally:
        remove_placement_group(pg)
    assert len({p.node_ip for p in placements}) == 1
    node_ip = ipaddress.ip_address(placements[0].node_ip)
    assert node_ip.version in (4, 6)
    assert local_ray.util.get_node_ip_address() == placements[0].node_ip
    assert all(p.free_port > 0 and p.gpu_ids == () for p in placements)
    assert split_tensor_groups(nodes_by_rank(placements), 2) == []
