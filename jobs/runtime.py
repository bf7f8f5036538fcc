"""Connecting to Ray: an embedded local instance by default, or an existing cluster by address."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Run the body with Ray initialized; shut it down after only if this call started it.

    ``address=None`` starts a fresh local Ray (``address="local"``, never a stale cluster file);
    ``num_cpus`` applies to that local instance only. Ray ≥ 2.59 turns token auth on for local
    clusters; unless the caller chose a mode, the embedded one runs with auth disabled.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    else:
        ray.init(address=address)
    try:
        yield
    finally:
        ray.shutdown()
