"""Streaming probes: one watcher task per run probes every committed checkpoint into the store.

A watcher polls its run's checkpoints while training runs and probes each committed step once, in
step order — every one, not only the newest — then, if ``checkpoints.keep_last`` is set, deletes
probed checkpoints beyond the newest ``keep_last`` (never the newest full one, which resume
needs: ``checkpoint.resume_step``). Probing a step means: clear the step in the store, write one
file per probe, then the step's commit record. The store's commit records are the watcher's memory: a restarted watcher (or
a re-run) skips the steps committed with the same probe configuration (``pipeline.probe.run.
probe_config``: probe versions, ``prefix_tokens``, ``suffix_tokens``) and redoes a half-written
one, so a checkpoint ends with exactly one row set whatever was killed when. A changed setting
re-probes every checkpoint still on disk whose rows came from another configuration, replacing
its rows; a step whose checkpoint is gone (``keep_last``) keeps its old rows, reported as stale.
A run trained again under the same name with other settings (another train stage folder) has all
its old rows cleared before any is probed.

Only a checkpoint that cannot be read (``pipeline.probe.native.UnreadableCheckpoint``: truncated
or garbled files, a malformed commit record) is skipped: it is reported in the stats with its
reason, and training goes on. The run's final checkpoint unreadable fails the stage (there would
be nothing to fit), and so does every other failure (an item that cannot be probed, a store that
cannot be written, a bug): a stage never reports success for probes it did not write.

The perturbed run and its standard twin are probed on the same items: the twin's ``items`` table
in the store keeps each item's dup level (what it would have been) with no exposure steps.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from taggant.jobs import placement
from taggant.pipeline import io, manifest, store
from taggant.pipeline.errors import DataError
from taggant.pipeline.probe.registry import probe_config
from taggant.pipeline.spec import ExperimentSpec, ProbesSpec, RunId
from taggant.pipeline.stage import StageContext, StageDecl
from taggant.pipeline.tokenize import TokenizeFolder, TokenizerInfo
from taggant.pipeline.train import disk, progress
from taggant.pipeline.train.schedule import run_checkpoint_steps

if TYPE_CHECKING:  # pipeline.probe imports torch: only the functions that probe load it
    from taggant.pipeline.probe.inputs import RunInputs

PROBE_VERSION = "probe-stage.v3"
"""v2: only unreadable checkpoints are skipped; commit records hold probe versions. v3: rows and
commit records hold the probe configuration; a step of another configuration is probed again."""
POLL_S = 2.0
log = logging.getLogger(__name__)


def run_watchers(context: StageContext, alongside: Callable[[], Any]) -> dict[str, Any]:
    """``run`` for every run of the train folder in ``context.folders`` (the train stage streams
    its probes this way; the probe stage catches up with ``alongside`` doing nothing)."""
    spec, folders = context.spec, context.folders
    runs = spec.runs.grid()
    final_steps = {r.name: max(run_checkpoint_steps(spec, r.train_tokens)) for r in runs}
    watched = targets(spec, folders["train"], folders["tokenize"], folders["plan"])
    return run(spec, watched, final_steps, alongside)


def catch_up(context: StageContext) -> dict[str, Any]:
    """The probe stage: a watcher per run probes the checkpoints the train stage's watchers did
    not. Its stats count the stage's output where it is: ``rows`` and ``checkpoints`` in the store
    (``in_store``, most of them streamed while training ran), ``rows_written`` by this pass, and
    each run's watcher result under ``runs``."""
    result = run_watchers(context, alongside=lambda: None)
    written = sum(r["rows"] for r in result["runs"].values())
    return {**in_store(context.spec), "rows_written": written, "runs": result["runs"]}


def in_store(spec: ExperimentSpec) -> dict[str, int]:
    """``rows`` and ``checkpoints``: the store's committed probe rows and checkpoints of the spec's
    runs with the spec's probe configuration, whichever watcher wrote them (from the commit
    records, whose row counts are checked against the files when committed)."""
    wanted = probe_config(spec.probes)
    runs = {r.name for r in spec.runs.grid()}
    commits = [
        c
        for c in store.read_checkpoints(spec.store.url, spec.name).to_pylist()
        if c["run"] in runs and c["probe_config"] == wanted
    ]
    return {"rows": sum(c["num_rows"] for c in commits), "checkpoints": len(commits)}


