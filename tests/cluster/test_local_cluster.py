"""cluster/local-cluster.sh starts a real multi-node Ray with token auth on (the session's
``cluster``; its teardown checks that ``stop`` ends every process it started, and only those)."""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests.cluster.conftest import SCRIPT, WORKERS


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_head_and_two_workers_with_token_auth(cluster):
    assert requests.get(f"{cluster.address}/api/version", timeout=10).status_code == 401
    reply = requests.get(f"{cluster.address}/api/version", headers=cluster.headers, timeout=10)
    assert reply.status_code == 200
    nodes = cluster.alive_nodes()
    cpus = sorted(n["resources_total"].get("CPU", 0) for n in nodes)
    assert cpus == [0] + [1] * WORKERS
    assert [n["is_head_node"] for n in nodes].count(True) == 1
    assert len(cluster.family()) > 3 * WORKERS  # per node: `ray start`, raylet, agents, ...


@pytest.mark.ray
@pytest.mark.timeout(1800)
def test_a_running_worker_is_not_started_twice(cluster):
    again = subprocess.run(
        ["bash", str(SCRIPT), "node", "1"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "worker 1 is still running" in again.stderr
    bad = subprocess.run(
        ["bash", str(SCRIPT), "node", "one"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "usage:" in bad.stderr
