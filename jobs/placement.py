"""Which placement-group bundle each rank of a training run gets, so that the ranks of a tensor-
parallel group share a node (THUDM/slime's ``slime/ray/placement_group.py`` does the same).

Ray decides where a ``PACK``ed placement group's bundles land, and bundle ``i`` is not always on
the node of bundle ``i - 1``. Megatron puts tensor parallel innermost (ranks ``[k·TP, (k+1)·TP)``
form a group), then data parallel, then pipeline stages, so ranks are handed out over bundles
sorted by node, and by GPU id within a node: consecutive ranks then share a node wherever Ray put
a multiple of ``TP`` bundles on each node; where it did not, a tensor-parallel group would run its
per-layer all-reduces over the network, and the run is refused (``order_ranks``). A tiny task in
every bundle, holding the bundle's GPU, reports where it runs and which GPU Ray gave it
(``probe_bundles``); the rest is a pure function of those reports (``rank_bundles``).

The rendezvous address is rank 0's node IP as Ray knows it (reachable from the other nodes, never
a loopback address); rank 0 itself binds the port there (``pipeline.train.model.rendezvous_store``)
and holds it until the process group is built.

Probe watchers get Ray options from ``probes.watcher`` (``watcher_options``): their own CPUs and
GPUs, and, on a multi-node cluster, a label selector that keeps them off the head node. A watcher
given a GPU probes on the one Ray assigned it (``watcher_device``), in the precision its spec
implies (``ProbesSpec.precision``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.spec import WatcherSpec

HEAD_RESOURCE = "node:__internal_head__"
"""The resource Ray gives only the head node."""
NODE_ID_LABEL = "ray.io/node-id"
"""The label Ray gives every node, its id."""


@dataclass(frozen=True)
class BundlePlacement:
    """Where one bundle landed: its node's IP and the GPU ids Ray gave it (empty on CPU)."""

    node_ip: str
    gpu_ids: tuple[int, ...] = ()


def rank_bundles(placements: list[BundlePlacement]) -> list[int]:
    """The bundle index of each rank: bundles grouped by node, nodes in the order of their first
    bundle (so bundle 0's node hosts rank 0), by GPU id and then bundle index within a node."""
    first_bundle: dict[str, int] = {}
    for i, p in enumerate(placements):
        first_bundle.setdefault(p.node_ip, i)
    return sorted(
        range(len(placements)),
        key=lambda i: (first_bundle[placements[i].node_ip], placements[i].gpu_ids, i),
    )


