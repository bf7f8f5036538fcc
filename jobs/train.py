"""The train stage on Ray: every run of the spec, each on its own group of rank actors.

A run of world size ``W = data × tensor × pipeline parallel size`` gets a ``PACK``ed placement
group with one bundle per rank (one GPU each on GPU clusters) and one ``RankWorker`` actor per
bundle. Ranks go to bundles sorted by node (``jobs.placement``), so a tensor-parallel group shares
a node (a placement that splits one is refused) and a run spreads over more nodes only when one is
full. Rank 0 opens the rendezvous store on its node on a port the OS picks and holds it; the other
ranks join it there (``MASTER_ADDR`` is rank 0's node IP). Each actor builds a
``pipeline.train.loop.Trainer`` over the run's sample stream (``pipeline.data``) and the driver
sends one idempotent command, "train until the last step".

Fault tolerance: a process group cannot take back one restarted rank, so the unit of recovery is
the run's whole group. When any rank fails (its process or node died, or a collective broke), the
driver kills the group, removes its placement group and starts a new one (a new port; Ray places it
on live nodes). The new trainers resume from the newest committed checkpoint, and the samples a
step reads depend only on the step, so the resumed run reads the same samples in the same order:
none twice in the final weights, none skipped. Errors in the user's data or spec are not retried.

Runs go through their own threads, so a cluster with room for several trains them at once; on a
small one Ray queues their placement groups. When one run fails, every run's thread kills its rank
group within ``POLL_S`` and ends; when a signal interrupts the driver (``jobs.runtime.Interrupted``)
the threads end at once and leave their groups to the end of the Ray session. A checkpoint whose
save was cut off has no commit record, so a re-run resumes from the newest committed one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Self

from taggant.jobs import hf as jobs_hf
from taggant.jobs import placement
from taggant.jobs import probe as probe_job
from taggant.pipeline import data, io
from taggant.pipeline.errors import ConfigError, TaggantError
from taggant.pipeline.models import MODEL_PRESETS
from taggant.pipeline.spec import ExperimentSpec, RunId
from taggant.pipeline.stage import StageDecl, section_config
from taggant.pipeline.train import checkpoint, hf

TRAIN_VERSION = "train.v1"
MAX_RESTARTS = 3
"""Group restarts per run before the stage fails."""
CPUS_PER_RANK = 1
"""CPU cores per rank actor; torch uses as many threads. One on CPU: two-thread processes
collapse when anything else takes a core (research/demo-feasibility.md)."""
RUNS_NOT_TRAINED = {"log_interval_steps", "tensorboard", "prefetch_steps", "local_copy_dir"}
"""``runs`` fields outside the train stage's key: they never change the weights."""
POLL_S = 0.5
"""How often a run's thread checks, while it waits on Ray, whether the driver is stopping."""

log = logging.getLogger(__name__)


