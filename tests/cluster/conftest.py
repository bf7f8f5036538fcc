"""A real multi-node Ray cluster on this machine, started once for the tests that need one.

``cluster/local-cluster.sh`` starts a head (0 CPUs) and two worker nodes (1 CPU each), each a
separate set of Ray processes (GCS, raylet, agents) with its own temp dir, token auth on, in a
private HOME. The nodes run a Python that has every dependency but cannot import taggant: a
venv without pip whose only site entry is a ``.pth`` naming this environment's site-packages.
``.pth`` files inside a folder named that way are not processed, so the editable install's
finder (``__editable__...pth``) never runs and ``import taggant`` fails there. The only taggant
a job can run is the one ``taggant submit`` ships in its runtime_env. Making that venv takes
about half a second; a second environment with the dependencies installed would take minutes
and gigabytes (torch, megatron-core, Ray).

The nodes have placeholder AWS keys in their environment, as a cloud identity would give them,
but not the S3 endpoint: a job reaches moto's server only through the ``AWS_ENDPOINT_URL`` that
``taggant submit --env`` forwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from ray.job_submission import JobSubmissionClient
from ray.util.state import StateApiClient
from ray.util.state.common import ListApiOptions, StateResource

from taggant.jobs.submit import submit
from tests import s3
from tests.conftest import TINY_SPEC
from tests.net import free_ports

SCRIPT = Path(__file__).resolve().parents[2] / "cluster" / "local-cluster.sh"
WORKERS = 2
NODE_START_TIMEOUT_S = 600
SCRIPT_TIMEOUT_S = 3 * 3 * NODE_START_TIMEOUT_S
"""Three nodes, three tries each. A node starts in seconds on an idle 2-core machine and in
minutes when the machine is loaded: these only bound a hang."""


def bare_python(folder: Path) -> Path:
    """A venv in ``folder`` that imports this environment's packages but not taggant, with a
    ``ray`` command beside its ``python``; returns its ``bin`` folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    [site] = (folder / "lib").glob("python*/site-packages")
    ours = [p for p in sys.path if p.endswith("site-packages") and not p.startswith(str(folder))]
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    python = folder / "bin" / "python"
    ray = folder / "bin" / "ray"
    ray.write_text(
        f"#!{python}\nimport sys\nfrom ray.scripts.scripts import main\nsys.exit(main())\n"
    )
    ray.chmod(0o755)
    return folder / "bin"


