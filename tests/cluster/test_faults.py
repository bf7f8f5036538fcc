"""A worker node killed while a stage runs on the cluster: Ray retries its tasks on the surviving
node and the stage's output is byte-identical to the clean run's (``conftest.clean_run``).

The kill is aimed: the test watches the worker processes' titles (Ray names a busy worker
``ray::<task>``) and SIGKILLs the raylet of the node whose worker is running one of the stage's
tasks, so the task dies mid-way. It then checks with Ray's state API that a task of the job was
retried, and restarts the node (``local-cluster.sh node I``) for the tests that follow.
"""

from __future__ import annotations

import shutil
import time

import psutil
import pytest
from ray.job_submission import JobStatus
from ray.util.state.common import StateResource

from taggant.jobs.submit import submit
from tests.cluster.conftest import BUCKET, JOB_ENV, write_spec
from tests.cluster.test_multinode import wait
from tests.digests import folder_digests

NOT_TASKS = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")
"""Titles of a raylet's children that run no task: an idle worker and the node's agents."""
KILL_TIMEOUT_S = 300


def busy_worker(cluster, task_title: str | None) -> tuple[int, psutil.Process]:
    """The first worker node seen running a task (named ``ray::<task_title>``, or any task when
    ``None``): its number and its raylet."""
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while time.monotonic() < deadline:
        for raylet in [p for p in cluster.family() if p.name() == "raylet"]:
            try:
                titles = [" ".join(w.cmdline()) for w in raylet.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            running = [t for t in titles if t.startswith("ray::") and not t.startswith(NOT_TASKS)]
            wanted = [
                t for t in running if task_title is None or t.startswith(f"ray::{task_title}")
            ]
            node_id = next(
                (a.split("=", 1)[1] for a in raylet.cmdline() if a.startswith("--node_id=")), None
            )
            if wanted and node_id:
                number, found = cluster.raylet(node_id)
                if number:  # a worker node; the head runs no tasks
                    return number, found
        time.sleep(0.05)
    pytest.fail(f"no worker ran {task_title or 'a task'} within {KILL_TIMEOUT_S} s")


def node_processes(cluster, number: int) -> list[psutil.Process]:
    """The live ``ray start`` process of worker node ``number`` (empty once it has exited)."""
    marker = f"{cluster.state}/ray-w{number}"
    return [
        p
        for p in cluster.family()
        if "start" in p.cmdline() and any(arg == marker for arg in p.cmdline())
    ]


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    "stage, copied, task_title",
    [
        ("dedup", ("ingest",), None),
        ("tokenize", ("ingest", "dedup", "plan"), "tokenize_shard"),
    ],
    ids=["dedup", "tokenize"],
)
def test_a_worker_killed_mid_stage_changes_no_byte(
    cluster, clean_run, tmp_path, stage, copied, task_title
):
    spec = write_spec(tmp_path, f"s3://{BUCKET}/store-{stage}-fault")
    for name in copied:  # finished stages: the job skips them and starts with `stage`
        shutil.copytree(clean_run.folder(name), tmp_path / "work" / clean_run.folder(name).name)
    submission = submit(spec, cluster.address, until=stage, env=JOB_ENV)

    number, raylet = busy_worker(cluster, task_title)
    ray_start = node_processes(cluster, number)
    raylet.kill()
    psutil.wait_procs(ray_start, timeout=60)  # `ray start --block` ends the node's other processes
    status = wait(cluster, submission, timeout_s=600)
    jobs = cluster.jobs()
    assert status == JobStatus.SUCCEEDED, jobs.get_job_logs(submission)

    tasks = cluster.list(StateResource.TASKS, job_id=jobs.get_job_info(submission).job_id)
    retried = {t["func_or_class_name"] for t in tasks if t["attempt_number"] > 0}
    assert retried, "the kill hit no running task"
    assert task_title is None or task_title in " ".join(retried), retried
    [folder] = (tmp_path / "work").glob(f"{stage}-*")
    assert folder.name == clean_run.folder(stage).name
    # spec.yaml names the work dir, the one thing that differs between the two runs.
    assert folder_digests(str(folder), {"spec.yaml"}) == folder_digests(
        str(clean_run.folder(stage)), {"spec.yaml"}
    )

    cluster.script("node", str(number))  # for the tests that follow
    cluster.wait_for_workers()
