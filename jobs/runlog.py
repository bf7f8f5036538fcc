"""What a run shows on its console, and its log file holding all of it: every stage's line, the
Ray workers' output and the end result, besides the driver's own log records.

Copied line by line into the logger ``taggant.console``: this process's stdout (the end result,
and the Ray workers' stdout that Ray prints there) and what is written to the ``Console`` that
``copy_console`` returns (the stages' lines); and with ``copy_worker_stderr`` the Ray workers'
stderr as Ray receives it (before its deduplication). Progress lines are copied like any other;
opted-in progress bars are not (they are redrawn, not written as lines; ``metrics.jsonl`` keeps
training's figures).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console

log = logging.getLogger("taggant.console")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RAY_HANDLER = "taggant_run_log"


class LineCopy:
    """A text stream that writes through to ``stream`` and logs each complete line to ``log``:
    colour and cursor codes removed, and of a line redrawn with carriage returns (a spinner) only
    its last text. Safe to write from several threads (Ray prints worker lines from its own)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
            self._partial = self._partial.rsplit("\r", 1)[-1]  # a redrawn line keeps its last text
        for line in lines:
            _log_line(line.rsplit("\r", 1)[-1])
        return written

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)  # isatty, fileno, encoding: the console's own


def _log_line(line: str) -> None:
    line = _ANSI.sub("", line).rstrip()
    if line:
        log.info("%s", line)


def _log_worker_stderr(data: dict[str, Any]) -> None:
    """Ray's handler of a batch of worker lines: log the stderr ones (stdout is copied as Ray
    prints it), named as Ray names them."""
    from ray.experimental.tqdm_ray import RAY_TQDM_MAGIC

    if not data.get("is_err"):
        return
    source = data.get("actor_name") or data.get("task_name") or "worker"
    for line in data["lines"]:
        if RAY_TQDM_MAGIC not in line:
            _log_line(f"({source} pid={data.get('pid')}) {line}")


@contextmanager
def copy_console() -> Iterator[Console]:
    """Copy this process's stdout into the log while the body runs; yields a stderr ``Console``
    whose lines are copied too (for the stages' lines)."""
    stdout = sys.stdout
    sys.stdout = LineCopy(stdout)
    try:
        yield Console(file=LineCopy(sys.stderr))
    finally:
        sys.stdout = stdout


@contextmanager
def copy_worker_stderr() -> Iterator[None]:
    """Copy the stderr lines of the Ray session's workers into the log while the body runs
    (``ray._private`` names the hook: Ray has no public one). Enter it inside
    ``runtime.ray_session``, which chooses Ray's settings before Ray is imported."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher

    global_worker_stdstream_dispatcher.add_handler(RAY_HANDLER, _log_worker_stderr)
    try:
        yield
    finally:
        global_worker_stdstream_dispatcher.remove_handler(RAY_HANDLER)


@contextmanager
def show_driver_log() -> Iterator[None]:
    """Show the driver's ``taggant.jobs`` records of INFO and above on stderr while the body runs:
    the step each run resumes from, a rank group's restart, tokenize's throughput (the log file
    has them already)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.INFO)
    jobs = logging.getLogger("taggant.jobs")
    jobs.addHandler(handler)
    try:
        yield
    finally:
        jobs.removeHandler(handler)
