"""A real ``taggant run`` stopped by a real signal: it exits at once with the shell's code, leaves
no Ray process and no half-committed checkpoint behind, and the next run says where each run
resumes and finishes; the console shows no known third-party warning and every progress line;
the run log holds every stage, the workers' lines and the resume steps."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from taggant.jobs.runtime import KNOWN_WARNINGS
from taggant.pipeline.train.checkpoint import TRACKER, checkpoints_dir, committed_steps
from tests.conftest import tiny_spec_file

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RUNS = ("tiny-2m-40960t-s0-perturbed", "tiny-2m-40960t-s0-standard")
LAST_STEP = 160
STOP_WITHIN_S = 60


class Run:
    """``taggant run SPEC --until probe`` in its own process session, its output in files, every
    process it starts (Ray's too) marked by an environment variable."""

    def __init__(self, spec: Path, name: str):
        self.marker = uuid.uuid4().hex
        self.out, self.err = spec.parent / f"{name}.out", spec.parent / f"{name}.err"
        env = dict(
            os.environ,
            TAGGANT_TEST_SESSION=self.marker,
            RAY_AUTH_MODE="disabled",
            RAY_USAGE_STATS_ENABLED="0",
            # Ray's session under a short folder of its own (socket paths are limited to 107 bytes).
            RAY_TMPDIR=tempfile.mkdtemp(prefix="r", dir="/tmp"),
        )
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "taggant.jobs", "run", str(spec), "--until", "probe"]
                + ["--num-cpus", "2"],
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def stderr(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", self.err.read_text())

    def processes(self) -> list[int]:
        """Live processes carrying this run's marker (the driver, Ray's daemons, its workers)."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if (
                    entry.name.isdigit()
                    and self.marker.encode() in (entry / "environ").read_bytes()
                ):
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours to read
                continue
        return found

    def interrupt_after(self, run_dirs: Callable[[], list[Path]], step: int, signum: int) -> float:
        """Once a run has committed a checkpoint at ``step`` or later, send ``signum`` to the whole
        process group (as a terminal's Ctrl-C does); returns the seconds until the driver exited."""
        deadline = time.monotonic() + 600
        while max([0] + [s for d in run_dirs() for s in committed_steps(str(d))]) < step:
            assert self.proc.poll() is None, f"the run ended before step {step}:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"no checkpoint at step {step}:\n{self.stderr()}"
            time.sleep(0.5)
        sent = time.monotonic()
        os.killpg(self.proc.pid, signum)
        self.proc.wait(timeout=STOP_WITHIN_S)
        return time.monotonic() - sent

    def assert_nothing_left(self) -> None:
        deadline = time.monotonic() + 15  # Ray's daemons exit after the driver's shutdown call
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"processes left behind: {[_cmdline(p) for p in left]}"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(gone)"


def assert_only_committed_checkpoints(run_dir: Path) -> list[int]:
    """Megatron's tracker names a committed checkpoint; returns the committed steps."""
    committed = committed_steps(str(run_dir))
    tracker = Path(checkpoints_dir(str(run_dir))) / TRACKER
    if tracker.exists():
        assert int(tracker.read_text()) in committed, (tracker.read_text(), committed)
    return committed


def assert_stopped_cleanly(run: Run, signum: int, seconds: float) -> None:
    name = signal.Signals(signum).name
    err = run.stderr()
    assert run.proc.returncode == 128 + signum, err
    assert seconds < STOP_WITHIN_S
    assert err.strip().splitlines()[-1].startswith(f"interrupted by {name}: "), err
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    assert err.count("Started a local Ray instance") == 1, err
    run.assert_nothing_left()


def test_signals_stop_a_run_cleanly_and_the_next_run_resumes(debian_corpus, tmp_path):
    spec = tiny_spec_file(tmp_path, debian_corpus)

    def train() -> list[Path]:
        return [d for f in (tmp_path / "work").glob("train-*") for d in f.iterdir() if d.is_dir()]

    first = Run(spec, "first")
    seconds = first.interrupt_after(train, 9, signal.SIGINT)
    assert_stopped_cleanly(first, signal.SIGINT, seconds)
    after_first = {d.name: assert_only_committed_checkpoints(d) for d in train()}

    second = Run(spec, "second")
    seconds = second.interrupt_after(
        train, max(max(s) for s in after_first.values()) + 1, signal.SIGTERM
    )
    assert_stopped_cleanly(second, signal.SIGTERM, seconds)
    for run, steps in after_first.items():
        if steps:
            assert f"{run}: resuming from step {steps[-1]} of {LAST_STEP}" in second.stderr()
    after_second = {d.name: assert_only_committed_checkpoints(d) for d in train()}

    last = Run(spec, "last")
    assert last.proc.wait(timeout=900) == 0, last.stderr()
    err = last.stderr()
    for run, steps in after_second.items():
        if steps:
            assert f"{run}: resuming from step {steps[-1]} of {LAST_STEP}" in err
    [train_folder] = (tmp_path / "work").glob("train-*")
    stats = json.loads((train_folder / "stats.json").read_text())
    assert {r: s["steps"] for r, s in stats["trained"]["runs"].items()} == dict.fromkeys(
        RUNS, LAST_STEP
    )
    # The watchers read every checkpoint the interrupted runs committed: none was half-written.
    assert all(not s["skipped"] for s in stats["runs"].values()), stats["runs"]

    # A quiet console: none of the known third-party warnings; each run's progress lines
    # (lines: bars are opt-in), none merged by Ray's deduplication.
    for category, message, _ in KNOWN_WARNINGS:
        assert not re.search(message, err), f"{category.__name__}: {message} is shown"
    resumed = {run: (steps or [0])[-1] for run, steps in after_second.items()}
    for run in RUNS:
        lines = re.findall(rf"train {run}: step (\d+)/{LAST_STEP} ", err)
        assert [int(s) for s in lines] == list(range(resumed[run] // 10 * 10 + 10, 161, 10))
        assert f"probe {run}: step {LAST_STEP}/{LAST_STEP} probed" in err
    assert "repeated" not in err

    # The run log holds what the console showed, to the end: every stage, worker lines included.
    log = max((tmp_path / "work" / "logs").glob("run-*.log")).read_text()
    for stage in ("ingest", "dedup", "plan", "tokenize", "train", "probe"):
        assert re.search(rf"taggant\.console: ✓ {stage}-[0-9a-f]{{8}} ", log), stage
    assert f"train {RUNS[0]}: step {LAST_STEP}/{LAST_STEP}" in log
    assert f"probe {RUNS[1]}: step {LAST_STEP}/{LAST_STEP} probed" in log
    assert f"{RUNS[0]}: resuming from step" in log
