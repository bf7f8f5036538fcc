"""``submit`` and ``status`` against a real Ray head started for this module, with token auth on.

The head runs in its own process session, with a private temp dir, a private HOME (so it neither
reads nor writes the user's ~/.ray/auth_token) and free ports. Teardown stops exactly the processes
it started, by pid. ``ray stop`` would stop every Ray instance on the machine.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
import yaml
from ray.job_submission import JobStatus, JobSubmissionClient

from taggant.jobs import resolved
from taggant.jobs.cli import EXPERIMENTS, main
from taggant.jobs.graph import build, status
from taggant.jobs.submit import SubmitError, find_token, hints, submit
from taggant.pipeline import corpora
from taggant.pipeline.errors import ConfigError
from taggant.pipeline.spec import load_spec
from tests.corpus import pinned_docs
from tests.net import free_ports

START_TIMEOUT_S = 90
OVERRIDES = ["seed=7", "dedup.threshold=0.85"]


@dataclass(frozen=True)
class Head:
    address: str
    token: str


def stop(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` and every process below it (GCS, raylet, dashboard, workers, drivers)."""
    with suppress(psutil.NoSuchProcess):
        root = psutil.Process(proc.pid)
        family = [root, *root.children(recursive=True)]
        for p in family:
            with suppress(psutil.NoSuchProcess):
                p.terminate()
        _, alive = psutil.wait_procs(family, timeout=5)
        for p in alive:
            with suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=10)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[Head]:
    """A Ray head with the dashboard on loopback, 2 CPUs, and token auth on."""
    token = secrets.token_hex(32)
    root = Path(tempfile.mkdtemp(prefix="tgh", dir="/tmp"))  # short: Ray's socket paths are limited
    (root / "home").mkdir()
    gcs, dashboard, client, agent = free_ports(4)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "HOME": str(root / "home"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }  # jobs' `python` is this one
    env.pop("RAY_ADDRESS", None)
    command = [
        str(bin_dir / "ray"),
        "start",
        "--head",
        "--block",
        "--port",
        str(gcs),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dashboard),
        "--include-dashboard",
        "true",
        "--ray-client-server-port",
        str(client),
        "--dashboard-agent-listen-port",
        str(agent),
        "--min-worker-port",
        "0",
        "--max-worker-port",
        "0",
        "--num-cpus",
        "2",
        "--temp-dir",
        str(root / "ray"),
        "--disable-usage-stats",
    ]
    log = root / "head.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_ready(proc, address, token, log)
        yield Head(address, token)
    finally:
        stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen, address: str, token: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with suppress(requests.ConnectionError, requests.Timeout):
            reply = requests.get(
                f"{address}/api/version", timeout=2, headers={"Authorization": f"Bearer {token}"}
            )
            if reply.status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"no dashboard after {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def write_spec(folder: Path, corpus_glob: str) -> Path:
    """The demo spec with absolute paths under ``folder`` (the cluster is this machine)."""
    spec = yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text())
    spec["corpus"] = {"paths": [corpus_glob]}
    spec["work_dir"] = str(folder / "work")
    spec["store"] = {"url": str(folder / "store")}
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def spec_file(tmp_path) -> Path:
    """A spec over 120 real Debian copyright files (many exact and near duplicates)."""
    docs = pinned_docs("copyright")[:120]
    corpora.write_jsonl_zst(docs, tmp_path / "corpus" / "debian.jsonl.zst")
    return write_spec(tmp_path, str(tmp_path / "corpus" / "*.jsonl.zst"))


