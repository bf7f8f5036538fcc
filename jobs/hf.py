"""Hugging Face export and import on Ray, for the train stage.

Both read or build a model at parallel size 1 (``pipeline.train.hf``), which a rank actor cannot do
inside its own model-parallel group, so each runs as a Ray task in a worker process of its own, on
CPU in float32 (``CUDA_VISIBLE_DEVICES`` empty: the GPUs stay with the ranks). The tasks take no
CPU from the cluster's count: a run's ranks hold the CPUs. An import runs before training; exports
run beside it (``Exporter``).
"""

from __future__ import annotations

import os
from typing import Any

from taggant.pipeline import io
from taggant.pipeline.errors import TaggantError
from taggant.pipeline.spec import ExperimentSpec
from taggant.pipeline.tokenize import TokenizeFolder, TokenizerInfo
from taggant.pipeline.train import checkpoint, hf

_TASK_OPTIONS = {"num_cpus": 0, "runtime_env": {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}}


def missing_exports(run_dir: str) -> list[int]:
    """Committed steps of ``run_dir`` without a finished export."""
    done = set(hf.exported_steps(run_dir))
    return [s for s in checkpoint.committed_steps(run_dir) if s not in done]


class Exporter:
    """Exports a run's committed checkpoints (``hf.export_dir``) in Ray tasks that training does
    not wait for: rank 0 calls ``start`` after each commit and ``finish`` once it has trained.

    At most one export task runs at a time, and it takes every committed step not exported yet:
    exports slower than checkpoints fall behind but never pile up tasks (each holds a float32
    model). Idempotent over restarts: the first ``start`` of a new rank 0 catches up on an export
    a crash cut off.
    """

    def __init__(self, experiment: str, run_dir: str):
        self.experiment, self.run_dir = experiment, run_dir
        self._running = None

    def start(self) -> None:
        """Export the committed steps not exported yet, unless an export is still running (the
        next call takes them). Raises the failure of a finished export."""
        import ray

        if self._running is not None:
            done, _ = ray.wait([self._running], timeout=0)
            if not done:
                return
            _get(self._running)
            self._running = None
        steps = missing_exports(self.run_dir)
        if steps:
            task = ray.remote(_export).options(**_TASK_OPTIONS)
            self._running = task.remote(self.experiment, self.run_dir, steps)

    def finish(self) -> None:
        """Wait until every step committed so far is exported."""
        for _ in range(2):  # the running export, then one for the steps committed meanwhile
            if self._running is not None:
                _get(self._running)
                self._running = None
            self.start()


def _export(experiment: str, run_dir: str, steps: list[int]) -> None:
    _leave_the_rank_group()
    for step in steps:
        hf.export_checkpoint(run_dir, step, hf.export_dir(run_dir, step), experiment)


def init_dir(train_folder: str) -> str:
    """Where the train stage keeps the imported ``runs.init_from_hf`` model (shared by its runs)."""
    return io.join(train_folder, "init-hf")


def import_model(
    spec: ExperimentSpec, train_folder: str, tokenize_folder: str
) -> dict[str, Any] | None:
    """Import ``runs.init_from_hf`` into ``init_dir(train_folder)`` once; returns its record, or
    ``None`` when the spec trains from scratch.

    Raises:
        ConfigError, DataError: as ``pipeline.train.hf.import_hf``.
    """
    import ray

    if spec.runs.init_from_hf is None:
        return None
    vocab_size = TokenizerInfo.read(TokenizeFolder(tokenize_folder)).vocab_size
    task = ray.remote(_import).options(**_TASK_OPTIONS)
    return _get(
        task.remote(
            spec.runs.init_from_hf, init_dir(train_folder), vocab_size, spec.runs.seq_length_tokens
        )
    )


def _import(folder: str, out: str, vocab_size: int, seq_length: int) -> dict[str, Any]:
    _leave_the_rank_group()
    return hf.import_hf(folder, out, vocab_size, seq_length)


def _leave_the_rank_group() -> None:
    """A task started by a rank actor inherits its runtime env, ``RANK``, ``WORLD_SIZE`` and
    ``MASTER_ADDR`` included: with them ``init_parallel`` would try to join the rank group.
    Without them it makes a private world-size-1 group."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        os.environ.pop(name, None)


def _get(ref) -> Any:
    """``ray.get``, raising a task's ``TaggantError`` as itself (its message names the fix)."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, TaggantError):
            raise e.cause from None
        raise


def init_checkpoint(spec: ExperimentSpec, run_dir: str) -> str | None:
    """The imported model a run of the train stage starts from, if any."""
    return init_dir(os.path.dirname(run_dir)) if spec.runs.init_from_hf else None