STAGE = StageDecl(
    name="probe",
    version=PROBE_VERSION,
    inputs=("train",),
    # Where watchers run changes a row only through the precision a GPU implies.
    config=lambda spec: {
        "probes": spec.probes.model_dump(mode="json", exclude={"watcher"}),
        "precision": spec.probes.precision,
        "store": spec.store.url,
    },
    execute=catch_up,
)


@dataclass(frozen=True)
class Target:
    """Everything a watcher needs about one run (plain data: it travels to the actor)."""

    experiment: str
    run: RunId
    run_dir: str
    inputs: RunInputs
    store_url: str
    probes: ProbesSpec
    keep_last: int
    export_hf: bool = False
    """Whether the run exports its checkpoints (``retain`` keeps them until they are)."""


def targets(
    spec: ExperimentSpec, train_folder: str, tokenize_folder: str, plan_folder: str
) -> list[Target]:
    """One target per run of the grid; both runs of a twin pair read the perturbed run's items.
    Only paths: the stages that fill them may not have run yet."""
    from taggant.pipeline.probe.inputs import RunInputs

    folder = TokenizeFolder(tokenize_folder)
    return [
        Target(
            experiment=spec.name,
            run=run,
            run_dir=io.join(train_folder, run.name),
            inputs=RunInputs(
                tokenize_folder=tokenize_folder,
                items_url=folder.manifest(run.model_copy(update={"perturbed": True}).name),
                references_url=io.join(plan_folder, "references.parquet"),
            ),
            store_url=spec.store.url,
            probes=spec.probes,
            keep_last=spec.checkpoints.keep_last,
            export_hf=spec.checkpoints.export_hf,
        )
        for run in spec.runs.grid()
    ]


def training_name(train_folder: str) -> str:
    """What the store's run metadata records as ``trained_by``: the train stage folder's name,
    ``train-<hash>``, whose hash covers every setting upstream of the checkpoints."""
    return posixpath.basename(train_folder.rstrip("/"))


def trained_by(target: Target) -> str:
    """``training_name`` of the folder holding the target's run folder."""
    return training_name(posixpath.dirname(target.run_dir.rstrip("/")))


def register_run(target: Target, spec: ExperimentSpec) -> list[int]:
    """Write the run's metadata and items (with their exposure steps) into the store, and the
    run's probe inputs into its folder (``taggant probe --checkpoint`` reads them there).

    The metadata records ``trained_by``; a store whose record of the run names another training
    (the run was trained again with other settings under the same name) has the run's committed
    steps cleared first, so no row of the old model passes for the new one.

    Returns:
        the steps cleared.
    """
    target.inputs.write(target.run_dir)
    items, occurrences, _ = manifest.read(target.inputs.items_url)
    info = TokenizerInfo.read(TokenizeFolder(target.inputs.tokenize_folder))
    run = target.run
    writer = store.StoreWriter(target.store_url, target.experiment)
    cleared = _clear_other_training(target, writer)
    writer.write_run(
        run.name,
        {
            "trained_by": trained_by(target),
            "model_size": run.model_size,
            "train_tokens": run.train_tokens,
            "seed": run.seed,
            "perturbed": run.perturbed,
            "num_params": disk.num_params(spec, run, info.vocab_size),
            "seq_length_tokens": spec.runs.seq_length_tokens,
            "global_batch_sequences": spec.runs.global_batch_sequences,
        },
    )
    steps = occurrences.filter(
        pc.equal(occurrences["run"], run.model_copy(update={"perturbed": True}).name)
    )
    by_item = (
        steps.group_by("item_id").aggregate([("step", "min"), ("step", "max")])
        if run.perturbed
        else None
    )
    first = (
        dict(zip(by_item["item_id"].to_pylist(), by_item["step_min"].to_pylist()))
        if by_item
        else {}
    )
    last = (
        dict(zip(by_item["item_id"].to_pylist(), by_item["step_max"].to_pylist()))
        if by_item
        else {}
    )
    ids = items["item_id"].to_pylist()
    writer.write_items(
        run.name,
        items.select(["item_id", "set", "kind", "dup_level", "phase_start", "phase_end"])
        .append_column("first_step", pa.array([first.get(i, -1) for i in ids], pa.int64()))
        .append_column("last_step", pa.array([last.get(i, -1) for i in ids], pa.int64())),
    )
    return cleared


