"""Checkpoints of a run, committed atomically, and how probes load them.

Layout under a run folder (Megatron-LM's, plus a commit record)::

    <run_dir>/checkpoints/iter_0000100/          dist_checkpointing files (model, optimizer, ...)
    <run_dir>/checkpoints/iter_0000100/commit.json   written last, by rank 0, after every rank saved
    <run_dir>/checkpoints/latest_checkpointed_iteration.txt   newest committed step (Megatron-LM)
    <run_dir>/train_log.jsonl      one record per trained step (``read_train_log``)

A checkpoint exists for readers only once its ``commit.json`` does: it is written atomically after
a barrier that follows every rank's save, so a watcher never reads half a checkpoint. A folder
without one is a save that was cut off; the next save of that step clears it. The commit record
holds ``version``, ``step``, ``samples_seen``, ``tokens_seen`` (samples × sequence length) and
``model`` (the ``ModelConfig`` fields needed to rebuild the model). Watchers should probe every
step of ``committed_steps``, not only the newest: several may commit between two polls.

Reading commit records and the train log needs neither torch nor megatron; saving and loading
import them lazily.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from taggant.pipeline import io

CHECKPOINT_VERSION = "checkpoint.v1"
COMMIT = "commit.json"
TRACKER = "latest_checkpointed_iteration.txt"
TRAIN_LOG = "train_log.jsonl"


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


def save(run_dir: str, step: int, state: dict[str, Any], record: dict[str, Any]) -> None:
    """Save ``state`` (a megatron sharded state dict) as the checkpoint at ``step`` and commit it.

    Collective: every rank calls it with its own shards. ``record`` is stored in the commit record
    together with ``version`` and ``step``. The step must not be committed already.
    """
    import torch.distributed as dist
    from megatron.core import dist_checkpointing

    folder = step_dir(run_dir, step)
    rank = dist.get_rank()
    if rank == 0:
        assert not os.path.exists(os.path.join(folder, COMMIT)), f"{folder} is already committed"
        io.remove(folder)  # the remains of a save that was cut off
        os.makedirs(folder)
    dist.barrier()
    dist_checkpointing.save(state, folder)
    dist.barrier()  # every rank's shards are on disk
    if rank == 0:
        commit = {"version": CHECKPOINT_VERSION, "step": step, **record}
        io.write_json(os.path.join(folder, COMMIT), commit)
        io.write_text(os.path.join(checkpoints_dir(run_dir), TRACKER), f"{step}\n")


def load(run_dir: str, step: int, template: dict[str, Any]) -> dict[str, Any]:
    """Load the committed checkpoint at ``step`` into the shapes of ``template`` (a sharded state
    dict of the current parallel layout, which may differ from the one that saved it)."""
    from megatron.core import dist_checkpointing

    assert step in committed_steps(run_dir), f"step {step} of {run_dir} is not committed"
    return dist_checkpointing.load(template, step_dir(run_dir, step))


def load_model(run_dir: str, step: int):
    """The megatron ``GPTModel`` of the committed checkpoint at ``step``, in eval mode, on this
    process's device.

    Works in any process: it joins (or makes) a world-size-1 group when none exists, and any
    parallel layout loads. ``model(input_ids, None, None)`` gives fp32 logits
    ``[batch, seq, padded_vocab_size]``; ids at and above ``ModelConfig.vocab_size`` are padding.
    """
    from taggant.pipeline.train.model import ModelConfig, build_model, init_parallel

    init_parallel()
    config = ModelConfig(**read_commit(run_dir, step)["model"])
    model = build_model(config, seed=0)
    state = load(run_dir, step, {"model": model.sharded_state_dict()})
    model.load_state_dict(state["model"])
    return model.eval()


def load_logits_fn(run_dir: str, step: int) -> Callable:
    """The committed checkpoint at ``step`` as a probe's ``pipeline.probe.LogitsFn``: token ids,
    int64 ``(batch, seq)`` → fp32 logits ``(batch, seq, vocab_size)``, padding columns dropped."""
    import torch

    from taggant.pipeline.train import cpu_shim

    model = load_model(run_dir, step)
    vocab_size = read_commit(run_dir, step)["model"]["vocab_size"]
    device = next(model.parameters()).device

    def logits(ids):
        cpu_shim.install()  # the caller's thread may be new
        with torch.no_grad():
            return model(torch.from_numpy(ids).to(device), None, None)[..., :vocab_size]

    return logits
