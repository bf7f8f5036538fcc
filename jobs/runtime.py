"""Connecting to Ray: an embedded local instance by default, or an existing cluster by address.

While a session is open, SIGINT and SIGTERM stop it at once: the first one raises ``Interrupted``
in the main thread (the stages clean up on their way out: the train stage kills its rank groups,
the probe stage cancels its watchers) and Ray is shut down; further signals while that happens
are ignored, so the clean-up is never cut short. Known third-party warnings are filtered in the
driver and, through the job's ``worker_process_setup_hook`` (``setup_worker``), in every Ray
worker.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from taggant.pipeline.train import progress

log = logging.getLogger(__name__)

KNOWN_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # megatron-core's CPU fallbacks: on CPU taggant runs without Transformer Engine and Apex by
    # design, so "falling back" is the normal path, not news (one warning per module and process).
    (UserWarning, r"Transformer Engine and Apex are not installed", r"megatron\."),
    (UserWarning, r"Apex is not installed\. Falling back to Torch Norm", r"megatron\."),
    # Deprecations inside megatron and torch that only their next releases can act on.
    (UserWarning, r"full scope is deprecated\. Use empty cuda_graph_scope", r"megatron\."),
    (FutureWarning, r"`load_state_dict` is deprecated and will be removed", r"megatron\."),
    (FutureWarning, r"Please use DTensor instead and we are deprecating ShardedTensor", r""),
)
"""``(category, message regex, module regex)`` of each warning taggant filters: the message must
match from its start, the module names the code the warning is attributed to (``""``: any)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during a Ray session (a ``KeyboardInterrupt``, so that
    ``except Exception`` never swallows it). ``exit_code`` is the shell's ``128 + signal``:
    130 for SIGINT, 143 for SIGTERM."""

    def __init__(self, signum: int):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def quiet_warnings() -> None:
    """Ignore ``KNOWN_WARNINGS`` in this process."""
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def setup_worker() -> None:
    """A Ray worker's start (the job's ``worker_process_setup_hook``): ``quiet_warnings``, and
    taggant's INFO records on stderr (progress lines, which Ray shows on the driver's console)
    while other libraries' stay at WARNING (megatron's INFO output lists parameters)."""
    quiet_warnings()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("taggant").setLevel(logging.INFO)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGINT or SIGTERM into ``Interrupted`` in the main thread; ignore the
    ones after it until the body has cleaned up. The previous handlers are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python delivers signals to the main thread only
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def stopping(signum: int, frame: object) -> None:
        log.warning("%s received while stopping; ignored", signal.Signals(signum).name)

    def first(signum: int, frame: object) -> None:
        for s in previous:
            signal.signal(s, stopping)
        raise Interrupted(signum)

    for s in previous:
        signal.signal(s, first)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Run the body with Ray initialized; shut it down after only if this call started it.

    ``address=None`` starts a fresh local Ray (``address="local"``, never a stale cluster file);
    ``num_cpus`` applies to that local instance only. Ray ≥ 2.59 turns token auth on for local
    clusters; unless the caller chose a mode, the embedded one runs with auth disabled. Workers get
    this process's ``progress.BARS`` (progress as lines unless bars are opted in). Ray's log
    deduplication is off (unless chosen in the environment before Ray was imported): it merges
    lines that differ only in numbers, such as two runs' messages. In the main thread the body
    runs under ``stop_on_signals``, so a signal raises ``Interrupted`` out of this block with Ray
    already shut down (a cluster's actors and tasks of this job end with its driver).
    """
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray

    if ray.is_initialized():
        yield
        return
    quiet_warnings()
    runtime_env = {
        # The hook is the import path of a function: workers import it from the job's own code.
        "worker_process_setup_hook": f"{__name__}.setup_worker",
        "env_vars": {progress.BARS: os.environ.get(progress.BARS, "0")},
    }
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=True,
            runtime_env=runtime_env,
        )
    else:
        ray.init(address=address, runtime_env=runtime_env)
    # After ray.init, which installs its own SIGTERM handler; around the shutdown too, so that a
    # second Ctrl-C cannot cut it short.
    with stop_on_signals():
        try:
            yield
        finally:
            ray.shutdown()
