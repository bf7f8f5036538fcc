"""Rank placement: ranks go to bundles sorted by node, and by GPU id inside a node, so that
tensor-parallel groups share a node, for several layouts Ray may hand out; a placement that splits
a group is refused with the fix; on the real local Ray, the bundles' reports lead to a rendezvous
address that is the node's IP, never loopback; and rank 0's rendezvous store holds the port it
was given."""

import ipaddress
import json
import os
import subprocess
import sys
import textwrap

import pytest

from taggant.jobs.placement import (
    BundlePlacement,
    order_ranks,
    probe_bundles,
    rank_bundles,
    rank_coordinates,
    split_tensor_groups,
    watcher_device,
)
from taggant.pipeline.errors import ConfigError


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


def test_gpu_ids_order_ranks_on_every_node_of_an_interleaved_placement():
    # Two nodes of four GPUs; Ray handed the bundles out interleaved and out of GPU order.
    placements = [
        BundlePlacement("a", (2,)),
        BundlePlacement("b", (1,)),
        BundlePlacement("a", (0,)),
        BundlePlacement("b", (3,)),
        BundlePlacement("a", (3,)),
        BundlePlacement("b", (0,)),
        BundlePlacement("a", (1,)),
        BundlePlacement("b", (2,)),
    ]
    order = order_ranks(placements, 4, "run-x")
    assert [(placements[b].node_ip, placements[b].gpu_ids[0]) for b in order] == [
        ("a", 0),
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("b", 0),
        ("b", 1),
        ("b", 2),
        ("b", 3),
    ]


@pytest.mark.parametrize(
    ("bundles", "tp", "split"),
    [
        (("a", "a", "a", "b"), 2, [1]),  # 3 bundles on a: the second TP pair straddles
        (("a", "b", "a", "b", "c", "c", "c", "c"), 4, [0]),  # 2 on a and on b: a group of 4 spans
        (("a", "a", "a", "b", "b", "b", "c", "c"), 2, [1]),  # 3 on a and on b
    ],
)
def test_a_placement_that_splits_a_tensor_group_is_refused_with_the_fix(bundles, tp, split):
    placements = layout(*bundles)
    assert split_tensor_groups(nodes_by_rank(placements), tp) == split
    with pytest.raises(ConfigError) as raised:
        order_ranks(placements, tp, "run-x")
    [(field, message)] = raised.value.problems
    assert field == "runs.tensor_parallel_size"
    assert f"groups {split}" in message and f"a multiple of {tp}" in message
    assert "run-x" in message


@pytest.mark.parametrize(
    ("assigned", "visible", "index"),
    [
        ([], "", None),  # no GPU: the CPU
        ([], None, None),
        ([5], "5", 0),  # Ray's usual: the assigned GPU is the only one visible
        (["3"], "1,3", 1),  # its position among the visible ones, not cuda:0
        ([2, 6], "2,6", 0),  # several assigned: the first
        ([6], None, 6),  # Ray told not to set the variable: torch sees every GPU
    ],
)
def test_a_watcher_probes_on_the_gpu_ray_assigned_it(assigned, visible, index):
    assert watcher_device(assigned, visible) == index


def test_a_watcher_whose_gpu_is_hidden_is_refused_with_the_fix():
    with pytest.raises(
        ConfigError, match="probes.watcher.num_gpus: Ray assigned this watcher GPU 4"
    ):
        watcher_device([4], "0,1")


def test_rank_zero_holds_its_rendezvous_port_until_the_group_binds_it():
    import socket

    from taggant.pipeline.train.model import rendezvous_store

    master = rendezvous_store("127.0.0.1", 0, 2, master=True)
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", master.port))  # nobody else can take it meanwhile
    worker = rendezvous_store("127.0.0.1", master.port, 2, master=False)
    worker.set("rank1", "here")
    assert master.get("rank1") == b"here"


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
    assert all(p.gpu_ids == () for p in placements)
    assert split_tensor_groups(nodes_by_rank(placements), 2) == []


GPU_RAY = """
import json, os
import ray
from ray.util.placement_group import placement_group
from taggant.jobs.placement import probe_bundles, rank_bundles, watcher_device

# Ray hands out GPU ids it was told about, present or not: 3 for the ranks, 1 for a watcher.
ray.init(address="local", num_cpus=1, num_gpus=4, include_dashboard=False)
pg = placement_group([{"CPU": 0.1, "GPU": 1}] * 3, strategy="PACK")
ray.get(pg.ready())
placements = probe_bundles(pg, 3, gpus_per_bundle=1)

@ray.remote(num_cpus=0, num_gpus=1)
def watcher():
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return ray.get_gpu_ids(), visible, watcher_device(ray.get_gpu_ids(), visible)

print(json.dumps({
    "gpus": [p.gpu_ids for p in placements],
    "ranked": [placements[b].gpu_ids for b in rank_bundles(placements)],
    "watcher": ray.get(watcher.remote()),
}))
"""


@pytest.mark.ray
@pytest.mark.slow
def test_bundle_probes_hold_their_gpu_and_a_watcher_uses_the_one_ray_gave_it():
    # A Ray of its own (in a subprocess: the session's local Ray has no GPUs) that believes it has
    # 4 GPUs; nothing touches CUDA, so no device is needed.
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(GPU_RAY)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    gpus = [tuple(g) for g in report["gpus"]]
    assert sorted(gpus) == sorted({g for g in gpus}) and all(len(g) == 1 for g in gpus)
    assert [tuple(g) for g in report["ranked"]] == sorted(gpus)  # ranks in GPU-id order
    assigned, visible, device = report["watcher"]
    [free] = {0, 1, 2, 3} - {g[0] for g in gpus}  # the GPU no bundle holds
    assert assigned == [free] and visible == str(free)
    assert device == 0
