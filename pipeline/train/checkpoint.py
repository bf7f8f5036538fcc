"""Checkpoints of a run, committed atomically, and how probes load them.

Layout under a run folder (Megatron-LM's, plus a commit record)::

    <run_dir>/checkpoints/iter_0000100/          dist_checkpointing files (model, optimizer, ...)
    <run_dir>/checkpoints/iter_0000100/commit.json   written by rank 0 once every rank saved
    <run_dir>/checkpoints/latest_checkpointed_iteration.txt   newest full step, written last
    <run_dir>/train_log.jsonl      one record per trained step (``read_train_log``)

A checkpoint exists for readers only once its ``commit.json`` does: it is written atomically after
a barrier that follows every rank's save, so a watcher never reads half a checkpoint. A folder
without one is a save that was cut off; the next save of that step clears it. The commit record
holds ``version``, ``step``, ``kind``, ``samples_seen``, ``tokens_seen`` (samples × sequence
length) and ``model`` (the ``ModelConfig`` fields needed to rebuild the model). Watchers should
probe every step of ``committed_steps``, not only the newest: several may commit between two polls.

Kinds (``checkpoints.resume_every_steps``): a ``full`` checkpoint holds the model, the optimizer
state and the LR scheduler, and a run resumes only from one (``resume_step``); a ``weights`` one
holds the model only. Probes and exports read the model of either (``load_model``). The tracker
(Megatron-LM's resume pointer) names the newest full step and is written after its commit record.

Reading commit records and the train log needs neither torch nor megatron; saving and loading
import them lazily.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from taggant.pipeline import io

CHECKPOINT_VERSION = "checkpoint.v2"
"""v2: commit records hold ``kind``."""
COMMIT = "commit.json"
TRACKER = "latest_checkpointed_iteration.txt"
TRAIN_LOG = "train_log.jsonl"
FULL, WEIGHTS = "full", "weights"
"""Checkpoint kinds: with the optimizer state and the LR scheduler (resumable), or the model only."""


def checkpoints_dir(run_dir: str) -> str:
    """The folder holding a run's checkpoints."""
    return os.path.join(run_dir, "checkpoints")


def step_dir(run_dir: str, step: int) -> str:
    """The folder of the checkpoint at ``step`` (Megatron-LM's ``iter_%07d``)."""
    return os.path.join(checkpoints_dir(run_dir), f"iter_{step:07d}")


def committed_steps(run_dir: str) -> list[int]:
    """Sorted steps whose checkpoint is committed (has its commit record)."""
    return marked_steps(checkpoints_dir(run_dir), COMMIT)


def marked_steps(root: str, marker: str) -> list[int]:
    """Sorted steps N of the ``iter_N`` folders under ``root`` that hold the file ``marker``
    (written last, so its presence means the folder is finished)."""
    if not os.path.isdir(root):
        return []
    return sorted(
        int(name[5:])
        for name in os.listdir(root)
        if name.startswith("iter_")
        and name[5:].isdigit()
        and os.path.exists(os.path.join(root, name, marker))
    )


def read_commit(run_dir: str, step: int) -> dict[str, Any]:
    """The commit record of the checkpoint at ``step``."""
    return io.read_json(os.path.join(step_dir(run_dir, step), COMMIT))


def full_steps(run_dir: str) -> list[int]:
    """Sorted committed steps whose checkpoint is ``FULL`` (a run can resume from them)."""
    return [s for s in committed_steps(run_dir) if read_commit(run_dir, s)["kind"] == FULL]


def resume_step(run_dir: str) -> int:
    """The step a run resumes from: its newest full committed checkpoint, 0 (the start) if none."""
    return ([0] + full_steps(run_dir))[-1]


def checkpoint_bytes(run_dir: str, step: int) -> int:
    """Bytes on disk of the checkpoint at ``step`` (every file of its folder)."""
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(step_dir(run_dir, step))
        for name in names
    )


