"""cluster/local-cluster.sh starts a real multi-node Ray with token auth on, and ``stop`` ends every
process it started, and only those."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests
from ray.job_submission import JobStatus, JobSubmissionClient

from tests.net import free_ports

SCRIPT = Path(__file__).resolve().parents[2] / "cluster" / "local-cluster.sh"
FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
JOB_TIMEOUT_S = 120


def family(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_local_cluster_of_two_nodes_with_token_auth(tmp_path):
    state = Path(tempfile.mkdtemp(prefix="tglc", dir="/tmp")) / "c"  # short: Ray's socket paths
    gcs, dashboard, client, agent = free_ports(4)
    env = {**os.environ, "TAGGANT_LOCAL_CLUSTER": str(state), "GCS_PORT": str(gcs),
           "DASHBOARD_PORT": str(dashboard), "CLIENT_PORT": str(client), "AGENT_PORT": str(agent),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HOME": str(tmp_path)}
    address = f"http://127.0.0.1:{dashboard}"
    ours: list[psutil.Process] = []
    try:
        started = subprocess.run(["bash", str(SCRIPT), "start", "1"], env=env, capture_output=True,
                                 text=True, timeout=240)
        assert started.returncode == 0, started.stderr
        assert f"--address {address}" in started.stdout
        ours = [p for pid in map(int, (state / "pids").read_text().split()) for p in family(pid)]
        assert len(ours) > 4  # two `ray start`s and their GCS, raylets, dashboard, agents...

        assert requests.get(f"{address}/api/version", timeout=10).status_code == 401
        token = (state / "auth_token").read_text().strip()
        jobs = JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"})
        count_nodes = "import ray; ray.init(); print('nodes', len(ray.nodes()))"
        job = jobs.submit_job(entrypoint=f'python -c "{count_nodes}"')
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while (status := jobs.get_job_status(job)) not in FINAL and time.monotonic() < deadline:
            time.sleep(0.5)
        assert status == JobStatus.SUCCEEDED, jobs.get_job_logs(job)
        assert "nodes 2" in jobs.get_job_logs(job)
    finally:
        if state.exists():
            stopped = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True,
                                     text=True, timeout=120)
            assert stopped.returncode == 0, stopped.stderr
        shutil.rmtree(state.parent, ignore_errors=True)
    assert not [p for p in ours if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
