"""A process group across two nodes of the real three-node cluster (``conftest.py``), joined the
way ``jobs.train`` joins a run's ranks: bundles probed and ordered by ``jobs.placement``, rank 0's
actor serving the rendezvous store on a port its OS picked (held from then on), the other rank
connecting to rank 0's node IP; then a gloo all-reduce over the two nodes."""

from __future__ import annotations

import json

import pytest
from ray.job_submission import JobStatus

from taggant.jobs.submit import runtime_env
from tests.cluster.test_multinode import wait

RENDEZVOUS = """
import json, os, ray
import torch
import torch.distributed as dist
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from taggant.jobs import placement

ray.init()
pg = placement_group([{"CPU": 1}] * 2, strategy="STRICT_SPREAD")  # one rank per worker node
ray.get(pg.ready())
placements = placement.probe_bundles(pg, 2)
order = placement.order_ranks(placements, 1, "rendezvous")
address = placements[order[0]].node_ip

class Rank:  # jobs.train.RankWorker's rendezvous, without a Trainer
    def __init__(self, rank):
        os.environ.update(RANK=str(rank), WORLD_SIZE="2", CUDA_VISIBLE_DEVICES="")
        self.store = None

    def open_rendezvous(self):
        from taggant.pipeline.train.model import rendezvous_store
        self.store = rendezvous_store(address, 0, 2, master=True)
        return self.store.port

    def join(self, port):
        from taggant.pipeline.train.model import init_parallel, rendezvous_store
        if os.environ["RANK"] != "0":
            self.store = rendezvous_store(address, port, 2, master=False)
        init_parallel(store=self.store)
        total = torch.tensor([float(dist.get_rank() + 1)])
        dist.all_reduce(total)
        return ray.get_runtime_context().get_node_id(), dist.get_rank(), total.item()

actor = ray.remote(num_cpus=1)(Rank)
ranks = [
    actor.options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=b)
    ).remote(rank)
    for rank, b in enumerate(order)
]
port = ray.get(ranks[0].open_rendezvous.remote())
print("RENDEZVOUS", json.dumps({"port": port, "ranks": ray.get([r.join.remote(port) for r in ranks])}))
"""


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ranks_on_two_nodes_join_through_rank_zeros_held_port(cluster, tmp_path):
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "rendezvous.py").write_text(RENDEZVOUS)
    jobs = cluster.jobs()
    submission = jobs.submit_job(
        entrypoint="python rendezvous.py", runtime_env=runtime_env(tmp_path, {})
    )
    assert wait(cluster, submission, timeout_s=900) == JobStatus.SUCCEEDED, jobs.get_job_logs(
        submission
    )
    [line] = [
        ln for ln in jobs.get_job_logs(submission).splitlines() if ln.startswith("RENDEZVOUS ")
    ]
    found = json.loads(line.removeprefix("RENDEZVOUS "))
    workers = {n["node_id"] for n in cluster.alive_nodes() if not n["is_head_node"]}
    assert found["port"] > 0
    assert {node for node, _, _ in found["ranks"]} == workers  # one rank on each worker node
    assert [(rank, total) for _, rank, total in found["ranks"]] == [(0, 3.0), (1, 3.0)]
