"""Start-up of the read-only CLI commands: ``taggant plan`` and ``taggant status`` against
``taggant validate`` (which only loads the spec) and a bare ``import ray, torch``, in one run.

Usage (repository root):
    .venv/bin/python bench/cli_startup.py [--repeat 5]

The spec is the shipped demo with its corpus replaced by the Debian copyright files
(``pipeline.corpora``, written once to a temporary folder) and a fresh ``work_dir``, so every stage
is ``pending`` and nothing but the graph is computed. Each command is a new process
(``python -m taggant.jobs ...``); the commands take turns, so a change of machine load hits all of
them, and the best and median wall seconds of ``--repeat`` rounds are printed with each one's ratio
to ``validate``. The load average is printed before and after: on a shared machine, read ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from taggant.jobs.cli import EXPERIMENTS
from taggant.pipeline import corpora


def write_spec(folder: Path) -> Path:
    corpora.write_jsonl_zst(corpora.debian_docs("copyright"), folder / "copyright.jsonl.zst")
    spec = yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text())
    spec.update(corpus={"paths": [str(folder / "*.jsonl.zst")]}, work_dir=str(folder / "work"),
                store={"url": str(folder / "store")})
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def wall_s(argv: list[str]) -> float:
    start = time.perf_counter()
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = str(write_spec(Path(tmp)))
        cli = [sys.executable, "-m", "taggant.jobs"]
        commands = {
            "validate": [*cli, "validate", spec],
            "plan": [*cli, "plan", spec],
            "status": [*cli, "status", spec],
            "import ray, torch": [sys.executable, "-c", "import ray, torch"],
        }
        print(f"load average before: {os.getloadavg()}")
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, argv in commands.items():
                times[name].append(wall_s(argv))
        print(f"load average after:  {os.getloadavg()}")
    floor = min(times["validate"])
    print(f"{'command':<20} {'best s':>7} {'median s':>9} {'best / validate':>16}")
    for name, values in times.items():
        print(f"{name:<20} {min(values):7.2f} {statistics.median(values):9.2f} "
              f"{min(values) / floor:16.2f}")


if __name__ == "__main__":
    main()