def split_tensor_groups(node_of_rank: list[str], tensor_parallel_size: int) -> list[int]:
    """Indices of the tensor-parallel groups whose ranks are on more than one node."""
    groups = range(len(node_of_rank) // tensor_parallel_size)
    return [
        g
        for g in groups
        if len(set(node_of_rank[g * tensor_parallel_size : (g + 1) * tensor_parallel_size])) > 1
    ]


def rank_coordinates(
    rank: int, tensor_parallel_size: int, data_parallel_size: int
) -> tuple[int, int, int]:
    """``(tensor, data, pipeline)`` coordinates of a global rank in megatron's default order."""
    tensor, rest = rank % tensor_parallel_size, rank // tensor_parallel_size
    return tensor, rest % data_parallel_size, rest // data_parallel_size


def probe_bundles(pg: Any, num_bundles: int, gpus_per_bundle: float = 0) -> list[BundlePlacement]:
    """Run a zero-CPU task in every bundle of the ready placement group ``pg``; their reports in
    bundle order. Each task takes its bundle's ``gpus_per_bundle`` GPUs, so that Ray tells it
    which ones they are (the rank actor started in that bundle later gets the same ones)."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    task = ray.remote(num_cpus=0, num_gpus=gpus_per_bundle)(_where_am_i)
    return ray.get(
        [
            task.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=i
                )
            ).remote()
            for i in range(num_bundles)
        ]
    )


def order_ranks(
    placements: list[BundlePlacement], tensor_parallel_size: int, run: str
) -> list[int]:
    """``rank_bundles``; refuses a placement that splits a tensor-parallel group over nodes.

    Raises:
        ConfigError: on ``runs.tensor_parallel_size``, naming the groups, the ranks each node
            got, and the fix.
    """
    order = rank_bundles(placements)
    nodes = [placements[b].node_ip for b in order]
    split = split_tensor_groups(nodes, tensor_parallel_size)
    if split:
        per_node = ", ".join(f"{n}: {c}" for n, c in Counter(nodes).items())
        raise ConfigError(
            [
                (
                    "runs.tensor_parallel_size",
                    (
                        f"run {run}: Ray placed its ranks {per_node} per node, so tensor-parallel "
                        f"groups {split} would span nodes (every layer's all-reduce over the "
                        f"network); give each node a multiple of {tensor_parallel_size} free "
                        "GPUs (CPUs on a CPU cluster) for the run's ranks, or lower "
                        "tensor_parallel_size to one that divides them"
                    ),
                )
            ]
        )
    return order


def _where_am_i() -> BundlePlacement:
    import ray

    gpus = tuple(sorted(int(g) for g in ray.get_gpu_ids()))
    return BundlePlacement(ray.util.get_node_ip_address(), gpus)


def watcher_options(watcher: WatcherSpec, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Ray task options of a probe watcher declared by ``watcher`` on a cluster of ``nodes``
    (``ray.nodes()``, decided once when the watchers start).

    It reserves ``num_cpus`` and ``num_gpus``; with no GPU it sees none (``CUDA_VISIBLE_DEVICES``
    empty: Ray leaves a zero-GPU task every GPU of its node, ray-project/ray#62492, and torch
    would pick a training rank's), with one Ray's assignment is the only GPU it sees. Its OpenMP/MKL
    pools get ``torch_threads`` threads. Unless ``on_head``, a cluster with more than one live node
    keeps it off the head.
    """
    threads = str(watcher.torch_threads)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if not watcher.num_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    options: dict[str, Any] = {
        "num_cpus": watcher.num_cpus,
        "num_gpus": watcher.num_gpus,
        "runtime_env": {"env_vars": env},
    }
    alive = [n for n in nodes if n["Alive"]]
    heads = [n["NodeID"] for n in alive if HEAD_RESOURCE in n["Resources"]]
    if not watcher.on_head and heads and len(alive) > 1:
        options["label_selector"] = {NODE_ID_LABEL: f"!in({','.join(heads)})"}
    return options


def watcher_device(assigned_gpu_ids: list[Any], cuda_visible_devices: str | None) -> int | None:
    """The torch CUDA index of the GPU of a watcher that Ray assigned ``assigned_gpu_ids``
    (``ray.get_gpu_ids()``) in a process whose ``CUDA_VISIBLE_DEVICES`` is
    ``cuda_visible_devices`` (``None``: unset).

    No GPU assigned: ``None`` (the CPU). Otherwise the first assigned GPU, at its torch index: its
    position in ``CUDA_VISIBLE_DEVICES`` (Ray sets it to the assigned ids, so usually 0), or the
    id itself where Ray was told to leave the variable alone
    (``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES``) and torch sees every GPU of the node. Never
    ``cuda:0`` by default: that can be a training rank's GPU.

    Raises:
        ConfigError: the assigned GPU is not among the visible ones (the environment hides it).
    """
    if not assigned_gpu_ids:
        return None
    gpu = str(assigned_gpu_ids[0])
    if cuda_visible_devices is None:
        index = int(gpu)
    else:
        visible = [d.strip() for d in cuda_visible_devices.split(",") if d.strip()]
        if gpu not in visible:
            raise ConfigError(
                [
                    (
                        "probes.watcher.num_gpus",
                        (
                            f"Ray assigned this watcher GPU {gpu} but CUDA_VISIBLE_DEVICES is "
                            f"{cuda_visible_devices!r}; do not set CUDA_VISIBLE_DEVICES in the "
                            "job's or the node's environment, Ray sets it per task"
                        ),
                    )
                ]
            )
        index = visible.index(gpu)
    return index
