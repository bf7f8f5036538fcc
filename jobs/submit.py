"""Running an experiment on a Ray cluster through the Job Submission API, and reading its progress.

``submit`` checks the spec here, so spec errors never reach the cluster. It then ships the code
(``taggant.sketches``, ``taggant.pipeline`` and ``taggant.jobs``, staged as one ``taggant``
package in ``py_modules``) and the spec file (alone in the job's ``working_dir``). On the
cluster, the cluster's own ``python`` runs ``python -m taggant.jobs run <spec> --address auto``
with the ``--set`` overrides and the ``--env`` variables. The shipped package comes first on the
job's ``PYTHONPATH``, on the driver and on every worker, so the code that runs is the code that
was submitted, even when the cluster's image has another taggant installed or none
(``tests/cluster`` runs its nodes from a Python that cannot import taggant).

Progress is ``taggant status WORK_DIR`` (or ``JOB_ID --address URL``): the job's run records its
resolved spec and stage folders in its work dir (``jobs.resolved``), and the job's metadata names
that work dir, so no ``--set`` of the submission is repeated. It reads the stage folders while a
job runs and after it ends, from any machine that can read the work dir. ``hints`` prints these
commands, and Ray's own, as they run in this shell.

Token auth (on by default for local clusters since Ray 2.59, and turned on by KubeRay's
``authOptions``): the client sends ``Authorization: Bearer <token>``. It looks for the token where
Ray does, in this order: ``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH``, then
``~/.ray/auth_token`` (skipped when ``RAY_AUTH_MODE=disabled``). This module builds the header
itself because Ray's client only sends a token when the ``RAY_AUTH_MODE`` it read once, when the
process started, was ``token``. So an exported ``RAY_AUTH_TOKEN`` is enough. The token never goes
into the job's runtime_env, because anyone who can see the dashboard can read that. The cluster's
own processes already hold the token, and the job's driver gets it from them.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from ray.exceptions import AuthenticationError
from ray.job_submission import JobStatus, JobSubmissionClient

from taggant.jobs.storage import check_work_dir
from taggant.pipeline.errors import ConfigError, TaggantError, one_line
from taggant.pipeline.spec import (
    ExperimentSpec,
    apply_override,
    load_spec,
    parse_spec,
    resolve_paths,
)

PACKAGES = ("sketches", "pipeline", "jobs")
"""The ``taggant.*`` packages a job needs; each is shipped whole (package data included)."""
EXCLUDES = ("__pycache__", "*.pyc", ".ipynb_checkpoints")
"""Left out of the shipped code: byte code and numba caches are per-machine and rebuilt there."""
FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
STATUS_LAG_S = 30.0
"""How long after a job's log stream closes its status may take to turn final."""
TOKEN_FIX = "set RAY_AUTH_TOKEN or RAY_AUTH_MODE=token with the cluster's token"
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "CREDENTIAL", "KEY")
"""Variable names containing any of these are never put in a job's runtime_env."""


class SubmitError(TaggantError):
    """The cluster cannot be reached, refused the submission, or a followed job did not succeed.

    The message is one line that names the fix.
    """


@dataclass(frozen=True)
class Token:
    """An auth token and where it was found (named in errors; the value never is)."""

    value: str = field(repr=False)
    source: str


def find_token() -> Token | None:
    """The token this client sends, or ``None`` when none is configured.

    Looks in the order Ray uses: ``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH``,
    then ``~/.ray/auth_token``. The last is skipped when ``RAY_AUTH_MODE=disabled``. A token given
    explicitly is always sent; it does no harm on a cluster where auth is off.

    Raises:
        SubmitError: ``RAY_AUTH_TOKEN_PATH`` cannot be read or is empty (Ray aborts there as well,
            rather than quietly falling back), or ``RAY_AUTH_MODE=token`` and no token is found.
    """
    if value := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return Token(value, "RAY_AUTH_TOKEN")
    if path := os.environ.get("RAY_AUTH_TOKEN_PATH"):
        try:
            value = Path(path).expanduser().read_text().strip()
        except OSError:
            value = ""
        if not value:
            raise SubmitError(
                f"RAY_AUTH_TOKEN_PATH={path} cannot be read or is empty: "
                "point it at the file holding the cluster's token"
            )
        return Token(value, f"RAY_AUTH_TOKEN_PATH ({path})")
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    default = Path.home() / ".ray" / "auth_token"
    if mode != "disabled" and default.is_file() and (value := default.read_text().strip()):
        return Token(value, str(default))
    if mode == "token":
        raise SubmitError(
            "RAY_AUTH_MODE=token but no token was found: set RAY_AUTH_TOKEN "
            "(or RAY_AUTH_TOKEN_PATH, or write ~/.ray/auth_token) with the "
            "cluster's token"
        )
    return None


