"""Which stages may keep their folders on an object store, and which need a POSIX filesystem.

``ingest``, ``dedup`` and ``plan`` read and write Parquet and JSON through fsspec only
(``pipeline.io``), so their folders can live under an ``s3://`` or ``gs://`` ``work_dir``. The
others need a POSIX filesystem that every node mounts at the same path: megatron-core's
``IndexedDatasetBuilder`` writes tokenize's ``.bin``/``.idx`` to local paths and training
memory-maps them; ``dist_checkpointing`` saves checkpoints with ``torch.save`` into the run
folder, and probes load them from there; fit writes its plots with matplotlib. The store and the
corpus are always read and written through fsspec, so they may be on an object store either way.
"""

from __future__ import annotations

from taggant.pipeline import io
from taggant.pipeline.errors import ConfigError

OBJECT_STORE_STAGES = ("ingest", "dedup", "plan")
"""The stages whose folders may live on an object store."""


def check_work_dir(work_dir: str, until: str | None) -> None:
    """Refuse an object-store ``work_dir`` for a run that goes past ``plan``.

    Args:
        work_dir: the spec's ``work_dir``.
        until: the last stage to run (``None``: all of them).

    Raises:
        ConfigError: ``work_dir`` is an object store and the run reaches ``tokenize`` or later.
    """
    if io.is_local(work_dir) or until in OBJECT_STORE_STAGES:
        return
    raise ConfigError(
        [
            (
                "work_dir",
                (
                    f"{work_dir!r} is on an object store, where only {', '.join(OBJECT_STORE_STAGES)} can "
                    "keep their folders: tokenize, train, probe and fit write Megatron datasets, checkpoints "
                    "and plots to a POSIX filesystem. Give a path every node mounts (e.g. "
                    "--set work_dir=/shared/work/NAME; the store may stay on s3://), or stop with "
                    "--until plan"
                ),
            )
        ]
    )