def append_train_log(run_dir: str, record: dict[str, Any]) -> None:
    """Append one step's record (``step``, ``loss``, ``lr``, ``grad_norm``, ``samples``)."""
    with open(os.path.join(run_dir, TRAIN_LOG), "a") as log:
        log.write(json.dumps(record) + "\n")


def drop_records_after(path: str, step: int) -> None:
    """Keep the records of a JSONL log (``TRAIN_LOG``, ``progress.METRICS``) up to ``step``: a
    run resumed from its checkpoint at ``step`` trains the later steps again and logs them anew,
    so each step keeps one record. A missing log is left missing."""
    if not os.path.exists(path):
        return
    with open(path) as log:
        kept = [line for line in log if line.strip() and json.loads(line)["step"] <= step]
    temp = f"{path}.truncating"
    with open(temp, "w") as out:
        out.writelines(kept)
    os.replace(temp, path)  # a crash here leaves the old log whole, never a half-written one


def read_train_log(run_dir: str) -> dict[int, dict[str, Any]]:
    """The record of each trained step. A step trained again after a restart (before its records
    were dropped, see ``drop_records_after``) was logged twice; the later record wins, as it is
    the one the committed weights descend from."""
    with open(os.path.join(run_dir, TRAIN_LOG)) as log:
        return {r["step"]: r for r in map(json.loads, log)}


class Saver:
    """Writes a run's checkpoints and commits each one once every rank's shards are on disk.

    Collective: every rank of the run builds one and makes the same calls. Committing a step
    writes its commit record (rank 0), then, for a full one, the tracker (rank 0), then calls
    ``on_commit(step)`` on every rank.

    Who writes: by default megatron's ``torch_dist`` strategy, each shard by its first
    data-parallel replica. With ``fully_parallel_group`` (a data-parallel group), every replica
    in it writes an equal share of the replicated shards (megatron's
    ``FullyParallelSaveStrategyWrapper``, as Megatron-LM's ``--ckpt-fully-parallel-save``).

    When: synchronous by default (``save`` returns once the step is committed). Asynchronous
    (``asynchronous=True``, CUDA only: megatron's ``AsyncCallsQueue`` syncs over CUDA tensors;
    never run on a GPU yet): ``save`` returns once the tensors are staged in host memory and a
    forked process writes them while training goes on. ``poll()`` (every rank, e.g. once a step)
    commits the saves every rank has finished, in step order; ``poll(blocking=True)`` waits for
    all of them. A step is readable only once committed, so an interrupted background write
    leaves an uncommitted folder, as a crash does.
    """

    def __init__(
        self,
        run_dir: str,
        on_commit: Callable[[int], None] | None = None,
        fully_parallel_group: Any = None,
        asynchronous: bool = False,
    ):
        from megatron.core.dist_checkpointing.serialization import (
            get_default_save_sharded_strategy,
        )
        from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue
        from megatron.core.dist_checkpointing.strategies.fully_parallel import (
            FullyParallelSaveStrategyWrapper,
        )

        self.run_dir, self._on_commit = run_dir, on_commit
        self._strategy = get_default_save_sharded_strategy()
        if fully_parallel_group is not None:
            self._strategy = FullyParallelSaveStrategyWrapper(self._strategy, fully_parallel_group)
        self._queue = AsyncCallsQueue() if asynchronous else None

    def save(self, step: int, state: dict[str, Any], record: dict[str, Any], kind: str) -> None:
        """Save ``state`` (a megatron sharded state dict: ``model`` only for a ``WEIGHTS``
        checkpoint) as the checkpoint at ``step`` and commit it (now, or in a later ``poll``).
        ``record`` goes into the commit record with ``version``, ``step`` and ``kind``. The step
        must not be committed already."""
        import torch.distributed as dist
        from megatron.core import dist_checkpointing

        assert kind in (FULL, WEIGHTS), kind
        folder = step_dir(self.run_dir, step)
        if dist.get_rank() == 0:
            assert not os.path.exists(os.path.join(folder, COMMIT)), f"{folder} is committed"
            io.remove(folder)  # the remains of a save that was cut off
            os.makedirs(folder)
        dist.barrier()
        commit = {"version": CHECKPOINT_VERSION, "step": step, "kind": kind, **record}
        request = dist_checkpointing.save(
            state, folder, self._strategy, async_sharded_save=self._queue is not None
        )
        if request is None:
            self._commit(commit)
        else:
            request.add_finalize_fn(lambda: self._commit(commit))
            self._queue.schedule_async_request(request)

    def poll(self, blocking: bool = False) -> None:
        """Commit the background saves that every rank finished (all of them, waiting, with
        ``blocking``). Collective; nothing to do for a synchronous saver."""
        if self._queue is not None:
            self._queue.maybe_finalize_async_calls(blocking=blocking)

    def _commit(self, commit: dict[str, Any]) -> None:
        import torch.distributed as dist

        dist.barrier()  # every rank's shards are on disk
        if dist.get_rank() == 0:
            io.write_json(os.path.join(step_dir(self.run_dir, commit["step"]), COMMIT), commit)
            if commit["kind"] == FULL:
                io.write_text(
                    os.path.join(checkpoints_dir(self.run_dir), TRACKER), f"{commit['step']}\n"
                )
        if self._on_commit is not None:
            self._on_commit(commit["step"])