def stage_config(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec fields the train output depends on, for its ``StageKey`` (with ``TRAIN_VERSION``;
    the tokenize stage's hash goes in ``inputs``)."""
    return {
        # How training is watched (progress lines, TensorBoard) and how its samples are read
        # (ahead, from a node-local copy) never change what is trained.
        "runs": section_config(spec.runs, exclude=RUNS_NOT_TRAINED),
        "models": (
            {m: dataclasses.asdict(MODEL_PRESETS[m]) for m in spec.runs.model_sizes}
            if spec.runs.init_from_hf is None
            else {"init_from_hf": hf.fingerprint(spec.runs.init_from_hf)}
        ),
        # keep_last is the probes' retention policy and disk_budget_bytes the plan's check, not
        # training's.
        "checkpoints": section_config(spec.checkpoints, exclude={"keep_last", "disk_budget_bytes"}),
        # Phase windows place the dense after-window checkpoints.
        "windows": [p.phase.model_dump(mode="json") for p in spec.perturbations],
    }


STAGE = StageDecl(
    name="train",
    version=TRAIN_VERSION,
    inputs=("tokenize",),
    config=stage_config,
    # Watchers probe each checkpoint as it is committed, while training runs.
    execute=lambda context: probe_job.run_watchers(
        context, alongside=lambda: run(context.spec, context.folder, context.folders["tokenize"])
    ),
    resumable=True,
)


def run(
    spec: ExperimentSpec,
    folder: str,
    tokenize_folder: str,
    *,
    cpus_per_rank: int = CPUS_PER_RANK,
    max_restarts: int = MAX_RESTARTS,
) -> dict[str, Any]:
    """Train every run of ``spec.runs.grid()`` into ``<folder>/<run name>/``; returns stage stats.

    Each run folder is prepared with ``pipeline.data.prepare_run_dir`` (sample order and overlay
    from ``tokenize_folder``) and then holds ``checkpoints/`` and ``train_log.jsonl`` (see
    ``pipeline.train.checkpoint``). Calling it again after a crash resumes every run from its
    newest committed checkpoint; a finished run only reports.

    Returns:
        ``{"runs": {run name: train_run's result without "run"}}``.

    Raises:
        ConfigError: the cluster has too few CPUs/GPUs for one run's ranks.
        DataError: a run's data does not fit its spec.
        RuntimeError: a run still fails after ``max_restarts`` group restarts.
    """
    runs = spec.runs.grid()
    run_dirs = [io.join(folder, r.name) for r in runs]
    for run_id, run_dir in zip(runs, run_dirs):
        data.prepare_run_dir(run_dir, spec, run_id, tokenize_folder)
    jobs_hf.import_model(spec, folder, tokenize_folder)
    stop = Stop()
    with ThreadPoolExecutor(max_workers=len(runs), thread_name_prefix="train") as pool:
        futures = [
            pool.submit(
                train_run,
                spec,
                run_id,
                run_dir,
                cpus_per_rank=cpus_per_rank,
                max_restarts=max_restarts,
                stop=stop,
            )
            for run_id, run_dir in zip(runs, run_dirs)
        ]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            results = [f.result() for f in futures]
        except BaseException as e:
            # Leaving the pool waits for the threads, which end within POLL_S.
            stop.set(session_ending=isinstance(e, KeyboardInterrupt))
            raise
    return {"runs": {r.pop("run"): r for r in results}}


def train_run(
    spec: ExperimentSpec,
    run_id: RunId,
    run_dir: str,
    *,
    cpus_per_rank: int = CPUS_PER_RANK,
    max_restarts: int = MAX_RESTARTS,
    stop: Stop | None = None,
) -> dict[str, Any]:
    """Train one run, prepared in ``run_dir``, to its last step; restart its rank group after a
    failure. Logs the step it resumes from when the run has a committed checkpoint. Once ``stop``
    is set, it raises ``Stopped`` within ``POLL_S`` (see ``Stop`` for its rank group).

    Returns:
        ``run``, ``steps``, ``samples_seen``, ``tokens_seen``, ``checkpoints`` (committed steps),
        ``final_loss``, ``restarts`` and ``weights_digests`` (one per rank, in rank order;
        data-parallel replicas are checked to be equal).

    Raises:
        ConfigError, DataError, RuntimeError: as ``run``.
    """
    import ray

    resources = ray.cluster_resources()
    use_gpus = _use_gpus(spec, resources)
    runs = spec.runs
    world = runs.data_parallel_size * runs.tensor_parallel_size * runs.pipeline_parallel_size
    bundle = {"CPU": cpus_per_rank, **({"GPU": 1} if use_gpus else {})}
    watcher = spec.probes.watcher
    watchers = len(spec.runs.grid())
    _check_capacity(
        bundle,
        world,
        resources,
        {"CPU": watchers * watcher.num_cpus, "GPU": watchers * watcher.num_gpus},
    )
    num_steps = spec.runs.num_steps(run_id.train_tokens)
    resume = checkpoint.resume_step(run_dir)
    if resume:
        log.info("%s: resuming from step %d of %d", run_id.name, resume, num_steps)
    for attempt in range(max_restarts + 1):
        names = [actor_name(spec, run_id, attempt, rank) for rank in range(world)]
        try:
            with _RankGroup(
                bundle,
                names,
                (spec, run_id, run_dir, cpus_per_rank),
                runs.tensor_parallel_size,
                stop or Stop(),
            ) as group:
                group.call("setup", group.port)
                status = group.call("train_until", num_steps)[0]
                digests = group.call("weights_digest")
            break
        except ray.exceptions.RayError as e:
            cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) else None
            if isinstance(cause, TaggantError):
                raise cause from None
            if attempt == max_restarts:
                raise RuntimeError(f"{run_id.name} failed {attempt + 1} times; last: {e}") from e
            log.warning(
                "%s: its rank group failed (%s); restarting from step %d",
                run_id.name,
                type(e).__name__,
                checkpoint.resume_step(run_dir),
            )
    _check_replicas(run_id, digests, runs.tensor_parallel_size, runs.data_parallel_size)
    unexported = jobs_hf.missing_exports(run_dir) if spec.checkpoints.export_hf else []
    if unexported:
        raise RuntimeError(
            f"{run_id.name}: checkpoints {unexported} were committed but not "
            "exported; the export hook has a bug"
        )
    return {
        "run": run_id.name,
        "steps": status["step"],
        "samples_seen": status["samples_seen"],
        "tokens_seen": status["tokens_seen"],
        "checkpoints": checkpoint.committed_steps(run_dir),
        "final_loss": checkpoint.read_train_log(run_dir)[status["step"]]["loss"],
        "restarts": attempt,
        "weights_digests": digests,
        "exports": hf.exported_steps(run_dir),
    }


def actor_name(spec: ExperimentSpec, run_id: RunId, attempt: int, rank: int) -> str:
    """The Ray name of one rank actor (``ray.get_actor`` finds it; tests kill ranks by it)."""
    return f"taggant:{spec.name}:{run_id.name}:attempt{attempt}:rank{rank}"


class RankWorker:
    """One rank of a run, as a Ray actor."""

    def __init__(self, spec: ExperimentSpec, run_id: RunId, run_dir: str, threads: int):
        self.spec, self.run_id, self.run_dir, self.threads = spec, run_id, run_dir, threads
        self.store: Any = None
        """The rendezvous store; it must outlive the process group's set-up."""

    def open_rendezvous(self) -> int:
        """Rank 0: serve the process group's rendezvous store on this node, on a port the OS
        picks and this actor holds from now on; returns the port for ``setup``."""
        from taggant.pipeline.train.model import rendezvous_store

        self.store = rendezvous_store(
            os.environ["MASTER_ADDR"], 0, int(os.environ["WORLD_SIZE"]), master=True
        )
        return self.store.port

    def setup(self, port: int) -> None:
        """Open the run's samples (copying the base dataset to this node first with
        ``runs.local_copy_dir``), join the process group through rank 0's store on ``port`` and
        build the ``Trainer``, resumed from the newest committed checkpoint. Not in ``__init__``,
        so that a ``DataError`` reaches the driver as itself."""
        import torch

        from taggant.pipeline.train.loop import TrainConfig, Trainer
        from taggant.pipeline.train.model import init_parallel, rendezvous_store

        torch.set_num_threads(self.threads)
        runs = self.spec.runs
        samples = data.open_training_samples(self.run_dir, runs.local_copy_dir)
        if os.environ["RANK"] != "0":
            self.store = rendezvous_store(
                os.environ["MASTER_ADDR"], port, int(os.environ["WORLD_SIZE"]), master=False
            )
        init_parallel(runs.tensor_parallel_size, runs.pipeline_parallel_size, store=self.store)
        config = TrainConfig.from_spec(
            self.spec,
            self.run_id,
            samples.vocab_size,
            jobs_hf.init_checkpoint(self.spec, self.run_dir),
        )
        # Rank 0 starts the exports and training goes on without waiting for them.
        self.exporter = None
        if self.spec.checkpoints.export_hf and os.environ["RANK"] == "0":
            self.exporter = jobs_hf.Exporter(self.spec.name, self.run_dir)
            self.exporter.start()  # checkpoints committed before a restart whose export was cut off
        on_commit = (lambda step: self.exporter.start()) if self.exporter else None
        self.trainer = Trainer(config, samples, self.run_dir, on_commit)

    def train_until(self, step: int) -> dict[str, Any]:
        """``Trainer.train_until`` without the per-step losses (they are in the train log); on
        rank 0 of a run that exports, it returns once every checkpoint is exported."""
        status = self.trainer.train_until(step)
        if self.exporter is not None:
            self.exporter.finish()
        status.pop("losses")
        return status

    def weights_digest(self) -> str:
        return self.trainer.weights_digest()


class Stopped(Exception):
    """A run's thread stopped waiting because the driver is stopping."""


class Stop:
    """What the driver tells every run's thread: stop (``set``). A thread that stops kills its
    rank group, unless the whole Ray session is ending (an interrupt): the session's end removes
    the groups, and Ray's daemons may have died with the signal already (a terminal's Ctrl-C or a
    SIGTERM reaches the whole process group), so that asking them to remove a placement group
    would wait out Ray's one-minute reconnect timeout."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.session_ending = False

    def set(self, session_ending: bool = False) -> None:
        self.session_ending = session_ending
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class _RankGroup:
    """A placement group with one ``RankWorker`` per bundle, wired into one process group.

    A context manager: leaving it kills the actors and removes the placement group (see ``Stop``).
    Its waits on Ray raise ``Stopped`` once ``stop`` is set. ``port``: the rendezvous port rank 0
    holds (``RankWorker.setup``'s argument).

    Args:
        bundle: resources of one rank.
        names: one actor name per rank.
        worker_args: ``RankWorker`` arguments, the same for every rank.
        tensor_parallel_size: ranks per tensor-parallel group, kept on one node where Ray's
            placement allows (``jobs.placement``).
        stop: set when the driver is stopping.
    """

    def __init__(
        self,
        bundle: dict[str, float],
        names: list[str],
        worker_args: tuple,
        tensor_parallel_size: int,
        stop: Stop,
    ):
        from ray.util.placement_group import placement_group

        self.actors: list[Any] = []
        self.stop = stop
        self.pg = placement_group([bundle] * len(names), strategy="PACK")
        try:
            self._start(bundle, names, worker_args, tensor_parallel_size)
        except BaseException:
            self.shutdown()
            raise

    def _start(
        self,
        bundle: dict[str, float],
        names: list[str],
        worker_args: tuple,
        tensor_parallel_size: int,
    ) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self._wait([self.pg.ready()])
        placements = placement.probe_bundles(self.pg, len(names), bundle.get("GPU", 0))
        order = placement.order_ranks(placements, tensor_parallel_size, names[0])
        bundles = [
            PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=b) for b in order
        ]
        address = placements[order[0]].node_ip
        gpu = bool(bundle.get("GPU"))
        threads = str(int(bundle["CPU"]))
        actor = ray.remote(max_restarts=0)(RankWorker)
        for rank, name in enumerate(names):
            env = {
                "RANK": str(rank),
                "WORLD_SIZE": str(len(names)),
                "LOCAL_RANK": "0",  # Ray shows each rank actor only its own GPU
                "MASTER_ADDR": address,
                "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads,
                # CPU ranks must not pick up a GPU that happens to be on their node.
                **({"CUDA_DEVICE_MAX_CONNECTIONS": "1"} if gpu else {"CUDA_VISIBLE_DEVICES": ""}),
            }
            self.actors.append(
                actor.options(
                    num_cpus=bundle["CPU"],
                    num_gpus=bundle.get("GPU", 0),
                    name=name,
                    scheduling_strategy=bundles[rank],
                    runtime_env={"env_vars": env},
                ).remote(*worker_args)
            )
        rendezvous = self.actors[0].open_rendezvous.remote()
        self._wait([rendezvous])
        self.port: int = ray.get(rendezvous)

    def call(self, method: str, *args: Any) -> list[Any]:
        """Call ``method`` on every rank; the results in rank order. Raises the first failure at
        once: the other ranks may be stuck in a collective with the failed one."""
        import ray

        refs = [getattr(a, method).remote(*args) for a in self.actors]
        self._wait(refs)
        return ray.get(refs)

    def _wait(self, refs: list[Any]) -> None:
        """Wait until every ref is ready; raise the first failure at once, and ``Stopped`` once
        ``stop`` is set."""
        import ray

        pending = list(refs)
        while pending:
            if self.stop.is_set():
                raise Stopped()
            done, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
            ray.get(done)

    def shutdown(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        if self.stop.session_ending:
            return
        for a in self.actors:
            ray.kill(a)
        remove_placement_group(self.pg)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _use_gpus(spec: ExperimentSpec, resources: dict[str, float]) -> bool:
    device = spec.runs.device
    if device == "cuda" and not resources.get("GPU"):
        fix = "`cuda`, but the Ray cluster has no GPU; use `auto` or `cpu`"
        raise ConfigError([("runs.device", fix)])
    return device == "cuda" or (device == "auto" and bool(resources.get("GPU")))


def _check_capacity(
    bundle: dict[str, float],
    world: int,
    resources: dict[str, float],
    watchers: dict[str, float],
) -> None:
    """Refuse a run whose ranks do not fit beside the probe watchers: the watchers (``watchers``:
    what all of them reserve) start first and hold their resources until training ends, so a
    rank group that does not fit in the rest would wait for them forever."""
    for name in sorted(set(bundle) | {n for n, held in watchers.items() if held}):
        amount, held = bundle.get(name, 0), watchers.get(name, 0)
        if amount * world + held > resources.get(name, 0):
            beside = f" beside the probe watchers' {held:g}" if held else ""
            raise ConfigError(
                [
                    (
                        "runs.data_parallel_size",
                        (
                            f"a run needs {amount * world:g} {name} ({world} ranks × {amount:g})"
                            f"{beside} but the Ray cluster has {resources.get(name, 0):g}; lower "
                            "data_parallel_size, tensor_parallel_size or pipeline_parallel_size, "
                            "or probes.watcher's num_cpus/num_gpus, or add nodes"
                        ),
                    )
                ]
            )


def _check_replicas(
    run_id: RunId, digests: list[str], tensor_parallel_size: int, data_parallel_size: int
) -> None:
    # Ranks with the same tensor and pipeline coordinates are data-parallel replicas of one shard.
    shards: dict[tuple[int, int], set[str]] = {}
    for rank, digest in enumerate(digests):
        tensor, _, stage = placement.rank_coordinates(
            rank, tensor_parallel_size, data_parallel_size
        )
        shards.setdefault((tensor, stage), set()).add(digest)
    for (tensor, stage), found in sorted(shards.items()):
        if len(found) > 1:
            raise RuntimeError(
                f"{run_id.name}: the data-parallel replicas of tensor-parallel rank "
                f"{tensor}, pipeline stage {stage} hold different weights; the "
                "training loop has a bug"
            )