def submit(
    spec_path: str | Path,
    address: str,
    overrides: Sequence[str] = (),
    follow: bool = False,
    until: str | None = None,
    env: Sequence[str] = (),
) -> str:
    """Submit ``taggant run`` of a spec to the Ray cluster whose dashboard is at ``address``.

    Args:
        spec_path: the experiment spec (YAML). Its local paths (``work_dir``, ``store.url``,
            ``corpus.paths``, ...) must be absolute paths that every node sees, or URLs. Relative
            paths would resolve inside the job's temporary working dir on the cluster.
        address: the dashboard's URL, ``http://HOST:8265``; ``http://`` is assumed when no
            scheme is given.
        overrides: ``a.b=v`` spec overrides; they are checked here and forwarded as ``--set``.
        follow: stream the job's logs to stdout until the job ends.
        until: the last stage to run (``taggant run --until``); all stages when ``None``.
        env: environment variables for the job's driver and workers (``runtime_env``
            ``env_vars``): ``NAME`` takes the value it has here, ``NAME=VALUE`` sets it, e.g. an
            object store's endpoint (``AWS_ENDPOINT_URL``). Never secrets: see ``job_env``.

    Returns:
        The job's submission id (use it with ``ray job status|logs|stop``).

    Raises:
        ConfigError: the spec (with its overrides) is invalid, has relative local paths, or keeps
            tokenize or a later stage on an object store; an ``env`` entry is unset here or names
            a secret.
        SubmitError: the cluster cannot be reached or refuses the token, or a followed job ended
            FAILED or STOPPED.
    """
    spec_path = Path(spec_path)
    spec = check_shippable(spec_path, overrides)
    check_work_dir(spec.work_dir, until)
    env_vars = job_env(env)
    address = _http(address)
    client = _client(address)
    with tempfile.TemporaryDirectory(prefix="taggant-submit-") as staging:
        (Path(staging) / "spec").mkdir()
        shutil.copyfile(spec_path, Path(staging) / "spec" / spec_path.name)
        set_args = [arg for override in overrides for arg in ("--set", override)]
        command = [
            "python",
            "-m",
            "taggant.jobs",
            "run",
            spec_path.name,
            "--address",
            "auto",
            *set_args,
            *(["--until", until] if until else []),
        ]
        job_id = client.submit_job(
            entrypoint=shlex.join(command),
            runtime_env=runtime_env(Path(staging), env_vars),
            # What `taggant status|fit` need to find the run's record (jobs.resolved.from_job).
            metadata={"experiment": spec.name, "spec": spec_path.name, "work_dir": spec.work_dir},
        )
    if follow:
        final = follow_job(address, job_id)
        if final != JobStatus.SUCCEEDED.value:
            raise SubmitError(
                f"job {job_id} ended {final}: its log is above "
                f"(again with `{ray_job(address, 'logs', job_id)}`)"
            )
    return job_id


def follow_job(address: str, job_id: str, out: TextIO | None = None) -> str:
    """Stream a job's logs to ``out`` (stdout by default) until the job ends.

    Returns:
        The job's final status: ``SUCCEEDED``, ``FAILED`` or ``STOPPED``.

    Raises:
        SubmitError: the log stream broke (the job may still be running), or the job's status did
            not turn final within ``STATUS_LAG_S`` of its log stream closing.
    """
    out = out or sys.stdout
    address = _http(address)
    client = _client(address)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(tail())
    except RuntimeError as e:
        raise SubmitError(
            f"lost the log stream of job {job_id} ({e}); it may still be running: "
            f"`{ray_job(address, 'status', job_id)}`"
        ) from None
    deadline = time.monotonic() + STATUS_LAG_S
    while (state := client.get_job_status(job_id)) not in FINAL:
        if time.monotonic() > deadline:
            raise SubmitError(
                f"job {job_id}'s log stream closed but it is still {state.value}: "
                f"check `{ray_job(address, 'status', job_id)}`"
            )
        time.sleep(0.5)
    return state.value


