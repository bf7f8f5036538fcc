"""The fast tier's guard (``tests.tiers``) fails a test that starts Ray without the ``ray`` marker,
run on small test files in a pytest of their own."""

from __future__ import annotations

import os
from pathlib import Path

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]
FAKE_RAYLET = """
import os, stat, subprocess, pytest

@pytest.fixture
def local_ray():
    yield "no Ray here: the name is what the guard reads"

def _run(tmp_path, name):
    program = tmp_path / name
    program.write_text("#!/bin/sh\\nexit 0\\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    subprocess.run([str(program)], check=True)

def test_launches_a_raylet(tmp_path):
    _run(tmp_path, "raylet")

@pytest.mark.ray
def test_launches_a_raylet_marked(tmp_path):
    _run(tmp_path, "raylet")

def test_starts_ray_from_a_shell(tmp_path):
    subprocess.run("ray start --help > /dev/null 2>&1; true", shell=True, check=True)

def test_launches_another_program(tmp_path):
    _run(tmp_path, "rayleigh")

def test_uses_the_ray_fixture(local_ray):
    pass
"""


def test_a_test_that_starts_ray_must_carry_the_marker(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    pytester.makeini("[pytest]\nmarkers =\n    ray: starts Ray\n")
    pytester.makepyfile(test_fake=FAKE_RAYLET)
    result = pytester.runpytest_subprocess("-p", "tests.tiers", "-p", "no:cacheprovider", "-rA")
    # Unmarked launches fail at tear-down (their calls passed); the fixture user at set-up.
    result.assert_outcomes(passed=4, errors=3)
    result.stdout.fnmatch_lines(
        [
            "ERROR test_fake.py::test_launches_a_raylet - *",
            "ERROR test_fake.py::test_starts_ray_from_a_shell - *",
            "ERROR test_fake.py::test_uses_the_ray_fixture - *",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(["E * Failed: started Ray (*/raylet) without the `ray` marker*"])
    result.stdout.fnmatch_lines(["E * Failed: uses local_ray, which starts Ray: mark it `ray`"])
