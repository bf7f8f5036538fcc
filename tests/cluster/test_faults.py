"""A worker node killed while a stage runs on the cluster: Ray retries its tasks on the surviving
node and the stage's output is byte-identical to the clean run's (``conftest.clean_run``).

The kill is aimed: the test watches the worker processes' titles (Ray names a busy worker
``ray::<task>``) and SIGKILLs every process of the node whose worker is running one of the
stage's tasks at once, as the loss of a machine would, so the task dies mid-way. It checks with
Ray's state API that a task of the job was retried and restarts the node
(``local-cluster.sh node I``), even when the run failed, for the tests that follow. The stages
are small: a task seen running can end before the kill lands, and then the run proves nothing
and the stage runs again, up to ``ATTEMPTS`` times.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import psutil
import pytest
from ray.job_submission import JobStatus
from ray.util.state.common import StateResource

from taggant.jobs import graph
from taggant.jobs.submit import submit
from tests.cluster.conftest import BUCKET, JOB_ENV, write_spec
from tests.cluster.test_multinode import wait
from tests.digests import folder_digests

NOT_TASKS = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")
"""Titles of a raylet's children that run no task: an idle worker and the node's agents."""
KILL_TIMEOUT_S = 300
ATTEMPTS = 3


def busy_worker(cluster, task_title: str | None) -> int:
    """The number of the first worker node seen running a task (named ``ray::<task_title>``, or
    any task when ``None``)."""
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
                number, _ = cluster.raylet(node_id)
                if number:  # a worker node; the head runs no tasks
                    return number
        time.sleep(0.05)
    pytest.fail(f"no worker ran {task_title or 'a task'} within {KILL_TIMEOUT_S} s")


def killed_run(cluster, clean_run, folder: Path, stage: str, task_title: str | None) -> set[str]:
    """Runs ``stage`` on the cluster in ``folder`` (the stages before it copied from the clean
    run, so the job skips them), kills the worker node running one of its tasks, waits for the
    job to succeed and starts the node again; returns the names of the tasks Ray ran again."""
    spec = write_spec(folder, f"s3://{BUCKET}/store-{stage}-fault-{folder.name}")
    for name in graph.UPSTREAM[stage] - {stage}:
        shutil.copytree(clean_run.folder(name), folder / "work" / clean_run.folder(name).name)
    submission = submit(spec, cluster.address, until=stage, env=JOB_ENV)
    number = busy_worker(cluster, task_title)
    jobs = cluster.jobs()
    try:
        doomed = cluster.node(number)
        for process in doomed:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(doomed, timeout=60)
        status = wait(cluster, submission, timeout_s=600)
        assert status == JobStatus.SUCCEEDED, jobs.get_job_logs(submission)
    finally:
        cluster.script("node", str(number))
        cluster.wait_for_workers()
    tasks = cluster.list(StateResource.TASKS, job_id=jobs.get_job_info(submission).job_id)
    return {t["func_or_class_name"] for t in tasks if t["attempt_number"] > 0}


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize(
    "stage, task_title",
    [("dedup", None), ("tokenize", "tokenize_shard")],
    ids=["dedup", "tokenize"],
)
def test_a_worker_killed_mid_stage_changes_no_byte(cluster, clean_run, tmp_path, stage, task_title):
    for attempt in range(ATTEMPTS):
        folder = tmp_path / f"try{attempt}"
        folder.mkdir()
        if retried := killed_run(cluster, clean_run, folder, stage, task_title):
            break
    else:
        pytest.fail(f"in {ATTEMPTS} runs the kill never hit a running task")
    assert task_title is None or task_title in " ".join(retried), retried
    [output] = (folder / "work").glob(f"{stage}-*")
    assert output.name == clean_run.folder(stage).name
    # spec.yaml names the work dir, the one thing that differs between the two runs.
    assert folder_digests(str(output), {"spec.yaml"}) == folder_digests(
        str(clean_run.folder(stage)), {"spec.yaml"}
    )