def ray_job(address: str, *args: str) -> str:
    """A ``ray job ARGS...`` command line that works as printed in this shell: with
    ``RAY_AUTH_MODE=token`` in front when this client finds a token, because Ray's CLI sends the
    token (from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) only in
    that mode, and fails with an ``AuthenticationError`` without it."""
    command = shlex.join(["ray", "job", *args, "--address", _http(address)])
    return f"RAY_AUTH_MODE=token {command}" if find_token() else command


def hints(job_id: str, address: str, work_dir: str, experiment: str) -> list[tuple[str, str]]:
    """``(what, command)`` for a submitted job, each command runnable as printed here: the job's
    logs, state and stop through Ray's CLI, and its progress and results through taggant, which
    find the run by its work dir (``jobs.resolved``), without the submission's ``--set``s."""
    where = [work_dir, "--experiment", experiment]
    return [
        ("logs", ray_job(address, "logs", "--follow", job_id)),
        ("state", ray_job(address, "status", job_id)),
        ("stop", ray_job(address, "stop", job_id)),
        ("progress", shlex.join(["taggant", "status", *where])),
        ("results", shlex.join(["taggant", "fit", "--work-dir", *where])),
    ]


def job_metadata(address: str, job_id: str) -> dict[str, str]:
    """The metadata of a job (``submit`` records ``experiment``, ``spec`` and ``work_dir``).

    Raises:
        SubmitError: the cluster cannot be reached or refuses the token, or has no such job.
    """
    client = _client(_http(address))
    try:
        return client.get_job_info(job_id).metadata or {}
    except RuntimeError as e:  # Ray's client raises it for any refusal (404: no such job)
        raise SubmitError(
            f"the Ray cluster at {_http(address)} gave no job {job_id!r} ({one_line(e)}): "
            f"`{ray_job(address, 'list')}` lists its jobs"
        ) from None


def check_shippable(spec_path: str | Path, overrides: Sequence[str] = ()) -> ExperimentSpec:
    """Check that a spec with its overrides can run on a cluster: it is valid and every local
    path in it is absolute (a cluster job's working dir is temporary and differs per node).

    Returns:
        The spec as written, before ``load_spec`` makes its paths absolute.

    Raises:
        ConfigError: every spec problem, or the relative local paths, each with its fix.
    """
    load_spec(spec_path, overrides)  # every spec error surfaces here, before any cluster call
    raw = yaml.safe_load(Path(spec_path).read_text())
    for override in overrides:
        apply_override(raw, override)
    spec = parse_spec(raw)
    # The fields resolve_paths would change are the relative ones: this stays in step with it.
    written = _leaves(spec.model_dump(mode="json"))
    resolved = _leaves(resolve_paths(spec, Path("/")).model_dump(mode="json"))
    relative = [(where, value) for where, value in written.items() if resolved[where] != value]
    if relative:
        raise ConfigError(
            [
                (
                    where,
                    f"relative path {value!r} would resolve inside the job's temporary working dir "
                    "on the cluster; give an absolute path on storage every node shares, or an "
                    f"s3:// / gs:// URL (e.g. --set {_override_key(where)}=/shared/...)",
                )
                for where, value in relative
            ]
        )
    return spec


def runtime_env(staging: Path, env_vars: dict[str, str]) -> dict[str, Any]:
    """A job's runtime_env: ``staging/spec`` (what the entrypoint reads) as its working dir, the
    code of this taggant staged in ``staging/code`` (``stage_code``) as its py_modules, and
    ``env_vars``."""
    code = stage_code(staging / "code")
    return {
        "working_dir": str(staging / "spec"),
        "py_modules": [str(code)],
        **({"env_vars": env_vars} if env_vars else {}),
    }