@dataclass
class Cluster:
    """The running cluster: its dashboard ``address``, the auth ``token``, the script's state
    folder and the environment the script runs with."""

    address: str
    token: str
    state: Path
    env: dict[str, str]
    python: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def jobs(self) -> JobSubmissionClient:
        return JobSubmissionClient(self.address, headers=self.headers)

    def script(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
        )
        assert done.returncode == 0, f"local-cluster.sh {' '.join(args)}: {done.stderr}"
        return done

    def pids(self) -> list[int]:
        """The ``ray start`` processes the script launched (each its node's session leader), in
        launch order: the head first."""
        return [int(pid) for pid in (self.state / "pids").read_text().split()]

    def family(self) -> list[psutil.Process]:
        """Every live process of the nodes the script launched: of their sessions."""
        sessions = set(self.pids())
        return [p for p in psutil.process_iter() if _session(p.pid) in sessions]

    def node(self, number: int) -> list[psutil.Process]:
        """Every live process of worker node ``number``: of its ``ray start``'s session."""
        marker = f"{self.state}/ray-w{number}"
        leaders = {p.pid for p in self.family() if marker in _cmdline(p)}
        return [p for p in self.family() if _session(p.pid) in leaders]

    def raylet(self, node_id: str) -> tuple[int, psutil.Process]:
        """The worker number (1-based; 0 for the head) and the raylet process of the node
        ``node_id``."""
        [(cmdline, raylet)] = [
            (" ".join(p.cmdline()), p)
            for p in self.family()
            if p.name() == "raylet" and f"--node_id={node_id}" in p.cmdline()
        ]
        worker = re.search(r"/ray-w(\d+)/", cmdline)
        return (int(worker[1]) if worker else 0), raylet

    def state_api(self) -> StateApiClient:
        return StateApiClient(self.address, headers=self.headers)

    def list(self, resource: StateResource, **filters: str) -> list[dict]:
        """Ray's state API: every ``resource`` (tasks, nodes, ...) matching ``filters``."""
        options = ListApiOptions(
            filters=[(k, "=", v) for k, v in filters.items()], detail=True, limit=10_000
        )
        # Not raise_on_missing_output: Ray counts the rows a filter drops as missing.
        return [asdict(x) for x in self.state_api().list(resource, options, False)]

    def alive_nodes(self) -> list[dict]:
        return self.list(StateResource.NODES, state="ALIVE")

    def wait_for_workers(self, count: int = WORKERS, timeout_s: float = 120) -> None:
        """Until ``count`` worker nodes (nodes with CPUs) are alive."""
        deadline = time.monotonic() + timeout_s
        while len([n for n in self.alive_nodes() if not n["is_head_node"]]) != count:
            assert time.monotonic() < deadline, f"not {count} live workers: {self.alive_nodes()}"
            time.sleep(1)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:  # it has exited
        return None


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A head and two worker nodes, token auth on; after the session, ``stop`` must end every
    process the script started."""
    root = Path(tempfile.mkdtemp(prefix="tgc", dir="/tmp"))  # short: Ray's socket paths
    state = root / "c"
    (root / "home").mkdir()
    gcs, dashboard, client, agent = free_ports(4)
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "AWS_ENDPOINT_URL",
            "PYTHONPATH",
            "RAY_ADDRESS",
            "RAY_AUTH_TOKEN",
            "RAY_AUTH_TOKEN_PATH",
        }
    }
    env.update(
        s3.CREDENTIALS,
        TAGGANT_LOCAL_CLUSTER=str(state),
        GCS_PORT=str(gcs),
        DASHBOARD_PORT=str(dashboard),
        CLIENT_PORT=str(client),
        AGENT_PORT=str(agent),
        START_TIMEOUT_S=str(NODE_START_TIMEOUT_S),
        HOME=str(root / "home"),
        PATH=f"{bare_python(root / 'nodes-python')}{os.pathsep}{os.environ['PATH']}",
    )
    started = Cluster(
        f"http://127.0.0.1:{dashboard}", "", state, env, root / "nodes-python" / "bin" / "python"
    )
    ours: list[psutil.Process] = []
    try:
        started.script("start", str(WORKERS))
        started.token = (state / "auth_token").read_text().strip()
        started.wait_for_workers()
        yield started
    finally:
        if (state / "pids").exists():
            ours = started.family()
            started.script("stop")
        shutil.rmtree(root, ignore_errors=True)
    assert not [p for p in ours if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


SHARD_DOCS = 120
"""Six corpus shards of the Debian copyright files, so every data stage has tasks for both nodes."""
BUCKET = "cluster"
CORPUS_KEY = "corpus/debian-copyright.jsonl.zst"
JOB_ENV = ["AWS_ENDPOINT_URL"]
"""What ``taggant submit --env`` forwards: the object store's endpoint, no keys."""


def write_spec(folder: Path, store: str) -> Path:
    """The tiny experiment with its corpus on S3, its store at ``store`` and its work dir in
    ``folder/work`` (local disk, which every node of this one-machine cluster shares)."""
    spec = {
        **TINY_SPEC,
        "corpus": {"paths": [f"s3://{BUCKET}/{CORPUS_KEY}"], "max_shard_docs": SHARD_DOCS},
        "work_dir": str(folder / "work"),
        "store": {"url": store},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@dataclass(frozen=True)
class Run:
    """An experiment submitted to the cluster: its spec, submission id, Ray job id, and the
    node ids of the worker nodes it ran on."""

    spec: Path
    submission: str
    job_id: str
    workers: frozenset[str]

    @property
    def work_dir(self) -> Path:
        return self.spec.parent / "work"

    def folder(self, stage: str) -> Path:
        [folder] = self.work_dir.glob(f"{stage}-*")
        return folder


@pytest.fixture(scope="session")
def token_env(cluster) -> Iterator[None]:
    """The client side of token auth: the cluster's token where ``taggant submit`` looks."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_TOKEN", cluster.token)
        yield


@pytest.fixture(scope="session")
def clean_run(cluster, token_env, s3_server, debian_corpus, tmp_path_factory) -> Run:
    """The tiny experiment, end to end, submitted to the cluster with ``taggant submit``: corpus
    and store on S3, work dir on shared disk. No fault: the reference for the fault tests."""
    s3_server.bucket(BUCKET)
    s3_server.client.upload_file(
        str(debian_corpus / "debian-copyright.jsonl.zst"), BUCKET, CORPUS_KEY
    )
    spec = write_spec(tmp_path_factory.mktemp("clean"), f"s3://{BUCKET}/store")
    workers = frozenset(n["node_id"] for n in cluster.alive_nodes() if not n["is_head_node"])
    submission = submit(spec, cluster.address, follow=True, env=JOB_ENV)
    return Run(spec, submission, cluster.jobs().get_job_info(submission).job_id, workers)