def load(run_dir: str, step: int, template: dict[str, Any]) -> dict[str, Any]:
    """Load the committed checkpoint at ``step`` into the shapes of ``template`` (a sharded state
    dict of the current parallel layout, which may differ from the one that saved it)."""
    from megatron.core import dist_checkpointing

    assert step in committed_steps(run_dir), f"step {step} of {run_dir} is not committed"
    return dist_checkpointing.load(template, step_dir(run_dir, step))


def load_model(run_dir: str, step: int, dtype: str = "float32"):
    """The megatron ``GPTModel`` of the committed checkpoint at ``step``, in eval mode, on this
    process's device (the current CUDA device on GPUs), with every weight in ``dtype``
    (``float32`` or ``bfloat16``, whatever the checkpoint holds).

    Works in any process: it joins (or makes) a world-size-1 group when none exists, and any
    parallel layout loads. ``model(input_ids, None, None)`` gives logits in ``dtype``
    ``[batch, seq, padded_vocab_size]``; ids at and above ``ModelConfig.vocab_size`` are padding.
    """
    import torch

    from taggant.pipeline.train.model import ModelConfig, build_model, init_parallel

    init_parallel()
    config = ModelConfig(**read_commit(run_dir, step)["model"])
    bf16 = {"float32": False, "bfloat16": True}[dtype]
    # Megatron keeps its norms in fp32 even with bf16 parameters; training casts the whole module
    # (Float16Module), and so does this.
    model = build_model(config, seed=0, bf16=bf16).to(getattr(torch, dtype))
    state = load(run_dir, step, {"model": model.sharded_state_dict()})
    model.load_state_dict(state["model"])
    return model.eval()


def load_logits_fn(run_dir: str, step: int, dtype: str = "float32") -> Callable:
    """The committed checkpoint at ``step`` as a probe's ``pipeline.probe.LogitsFn``: token ids,
    int64 ``(batch, seq)`` → fp32 logits ``(batch, seq, vocab_size)``, padding columns dropped.
    The model is loaded in ``dtype`` (``ProbesSpec.precision`` for probes)."""
    import torch

    from taggant.pipeline.train import cpu_shim

    model = load_model(run_dir, step, dtype)
    vocab_size = read_commit(run_dir, step)["model"]["vocab_size"]
    device = next(model.parameters()).device

    def logits(ids):
        cpu_shim.install()  # the caller's thread may be new
        with torch.no_grad():
            return model(torch.from_numpy(ids).to(device), None, None)[..., :vocab_size].float()

    return logits
