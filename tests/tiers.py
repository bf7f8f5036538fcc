"""Keeps ``make test-fast`` (``-m "not slow and not ray"``) free of Ray, as a pytest plugin.

A test that starts Ray must carry the ``ray`` marker. Two checks make a missing marker fail the
test instead of silently slowing the fast tier:

* at set-up, a test that uses a fixture which starts Ray (``RAY_FIXTURES``, directly or through
  another fixture);
* at tear-down, a test during which this process launched a Ray daemon or the ``ray`` command
  (seen by an audit hook on ``subprocess.Popen``, which is how Ray starts its GCS and raylet).

Ray started by a grandchild process (a ``taggant`` command run as a subprocess, which starts its
own) is not seen by the second check; such tests use the fixtures or are marked by hand.
"""

from __future__ import annotations

import os
import sys

import pytest

RAY_FIXTURES = {"local_ray", "cluster"}
"""Fixtures that start Ray: the session's local Ray and the multi-node cluster."""
RAY_PROGRAMS = {"gcs_server", "raylet", "ray"}
"""Programs whose launch means Ray is starting: its two daemons and its command-line tool."""

_launched: list[str] = []


def _on_audit(event: str, args: tuple) -> None:
    if event != "subprocess.Popen":
        return
    executable, argv = args[0], args[1]  # argv is a list by now, with the shell first if any
    words = [os.fsdecode(executable)]
    if len(argv) > 2 and argv[1] == "-c":  # `sh -c "ray start ..."`: the command's first word
        words += os.fsdecode(argv[2]).split()[:1]
    _launched.extend(w for w in words if os.path.basename(w) in RAY_PROGRAMS)


sys.addaudithook(_on_audit)


@pytest.fixture(autouse=True)
def _ray_tests_are_marked(request):
    if request.node.get_closest_marker("ray") is not None:
        yield
        return
    used = RAY_FIXTURES & set(request.fixturenames)
    if used:
        pytest.fail(f"uses {', '.join(sorted(used))}, which starts Ray: mark it `ray`")
    start = len(_launched)
    yield
    if launched := _launched[start:]:
        pytest.fail(f"started Ray ({', '.join(launched)}) without the `ray` marker: mark it")
