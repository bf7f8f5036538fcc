"""Where each run of an experiment stands: steps trained, checkpoints probed with the spec's probe
settings. What ``taggant status`` shows under the stage table, read from the run folders of the
spec's train stage and from the store, both of which may be mid-write: a view, never an input."""

from __future__ import annotations

import os
from typing import Any

from taggant.pipeline import io, store
from taggant.pipeline.spec import ExperimentSpec
from taggant.pipeline.train import checkpoint
from taggant.pipeline.train.schedule import run_checkpoint_steps


def runs_status(spec: ExperimentSpec, train_folder: str) -> list[dict[str, Any]]:
    """One row per run of the grid, in grid order.

    Returns:
        Rows with ``run``; ``trained`` and ``steps``: the last step logged in the run's
        ``train_log.jsonl`` (0 before the first) and the run's last step; ``checkpoints``: the
        scheduled checkpoint steps; ``probed``: those in the store from this training (the run's
        ``trained_by`` is ``train_folder``) with the spec's probe configuration; ``stale``: steps
        in the store from another training or probe configuration (the probe stage replaces
        them); ``state``: ``done`` (trained and every scheduled checkpoint probed),
        ``probing``, ``training`` or ``pending`` (not started).
    """
    from taggant.jobs.probe import training_name
    from taggant.pipeline.probe.registry import probe_config

    wanted = probe_config(spec.probes)
    commits = store.read_checkpoints(spec.store.url, spec.name).to_pylist()
    trained_by = {
        r["run"]: r.get("trained_by")
        for r in store.read_runs(spec.store.url, spec.name).to_pylist()
    }
    this_training = training_name(train_folder)
    rows = []
    for run in spec.runs.grid():
        run_dir = io.join(train_folder, run.name)
        log = os.path.join(run_dir, checkpoint.TRAIN_LOG)
        trained = max(checkpoint.read_train_log(run_dir), default=0) if os.path.exists(log) else 0
        steps = spec.runs.num_steps(run.train_tokens)
        scheduled = run_checkpoint_steps(spec, run.train_tokens)
        mine = [c for c in commits if c["run"] == run.name]
        ours = trained_by.get(run.name) == this_training
        probed = sorted(c["step"] for c in mine if ours and c["probe_config"] == wanted)
        stale = sorted(c["step"] for c in mine if c["step"] not in probed)
        done_probing = set(scheduled) <= set(probed)
        state = (
            "pending"
            if trained == 0
            else "training"
            if trained < steps
            else "done"
            if done_probing
            else "probing"
        )
        rows.append(
            {
                "run": run.name,
                "trained": trained,
                "steps": steps,
                "checkpoints": scheduled,
                "probed": [s for s in probed if s in scheduled],
                "stale": stale,
                "state": state,
            }
        )
    return rows
