"""Probe watchers on a real three-node Ray cluster (``conftest.py``: a head with no CPU and two
one-CPU workers): with ``placement.watcher_options`` a watcher that reserves no CPU (the default)
never lands on the head (one allowed there does), sees no GPU and keeps the job's shipped
taggant; a CPU watcher takes its CPU and threads on a worker. 98 s here, most of it the cluster's
start and stop."""

from __future__ import annotations

import json

import pytest
from ray.job_submission import JobStatus

from taggant.jobs.submit import runtime_env
from tests.cluster.test_multinode import wait

WATCHERS = """
import json, os, ray
from taggant.jobs import placement
from taggant.pipeline.spec import WatcherSpec

def where():
    import taggant.jobs.probe  # the job's py_modules reach a task with its own runtime_env
    return (ray.get_runtime_context().get_node_id(), os.environ["CUDA_VISIBLE_DEVICES"],
            os.environ["OMP_NUM_THREADS"], ray.get_runtime_context().get_assigned_resources())

ray.init()
nodes = ray.nodes()
found = {}
for name, spec in {"default": WatcherSpec(), "cpu": WatcherSpec(num_cpus=1, threads=2),
                   "on_head": WatcherSpec(on_head=True)}.items():
    task = ray.remote(where).options(**placement.watcher_options(spec, nodes))
    found[name] = ray.get([task.remote() for _ in range(8)])
print("WATCHERS", json.dumps(found))
"""


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_watchers_stay_off_the_head_and_take_what_they_ask(cluster, tmp_path):
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "watchers.py").write_text(WATCHERS)
    jobs = cluster.jobs()
    submission = jobs.submit_job(
        entrypoint="python watchers.py", runtime_env=runtime_env(tmp_path, {})
    )
    assert wait(cluster, submission) == JobStatus.SUCCEEDED, jobs.get_job_logs(submission)
    logs = jobs.get_job_logs(submission).splitlines()
    [line] = [ln for ln in logs if ln.startswith("WATCHERS ")]
    found = json.loads(line.removeprefix("WATCHERS "))

    nodes = cluster.alive_nodes()
    [head] = [n["node_id"] for n in nodes if n["is_head_node"]]
    workers = {n["node_id"] for n in nodes if not n["is_head_node"]}
    for name in ("default", "cpu"):
        assert {node for node, *_ in found[name]} <= workers, name
        assert all(visible == "" for _, visible, _, _ in found[name]), name
    assert all(r == {} for *_, r in found["default"])
    assert all(r == {"CPU": 1.0} and t == "2" for _, _, t, r in found["cpu"])
    # Without the selector Ray runs zero-CPU tasks beside the job's driver, on the head (8 of 8
    # here): the checks above can fail.
    assert head in {node for node, *_ in found["on_head"]}
