"""Start-up of the CLI: ``taggant --help`` and ``taggant validate`` (which loads the spec and
checks the files it names) against a bare interpreter, and the read-only ``taggant plan`` and
``taggant status`` against a bare ``import ray, torch``, in one run.

Usage (repository root):
    .venv/bin/python bench/cli_startup.py [--repeat 5]

The spec is the shipped demo with its corpus replaced by the Debian copyright files
(``pipeline.corpora``, written once to a temporary folder) and a fresh ``work_dir``, so every stage
is ``pending`` and nothing but the graph is computed. Each command is a new process
(``python -m taggant.jobs ...``); the commands take turns, so a change of machine load hits all of
them. Printed per command, best of ``--repeat`` rounds: the CPU seconds of the process (user +
system, from ``getrusage``: little changed by other processes' load), its wall seconds, and each
one's ratio to the bare interpreter (``python -c pass``, the same venv's interpreter with its
``site``); ``validate's packages`` imports only what validate cannot do without
(``VALIDATE_PACKAGES``), its floor. The load average is printed before and after: on a shared
machine, read the CPU seconds and the ratios. What ``validate`` may import is pinned by
``tests/test_startup.py``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from taggant.jobs.cli import EXPERIMENTS
from taggant.pipeline import corpora

VALIDATE_PACKAGES = """
import fsspec, numpy, tokenizers, xxhash, yaml, zstandard
from pydantic import BaseModel

class Spec(BaseModel):  # pydantic loads its schema machinery with the first model
    seed: int
"""
"""What ``validate`` cannot do without: the spec (pydantic, yaml), drawing items as the plan stage
does (numpy, xxhash), corpus paths on any filesystem (fsspec), counting pre-tokens (tokenizers),
zstd headers (zstandard). Their import and one model class are the floor of its start-up."""


def write_spec(folder: Path) -> Path:
    corpora.write_jsonl_zst(corpora.debian_docs("copyright"), folder / "copyright.jsonl.zst")
    spec = yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text())
    spec.update(
        corpus={"paths": [str(folder / "*.jsonl.zst")]},
        work_dir=str(folder / "work"),
        store={"url": str(folder / "store")},
    )
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cpu_and_wall_s(argv: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    subprocess.run(argv, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = str(write_spec(Path(tmp)))
        cli = [sys.executable, "-m", "taggant.jobs"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "--help": [*cli, "--help"],
            "validate": [*cli, "validate", spec],
            "validate's packages": [sys.executable, "-c", VALIDATE_PACKAGES],
            "plan": [*cli, "plan", spec],
            "status": [*cli, "status", spec],
            "import ray, torch": [sys.executable, "-c", "import ray, torch"],
        }
        print(f"load average before: {os.getloadavg()}")
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        wall: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, argv in commands.items():
                c, w = cpu_and_wall_s(argv)
                cpu[name].append(c)
                wall[name].append(w)
        print(f"load average after:  {os.getloadavg()}")
    cpu_floor, wall_floor = min(cpu["python -c pass"]), min(wall["python -c pass"])
    print(f"{'command':<20} {'CPU s':>6} {'/ bare':>7} {'wall s':>7} {'/ bare':>7}")
    for name in commands:
        print(
            f"{name:<20} {min(cpu[name]):6.3f} {min(cpu[name]) / cpu_floor:7.1f} "
            f"{min(wall[name]):7.3f} {min(wall[name]) / wall_floor:7.1f}"
        )


if __name__ == "__main__":
    main()