def _clear_other_training(target: Target, writer: store.StoreWriter) -> list[int]:
    runs = store.read_runs(target.store_url, target.experiment).to_pylist()
    recorded = [r.get("trained_by") for r in runs if r["run"] == target.run.name]
    if not recorded or recorded[0] == trained_by(target):
        return []
    steps = sorted(committed_configs(target))
    for step in steps:
        writer.begin_checkpoint(target.run.name, step)
    log.warning(
        "run %s: the store held rows of checkpoints from %s, not %s; cleared steps %s",
        target.run.name,
        recorded[0] or "an unrecorded training",
        trained_by(target),
        steps,
    )
    return steps


def probe_step(target: Target, step: int) -> int:
    """Probe one committed checkpoint into the store; returns the rows written.

    Raises:
        UnreadableCheckpoint: the checkpoint cannot be read; the store is left as it was.
    """
    from taggant.pipeline.probe.native import probe_checkpoint

    probed = probe_checkpoint(target.run_dir, step, target.probes, target.inputs)
    rows = probed.rows
    writer = store.StoreWriter(target.store_url, target.experiment)
    writer.begin_checkpoint(target.run.name, step)
    for name in sorted(set(target.probes.names)):
        writer.write_probe_rows(
            target.run.name, step, name, 0, rows.filter(pc.equal(rows["probe"], name))
        )
    writer.commit_checkpoint(
        target.run.name,
        step,
        probed.tokens_seen,
        probe_versions(target.probes),
        probe_config(target.probes),
        rows.num_rows,
    )
    from taggant.pipeline.train import checkpoint

    if checkpoint.read_commit(target.run_dir, step)["train"].get("tensorboard"):
        progress.write_probe_summary(target.run_dir, step, rows)  # a view; the store is the truth
    return rows.num_rows


def probe_versions(probes: ProbesSpec) -> list[str]:
    """The versions of the probes a spec asks for, sorted: what a commit record holds."""
    from taggant.pipeline.probe.registry import PROBES

    return sorted({PROBES[name].version for name in probes.names})


def committed_configs(target: Target) -> dict[int, str | None]:
    """Step → the probe configuration of its store commit record, for the target's run (``None``
    for a record older than ``store.SCHEMA_VERSION`` 3)."""
    done = store.read_checkpoints(target.store_url, target.experiment)
    return {
        row["step"]: row["probe_config"]
        for row in done.to_pylist()
        if row["run"] == target.run.name
    }


def probed_steps(target: Target) -> set[int]:
    """Steps of the run whose store commit record holds this target's probe configuration."""
    wanted = probe_config(target.probes)
    return {step for step, config in committed_configs(target).items() if config == wanted}


def retain(target: Target, probed: set[int]) -> None:
    """Delete probed checkpoints beyond the newest ``keep_last``; the newest full one (the resume
    point) stays whatever its age, and so does one not exported yet (``export_hf``: exports run
    beside training, ``jobs.hf.Exporter``)."""
    from taggant.pipeline.train.checkpoint import committed_steps, resume_step, step_dir
    from taggant.pipeline.train.hf import exported_steps

    if not target.keep_last:
        return
    committed = committed_steps(target.run_dir)
    keep = {resume_step(target.run_dir)}
    if target.export_hf:
        keep |= set(committed) - set(exported_steps(target.run_dir))
    for step in committed[: -target.keep_last]:
        if step in probed and step not in keep:
            shutil.rmtree(step_dir(target.run_dir, step), ignore_errors=True)


