"""The ``taggant`` CLI in a fresh interpreter that reports the top-level packages it imported: how
the start-up tests (``tests/test_startup.py``, ``tests/jobs/test_graph.py``) see what a command
loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from taggant.jobs.cli import EXPERIMENTS

# argparse ends `--help` with SystemExit: its code is the command's.
WRAPPER = """
import json, sys
from taggant.jobs.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "packages": sorted({m.split(".")[0] for m in sys.modules})}))
"""


@dataclass(frozen=True)
class CliRun:
    """What one command did: its exit code, the packages it imported, its standard output."""

    code: int
    packages: frozenset[str]
    stdout: str


def run_cli(folder: Path, *argv: str) -> CliRun:
    """Run ``taggant *argv`` in a new interpreter, its log under ``folder``."""
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, XDG_CACHE_HOME=str(folder / "cache")),
    )
    report = json.loads(done.stdout.splitlines()[-1])
    return CliRun(report["code"], frozenset(report["packages"]), done.stdout)


def demo_spec_file(folder: Path, corpus_glob: str) -> Path:
    """The shipped demo spec with its corpus at ``corpus_glob`` and its folders under ``folder``."""
    spec = yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text())
    spec.update(
        corpus={"paths": [corpus_glob]},
        work_dir=str(folder / "w"),
        store={"url": str(folder / "store")},
    )
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
