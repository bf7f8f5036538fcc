"""Probe watchers' resources (``probes.watcher``, ``placement.watcher_options``): what they
reserve, which GPUs and threads they see and that the head of a multi-node cluster is left out
(what changes the probe stage's key: ``tests/jobs/test_graph.py``). On a real local Ray: a task
with these options gets them."""

import pytest

from taggant.jobs import placement
from taggant.pipeline.errors import ConfigError
from taggant.pipeline.spec import WatcherSpec

HEAD = {"NodeID": "h", "Alive": True, "Resources": {"CPU": 0.0, placement.HEAD_RESOURCE: 1.0}}
WORKERS = [
    {"NodeID": f"w{i}", "Alive": True, "Resources": {"CPU": 8.0, "GPU": 8.0}} for i in range(2)
]


def test_a_cpu_watcher_reserves_its_cores_sees_no_gpu_and_uses_its_threads():
    options = placement.watcher_options(WatcherSpec(num_cpus=2.5), [HEAD])
    assert (options["num_cpus"], options["num_gpus"]) == (2.5, 0)
    env = options["runtime_env"]["env_vars"]
    assert env == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "CUDA_VISIBLE_DEVICES": ""}
    threads = placement.watcher_options(WatcherSpec(num_cpus=2, threads=6), [HEAD])
    assert threads["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "6"
    assert WatcherSpec().torch_threads == 1  # the default reserves no core and takes one thread


def test_a_gpu_watcher_takes_its_own_gpu_through_ray():
    options = placement.watcher_options(WatcherSpec(num_cpus=4, num_gpus=1), [HEAD, *WORKERS])
    assert options["num_gpus"] == 1
    # Ray sets CUDA_VISIBLE_DEVICES to the GPU it assigned: nothing may override it.
    assert "CUDA_VISIBLE_DEVICES" not in options["runtime_env"]["env_vars"]


@pytest.mark.parametrize(
    ("nodes", "on_head", "kept_off"),
    [
        ([HEAD, *WORKERS], False, "!in(h)"),
        ([HEAD, *WORKERS], True, None),
        ([HEAD], False, None),  # the head is the only node
        ([HEAD, {**WORKERS[0], "Alive": False}], False, None),  # its worker died
        (WORKERS, False, None),  # no head among the nodes listed
    ],
)
def test_a_watcher_stays_off_the_head_of_a_multi_node_cluster(nodes, on_head, kept_off):
    options = placement.watcher_options(WatcherSpec(on_head=on_head), nodes)
    assert options.get("label_selector") == (
        None if kept_off is None else {placement.NODE_ID_LABEL: kept_off}
    )


@pytest.mark.ray
def test_a_task_with_the_options_gets_them_on_ray(local_ray):
    def report():
        import os

        import ray

        return (
            ray.get_runtime_context().get_assigned_resources(),
            os.environ["CUDA_VISIBLE_DEVICES"],
            os.environ["OMP_NUM_THREADS"],  # torch's own count is set by watch() itself
        )

    options = placement.watcher_options(WatcherSpec(num_cpus=2, threads=3), local_ray.nodes())
    assert "label_selector" not in options  # one node: the head
    resources, visible, threads = local_ray.get(
        local_ray.remote(report).options(**options).remote()
    )
    assert resources == {"CPU": 2.0} and visible == "" and threads == "3"


def test_a_run_that_does_not_fit_beside_its_watchers_is_refused():
    # Watchers start first and hold what they reserve until training ends: ranks that do not fit
    # in the rest would wait forever.
    from taggant.jobs import train as train_job

    train_job._check_capacity({"CPU": 1}, 2, {"CPU": 4}, {"CPU": 2})  # fits exactly
    beside = r"2 CPU \(2 ranks × 1\) beside the probe watchers' 3 but the Ray cluster has 4"
    with pytest.raises(ConfigError, match=beside):
        train_job._check_capacity({"CPU": 1}, 2, {"CPU": 4}, {"CPU": 3})
    with pytest.raises(ConfigError, match="watchers' 1 but the Ray cluster has 0"):
        train_job._check_capacity({"CPU": 1}, 1, {"CPU": 4}, {"CPU": 0, "GPU": 1})  # no GPU