@pytest.fixture
def no_token(monkeypatch, tmp_path) -> None:
    """A shell with no token anywhere: no env var, no token file, auth mode as CI sets it."""
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_submission_with_the_token_runs_the_experiment(ray_head, spec_file, monkeypatch, capsys):
    monkeypatch.setenv("RAY_AUTH_TOKEN", ray_head.token)
    spec = load_spec(spec_file, OVERRIDES)
    assert {row["status"] for row in status(spec)} == {"pending"}

    job_id = submit(spec_file, ray_head.address, OVERRIDES, follow=True, until="dedup")

    auth = {"Authorization": f"Bearer {ray_head.token}"}
    client = JobSubmissionClient(ray_head.address, headers=auth)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED
    assert client.get_job_info(job_id).metadata["experiment"] == spec.name
    rows = {row["stage"]: row for row in status(spec)}
    assert [rows[name]["status"] for name in ("ingest", "dedup", "plan")] == [
        "done",
        "done",
        "pending",
    ]
    assert f"dedup-{rows['dedup']['hash']} done in" in capsys.readouterr().out  # the streamed log
    assert rows["ingest"]["summary"].startswith("120 in, 120 kept")
    assert "removed: exact_dup" in rows["dedup"]["summary"]
    # The overrides reached the cluster: the stages ran with them.
    written = yaml.safe_load((Path(rows["ingest"]["folder"]) / "spec.yaml").read_text())
    assert written["seed"] == 7 and written["dedup"]["threshold"] == 0.85
    # The job's run recorded the experiment as it ran: found by the job id, without the overrides.
    found = resolved.from_job(ray_head.address, job_id)
    assert found.spec == spec
    assert found.stages == {s.key.name: s.folder for s in build(spec)}
    # submit's hints work as printed, in a shell that has the token but no RAY_AUTH_MODE.
    printed = dict(hints(job_id, ray_head.address, spec.work_dir, spec.name))
    shell = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    shell.pop("RAY_AUTH_MODE", None)

    def sh(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", command], env=shell, capture_output=True, text=True, timeout=120
        )

    state = sh(printed["state"])
    assert state.returncode == 0 and "succeeded" in state.stdout.lower(), state.stderr
    assert sh(printed["logs"]).returncode == 0
    assert sh(printed["state"].removeprefix("RAY_AUTH_MODE=token ")).returncode != 0
    capsys.readouterr()
    assert main(shlex.split(printed["progress"])[1:]) == 0
    by_work_dir = capsys.readouterr().out
    lines = by_work_dir.splitlines()
    assert any(rows["dedup"]["hash"] in line and "done" in line for line in lines)
    assert main(["status", job_id, "--address", ray_head.address]) == 0
    assert capsys.readouterr().out == by_work_dir


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_submission_without_the_token_is_refused(ray_head, spec_file, no_token):
    with pytest.raises(SubmitError) as refused:
        submit(spec_file, ray_head.address, follow=True)
    message = str(refused.value)
    assert "\n" not in message and "refused" in message
    assert "set RAY_AUTH_TOKEN or RAY_AUTH_MODE=token with the cluster's token" in message


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_wrong_token_is_rejected(ray_head, spec_file, no_token, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    with pytest.raises(SubmitError, match="rejected the token from RAY_AUTH_TOKEN"):
        submit(spec_file, ray_head.address)


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_failed_job_is_an_error_naming_it(ray_head, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAY_AUTH_TOKEN", ray_head.token)
    spec_file = write_spec(tmp_path, str(tmp_path / "nothing-here" / "*.jsonl"))
    with pytest.raises(SubmitError, match=r"job \S+ ended FAILED"):
        submit(spec_file, ray_head.address, follow=True)
    assert "nothing-here" in capsys.readouterr().out  # the job's own error, streamed back


def test_relative_paths_are_refused_before_the_cluster_is_contacted(spec_file):
    # Port 9 (discard) on loopback: were it contacted, the error would be a SubmitError instead.
    with pytest.raises(ConfigError) as refused:
        submit(spec_file, "127.0.0.1:9", ["work_dir=work/demo", "store.url=gs://bucket/store"])
    assert [field for field, _ in refused.value.problems] == ["work_dir"]


def test_spec_errors_are_found_before_the_cluster_is_contacted(spec_file):
    with pytest.raises(ConfigError) as refused:
        submit(spec_file, "127.0.0.1:9", ["dedup.threshold=2"])
    assert refused.value.problems[0][0] == "dedup.threshold"


def test_the_token_is_found_where_ray_looks(tmp_path, monkeypatch, no_token):
    token_file = tmp_path / "token"
    token_file.write_text("from-path\n")
    home_token = tmp_path / "empty-home" / ".ray" / "auth_token"
    home_token.parent.mkdir(parents=True)
    home_token.write_text("from-home")

    assert find_token() is None  # RAY_AUTH_MODE=disabled: the default file is not read
    monkeypatch.delenv("RAY_AUTH_MODE")
    assert find_token().value == "from-home"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert find_token().value == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert find_token().value == "from-env"


def test_token_mode_without_a_token_says_how_to_give_one(monkeypatch, no_token):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(SubmitError, match="set RAY_AUTH_TOKEN"):
        find_token()