def job_env(entries: Sequence[str]) -> dict[str, str]:
    """``--env`` entries as a job's ``env_vars``: ``NAME`` with its value here, or ``NAME=VALUE``.

    A runtime_env is readable by anyone who can see the dashboard, so names that look like
    secrets are refused: the nodes' cloud identity (an IAM role, workload identity) or their own
    environment must supply credentials.

    Raises:
        ConfigError: a name is unset here, is not a valid variable name, or names a secret.
    """
    env, problems = {}, []
    for entry in entries:
        name, given, value = entry.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.append(("--env", f"{entry!r} is not NAME or NAME=VALUE"))
        elif any(word in name.upper() for word in SECRET_WORDS):
            problems.append(
                (
                    "--env",
                    f"{name} looks like a secret, and a job's runtime_env is "
                    "readable from the dashboard: give the nodes credentials "
                    "through their cloud identity or their own environment",
                )
            )
        elif not given and name not in os.environ:
            problems.append(("--env", f"{name} is not set here; give its value as {name}=VALUE"))
        else:
            env[name] = value if given else os.environ[name]
    if problems:
        raise ConfigError(problems)
    return env


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b[0].c": leaf}`` for every leaf of a JSON-like tree (the ConfigError path style)."""
    if isinstance(tree, dict):
        paths = {key: f"{prefix}.{key}" if prefix else key for key in tree}
        return {k: v for key, sub in tree.items() for k, v in _leaves(sub, paths[key]).items()}
    if isinstance(tree, list):
        return {
            k: v for i, sub in enumerate(tree) for k, v in _leaves(sub, f"{prefix}[{i}]").items()
        }
    return {prefix: tree}


def _override_key(path: str) -> str:
    """``corpus.paths[0]`` (a ConfigError path) as ``--set`` spells it: ``corpus.paths.0``."""
    return re.sub(r"\[(\d+)\]", r".\1", path)


def stage_code(folder: Path) -> Path:
    """Copy the ``taggant.*`` packages that run here into ``folder/taggant`` and return it.

    The copy is a regular package (it gets an ``__init__.py``), so on the cluster it shadows any
    taggant installed in the image instead of merging with it as a namespace package would.
    """
    root = folder / "taggant"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text('"""taggant, as shipped by `taggant submit`."""\n')
    for name in PACKAGES:
        shutil.copytree(
            _package_dir(f"taggant.{name}"), root / name, ignore=shutil.ignore_patterns(*EXCLUDES)
        )
    return root


def _package_dir(name: str) -> str:
    """The folder of the package that runs here (a checkout or site-packages).

    Uses ``__path__``, not ``__file__``: setuptools' editable finder can load a package as a
    namespace package, which has no ``__file__``.
    """
    return next(p for p in importlib.import_module(name).__path__ if Path(p).is_dir())


def _http(address: str) -> str:
    """The dashboard URL with its scheme (``http://`` by default, as Ray assumes), as messages
    and the ``ray job`` hints print it."""
    return address if "://" in address else f"http://{address}"


def _client(address: str) -> JobSubmissionClient:
    """A Job Submission client that sends the token; its constructor already talks to the cluster.

    Raises:
        SubmitError: nothing answers at ``address``, or the cluster refuses the token (or its
            absence).
    """
    token = find_token()
    headers = {"Authorization": f"Bearer {token.value}"} if token else {}
    try:
        return JobSubmissionClient(address, headers=headers)
    except AuthenticationError:
        if token is None:
            raise SubmitError(
                f"the Ray cluster at {address} refused the submission (token "
                f"authentication is on and no token was sent): {TOKEN_FIX}"
            ) from None
        raise SubmitError(
            f"the Ray cluster at {address} rejected the token from {token.source}: {TOKEN_FIX}"
        ) from None
    except ConnectionError:
        raise SubmitError(
            f"no Ray dashboard answers at {address}: give the head's dashboard URL "
            "(http://HOST:8265, through `kubectl port-forward` or an SSH tunnel; see "
            "cluster/README.md)"
        ) from None