def watch(target: Target, final_step: int, poll_s: float = POLL_S) -> dict[str, Any]:
    """Probe every committed checkpoint not yet in the store, in step order, and wait for more
    until ``final_step`` is probed. A watcher that starts after training (the probe stage) so
    catches up on every step the train stage's watcher did not probe. An unreadable checkpoint
    is skipped (logged, and reported here).

    Returns:
        ``{"probed": [steps probed now], "skipped": {step: reason}, "rows": n, "replaced":
        [steps probed now whose earlier rows came from another probe configuration], "stale":
        [steps whose rows came from another configuration and whose checkpoint is gone]}``.

    Raises:
        DataError: ``final_step``'s checkpoint cannot be read, or an item cannot be probed.
    """
    import torch

    from taggant.pipeline.probe.native import UnreadableCheckpoint
    from taggant.pipeline.train.checkpoint import committed_steps

    torch.set_num_threads(target.probes.watcher.torch_threads)
    _use_assigned_gpu()
    wanted = probe_config(target.probes)
    other = {s for s, config in committed_configs(target).items() if config != wanted}
    done = probed_steps(target)
    result: dict[str, Any] = {"probed": [], "skipped": {}, "rows": 0, "replaced": [], "stale": []}
    shown = progress.ProbeProgress(target.run.name, final_step)
    if other:
        log.info(
            "run %s: steps %s were probed with another configuration; probing them again",
            target.run.name,
            sorted(other),
        )
    while True:
        todo = [
            s
            for s in committed_steps(target.run_dir)
            if s not in done and s not in result["skipped"]
        ]
        for step in todo:
            try:
                rows = probe_step(target, step)
            except UnreadableCheckpoint as e:
                if step == final_step:
                    raise DataError(
                        f"run {target.run.name}: its final checkpoint cannot be probed: {e}"
                    ) from e
                log.warning("run %s step %d not probed: %s", target.run.name, step, e)
                result["skipped"][step] = e.reason
                continue
            result["rows"] += rows
            shown.probed(step, rows)
            done.add(step)
            result["probed"].append(step)
            if step in other:
                result["replaced"].append(step)
            retain(target, done)
        if final_step in done:
            result["stale"] = sorted(other - done)
            if result["stale"]:
                log.warning(
                    "run %s: steps %s keep rows of another probe configuration: their checkpoints "
                    "are gone (checkpoints.keep_last) or unreadable",
                    target.run.name,
                    result["stale"],
                )
            return result
        if not todo:
            time.sleep(poll_s)


def _use_assigned_gpu() -> None:
    """Make the GPU Ray assigned this watcher (if any) torch's current device, where the probe
    loads each checkpoint (in ``ProbesSpec.precision``). Outside Ray (a direct call) nothing is
    assigned and the process's device stays."""
    import ray
    import torch

    if not ray.is_initialized():
        return
    index = placement.watcher_device(ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"))
    if index is not None:
        torch.cuda.set_device(index)


def run(
    spec: ExperimentSpec,
    watched: list[Target],
    final_steps: dict[str, int],
    alongside: Callable[[], Any],
) -> dict[str, Any]:
    """Start a watcher task per target (retried if its worker dies; its resources and nodes
    from ``probes.watcher``, see ``placement.watcher_options``), call ``alongside()``
    (training, or nothing for a catch-up pass), then wait for every watcher to reach its run's
    final step; returns per-run watcher results (each with ``cleared``: the steps
    ``register_run`` cleared, rows of another training) and what ``alongside`` returned.

    Raises:
        DataError: a watcher failed (``watch``), once ``alongside`` returned: training is not cut
            short, its checkpoints stay for the probe stage; the other watchers are cancelled.
    """
    import ray

    cleared = {target.run.name: register_run(target, spec) for target in watched}
    options = placement.watcher_options(spec.probes.watcher, ray.nodes())
    watcher = ray.remote(max_retries=3)(watch).options(**options)
    refs = {t.run.name: watcher.remote(t, final_steps[t.run.name]) for t in watched}
    try:
        trained = alongside()
        results = {name: ray.get(ref) for name, ref in refs.items()}
    except BaseException:
        for ref in refs.values():
            ray.cancel(ref, force=True)
        raise
    for name, steps in cleared.items():
        results[name]["cleared"] = steps
    return {"runs": results, "trained": trained}
