"""The stage graph of an experiment and its runner.

Stages run in dependency order. Each has a content-addressed folder (``pipeline.stage``): a
finished one is skipped, a half-written one is cleared and redone (``train`` resumes instead):
``ingest`` → ``dedup`` → ``plan`` → ``tokenize`` → ``train`` (with streaming probes) → ``probe``
(probes any committed checkpoint not yet in the store) → ``fit``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from taggant.jobs import dedup as dedup_job
from taggant.jobs import fit as fit_job
from taggant.jobs import ingest as ingest_job
from taggant.jobs import plan as plan_job
from taggant.jobs import probe as probe_job
from taggant.jobs import tokenize as tokenize_job
from taggant.jobs import train as train_job
from taggant.pipeline import fit, ingest, io, stage, tokenize
from taggant.pipeline.dedup import DEDUP_VERSION, DedupParams
from taggant.pipeline.errors import ConfigError
from taggant.pipeline.perturb import plan
from taggant.pipeline.spec import CorpusSpec, DedupSpec, ExperimentSpec
from taggant.pipeline.train.schedule import run_checkpoint_steps
from taggant.pipeline.stage import StageKey


@dataclass(frozen=True)
class Stage:
    """One node of the graph: its key, output folder, and how to produce that folder's data."""

    key: StageKey
    folder: str
    execute: Callable[[], dict[str, Any]]
    resumable: bool = False
    """A half-written folder is resumed (training from its last checkpoint), not cleared."""

    @property
    def status(self) -> str:
        """``done``, ``partial`` (a folder without ``_SUCCESS``) or ``pending``."""
        if stage.is_done(self.folder):
            return "done"
        return "partial" if io.exists(self.folder) else "pending"


def build(spec: ExperimentSpec) -> list[Stage]:
    """The stages of ``spec`` in run order. Lists the corpus files (their sizes enter the hash)."""
    stages = data_stages(spec.corpus, spec.dedup, spec.work_dir)
    corpus = stages[-1]
    plan_key = StageKey("plan", plan.VERSION, plan_job.stage_config(spec), (corpus.key.hash,))
    plan_folder = plan_key.folder(spec.work_dir)
    stages.append(Stage(plan_key, plan_folder, lambda: plan_job.run(spec, plan_folder, corpus.folder)))
    tokenize_key = StageKey("tokenize", tokenize.TOKENIZE_VERSION, tokenize_job.stage_config(spec), (plan_key.hash,))
    tokenize_folder = tokenize_key.folder(spec.work_dir)
    stages.append(Stage(tokenize_key, tokenize_folder, lambda: tokenize_job.run(
        spec, tokenize_folder, plan_folder, io.join(plan_folder, "manifests"))))
    train_key = StageKey("train", train_job.TRAIN_VERSION, train_job.stage_config(spec), (tokenize_key.hash,))
    train_folder = train_key.folder(spec.work_dir)
    targets = probe_job.targets(spec, train_folder, tokenize_folder, plan_folder)
    final_steps = {run.name: max(run_checkpoint_steps(spec, run.train_tokens)) for run in spec.runs.grid()}

    def train_and_probe() -> dict[str, Any]:
        return probe_job.run(spec, targets, final_steps, lambda: train_job.run(spec, train_folder, tokenize_folder))

    stages.append(Stage(train_key, train_folder, train_and_probe, resumable=True))
    probe_key = StageKey("probe", probe_job.PROBE_VERSION,
                         {"probes": spec.probes.model_dump(mode="json"), "store": spec.store.url}, (train_key.hash,))
    stages.append(Stage(probe_key, probe_key.folder(spec.work_dir),
                        lambda: probe_job.run(spec, targets, final_steps, lambda: None)))
    fit_key = StageKey("fit", fit.FIT_VERSION, {"store": spec.store.url}, (probe_key.hash,))
    fit_folder = fit_key.folder(spec.work_dir)
    stages.append(Stage(fit_key, fit_folder, lambda: fit_job.run(spec, fit_folder)))
    return stages


def data_stages(corpus: CorpusSpec, dedup: DedupSpec, work_dir: str) -> list[Stage]:
    """``ingest`` and (unless both kinds are off) ``dedup``; the last one's folder holds the
    corpus shards later stages read."""
    inputs = ingest.list_inputs(corpus)
    ingest_key = StageKey(
        "ingest",
        ingest.INGEST_VERSION,
        {"corpus": corpus.model_dump(mode="json"), "files": ingest.input_fingerprint(inputs)},
    )
    ingest_folder = ingest_key.folder(work_dir)
    stages = [Stage(ingest_key, ingest_folder, lambda: ingest_job.run(corpus, ingest_folder, inputs))]
    if dedup.exact or dedup.near:
        params = DedupParams.from_spec(dedup)
        dedup_key = StageKey("dedup", DEDUP_VERSION, params.to_dict(), (ingest_key.hash,))
        dedup_folder = dedup_key.folder(work_dir)
        stages.append(Stage(dedup_key, dedup_folder, lambda: dedup_job.run(params, dedup_folder, ingest_folder)))
    return stages


def until(stages: list[Stage], last: str | None) -> list[Stage]:
    """The stages up to and including the one named ``last`` (all when ``None``)."""
    if last is None:
        return stages
    names = [s.key.name for s in stages]
    if last not in names:
        raise ConfigError([("--until", f"no stage {last!r}; stages: {', '.join(names)}")])
    return stages[: names.index(last) + 1]


def run(resolved_spec: dict[str, Any], stages: list[Stage], console: Console) -> list[dict[str, Any]]:
    """Run every unfinished stage in order; returns one summary per stage. ``resolved_spec`` is
    written beside each stage's data."""
    summaries = []
    for s in stages:
        name = f"{s.key.name}-{s.key.hash[:8]}"
        if s.status == "done":
            console.print(f"[green]✓[/] {name} already done, skipped")
            summaries.append({"stage": s.key.name, "folder": s.folder, "skipped": True})
            continue
        if not s.resumable:
            stage.begin(s.folder)
        start = time.perf_counter()
        with console.status(f"running {name}"):
            stats = s.execute()
        elapsed = time.perf_counter() - start  # logged, not stored: stage outputs stay byte-identical
        stage.commit(s.folder, s.key, resolved_spec, stats)
        console.print(f"[green]✓[/] {name} done in {elapsed:.1f} s: {stats.get('counts', stats)}")
        summaries.append({"stage": s.key.name, "folder": s.folder, "skipped": False, "stats": stats,
                          "elapsed_s": elapsed})
    return summaries
