"""``taggant submit`` on a real three-node Ray cluster (``conftest.py``): the job runs the taggant
it was sent, its stage tasks run on both worker nodes, and the results land on S3."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from ray.job_submission import JobStatus
from ray.util.state.common import StateResource

from taggant.jobs.submit import runtime_env
from taggant.pipeline import store
from tests.cluster.conftest import BUCKET

ROOT = Path(__file__).resolve().parents[2]
FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
SHIPPED = "/runtime_resources/py_modules_files/"
WHERE = """
import json, ray, taggant.jobs
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

@ray.remote(num_cpus=1)
def where():
    import taggant.pipeline
    return ray.get_runtime_context().get_node_id(), taggant.pipeline.__file__

ray.init()
workers = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")]
pinned = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False))
          for n in workers]
print("WHERE", json.dumps({"driver": taggant.jobs.__file__,
                           "tasks": ray.get([task.remote() for task in pinned])}))
"""
"""A job that reports which taggant its driver imported, and which one a task on each worker
node imported."""


def wait(cluster, submission: str, timeout_s: float = 300) -> JobStatus:
    jobs = cluster.jobs()
    deadline = time.monotonic() + timeout_s
    while (status := jobs.get_job_status(submission)) not in FINAL:
        assert time.monotonic() < deadline, jobs.get_job_logs(submission)
        time.sleep(1)
    return status


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_nodes_cannot_import_taggant_so_jobs_run_the_shipped_copy(cluster, tmp_path):
    bare = subprocess.run(
        [str(cluster.python), "-c", "import taggant"],
        env=cluster.env,
        capture_output=True,
        text=True,
    )
    assert "No module named 'taggant'" in bare.stderr

    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "where.py").write_text(WHERE)
    jobs = cluster.jobs()
    submission = jobs.submit_job(
        entrypoint="python where.py", runtime_env=runtime_env(tmp_path, {})
    )
    assert wait(cluster, submission) == JobStatus.SUCCEEDED, jobs.get_job_logs(submission)
    [line] = [ln for ln in jobs.get_job_logs(submission).splitlines() if ln.startswith("WHERE ")]
    where = json.loads(line.removeprefix("WHERE "))

    assert SHIPPED in where["driver"] and not where["driver"].startswith(str(ROOT))
    workers = {n["node_id"] for n in cluster.alive_nodes() if not n["is_head_node"]}
    assert {node for node, _ in where["tasks"]} == workers and len(workers) == 2
    for node, path in where["tasks"]:
        number, _ = cluster.raylet(node)
        # Each node unpacked the package into its own temp dir.
        assert path.startswith(f"{cluster.state}/ray-w{number}/") and SHIPPED in path, path


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_submitted_experiment_runs_on_both_nodes_and_lands_in_the_store(cluster, clean_run):
    tasks = cluster.list(StateResource.TASKS, job_id=clean_run.job_id)
    workers = clean_run.workers
    cpu_tasks = [
        t
        for t in tasks
        if t["type"] == "NORMAL_TASK"
        and t["state"] == "FINISHED"
        and t["required_resources"].get("CPU", 0) >= 1
    ]
    names = {t["func_or_class_name"] for t in cpu_tasks}
    assert {"ingest_file", "_sketch", "tokenize_shard"} <= names, names
    # The stages' shard tasks (one CPU each) ran on both worker nodes, never on the head. Which
    # node gets which shard is Ray's choice (on a loaded machine one node may take a whole stage).
    assert {t["node_id"] for t in cpu_tasks} == workers
    # The two runs (perturbed and its standard twin) trained side by side, one on each node.
    ranks = cluster.list(StateResource.ACTORS, job_id=clean_run.job_id, class_name="RankWorker")
    assert sorted(a["node_id"] for a in ranks) == sorted(workers)

    for stage in ("ingest", "dedup", "plan", "tokenize", "train", "probe", "fit"):
        assert (clean_run.folder(stage) / "_SUCCESS").exists(), stage
    url = f"s3://{BUCKET}/store"
    checkpoints = store.read_checkpoints(url).to_pylist()
    steps: dict[str, list[int]] = {}
    for c in checkpoints:
        steps.setdefault(c["run"], []).append(c["step"])
    assert len(steps) == 2 and all(s == [1, 9, 64, 74, 80, 160] for s in steps.values()), steps
    rows = store.read_probes(url)
    assert rows.num_rows == sum(c["num_rows"] for c in checkpoints) > 0
