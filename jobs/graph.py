"""The stage graph of an experiment, derived from the stages' declarations, and its runner.

Each stage module (``jobs/<stage>.py``) declares a ``STAGE`` (``pipeline.stage.StageDecl``); this
module orders them (each after its inputs), derives every stage's key and content-addressed folder,
and reads their status. Stages run in that order: a finished one is skipped, a half-written one is
cleared and redone (``train`` resumes instead): ``ingest`` → ``dedup`` → ``plan`` →
``tokenize`` → ``train`` (with streaming probes) → ``probe`` (probes any committed checkpoint not
yet in the store) → ``fit``.

Building the graph imports every stage module but runs nothing: the modules import Ray, torch
and megatron only inside the functions that run a stage, so ``taggant plan`` and ``status`` never
load them (``tests/jobs/test_graph.py`` checks it).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from taggant.jobs import dedup, fit, ingest, plan, probe, tokenize, train
from taggant.pipeline import io, stage
from taggant.pipeline.errors import ConfigError
from taggant.pipeline.spec import CorpusSpec, DedupSpec, ExperimentSpec
from taggant.pipeline.stage import DataSpec, Spec, StageContext, StageDecl, StageKey


@dataclass(frozen=True)
class Stage:
    """One node of the graph: a declaration bound to a spec, with its key and folders."""

    decl: StageDecl
    context: StageContext

    @property
    def key(self) -> StageKey:
        return self.context.key

    @property
    def folder(self) -> str:
        return self.context.folder

    def execute(self) -> dict[str, Any]:
        """Write the stage's data into its folder; returns its stats."""
        return self.decl.execute(self.context)

    @property
    def status(self) -> str:
        """``done``, ``partial`` (a folder without ``_SUCCESS``) or ``pending``."""
        return folder_state(self.folder)


def folder_state(folder: str) -> str:
    """``done``, ``partial`` (a folder without ``_SUCCESS``) or ``pending`` (no folder)."""
    if stage.is_done(folder):
        return "done"
    return "partial" if io.exists(folder) else "pending"


def order(decls: Iterable[StageDecl]) -> list[StageDecl]:
    """``decls`` in run order: every stage after its inputs, otherwise in the order given.

    Raises:
        ValueError: two declarations share a name, one names an undeclared input, or the
            inputs form a cycle (a mistake in the declarations, not in a spec).
    """
    by_name: dict[str, StageDecl] = {}
    for d in decls:
        if d.name in by_name:
            raise ValueError(f"two stages are declared as {d.name!r}")
        by_name[d.name] = d
    ordered: list[StageDecl] = []
    visiting: list[str] = []

    def visit(d: StageDecl) -> None:
        if d.name in {o.name for o in ordered}:
            return
        if d.name in visiting:
            cycle = " → ".join([*visiting[visiting.index(d.name) :], d.name])
            raise ValueError(f"the stage inputs form a cycle: {cycle}")
        visiting.append(d.name)
        for name in d.inputs:
            if name not in by_name:
                raise ValueError(f"stage {d.name!r} reads {name!r}, which no stage declares")
            visit(by_name[name])
        visiting.pop()
        ordered.append(d)

    for d in by_name.values():
        visit(d)
    return ordered


def upstream(ordered: list[StageDecl]) -> dict[str, set[str]]:
    """Each stage's name → its own name and the names of every stage it depends on, directly or
    through others (``ordered`` in run order)."""
    names: dict[str, set[str]] = {}
    for d in ordered:
        names[d.name] = {d.name}.union(*(names[name] for name in d.inputs))
    return names


DECLARED = order(m.STAGE for m in (ingest, dedup, plan, tokenize, train, probe, fit))
"""Every stage's declaration, in run order (which follows from their inputs)."""
UPSTREAM = upstream(DECLARED)


def build(spec: Spec, until: str | None = None) -> list[Stage]:
    """The stages of ``spec`` in run order: all of them, or with ``until`` only the stage of that
    name and those it depends on. Lists the corpus files (their sizes enter the ingest hash).

    Raises:
        ConfigError: ``until`` names no declared stage.
    """
    if until is not None and until not in UPSTREAM:
        raise ConfigError([("--until", f"no stage {until!r}; stages: {', '.join(UPSTREAM)}")])
    hashes: dict[str, str] = {}
    folders: dict[str, str] = {}
    stages = []
    for d in DECLARED:
        if until is not None and d.name not in UPSTREAM[until]:
            continue
        if d.skip is not None and d.skip(spec):
            assert len(d.inputs) == 1, f"stage {d.name!r} can be skipped, so it needs one input"
            hashes[d.name], folders[d.name] = hashes[d.inputs[0]], folders[d.inputs[0]]
            continue
        key = StageKey(d.name, d.version, d.config(spec), tuple(hashes[name] for name in d.inputs))
        hashes[d.name], folders[d.name] = key.hash, key.folder(spec.work_dir)
        read = {name: folder for name, folder in folders.items() if name in UPSTREAM[d.name]}
        stages.append(Stage(d, StageContext(spec, key, read)))
    return stages


def data_stages(corpus: CorpusSpec, dedup_spec: DedupSpec, work_dir: str) -> list[Stage]:
    """``ingest`` and (unless both kinds are off) ``dedup`` of a corpus without an experiment; the
    last one's folder holds the corpus shards."""
    return build(DataSpec(corpus, dedup_spec, work_dir), until="dedup")


def status(spec: ExperimentSpec) -> list[dict[str, str]]:
    """One row per stage of ``spec``, in run order.

    Returns:
        Rows with ``stage``, ``hash`` (8 hex digits, as in the folder name), ``status`` (``done``,
        ``partial`` or ``pending``), ``folder``, and ``summary``: one line from the stage's
        ``stats.json`` when it is done, else empty.
    """
    return folders_status({s.key.name: s.folder for s in build(spec)})


def folders_status(folders: dict[str, str]) -> list[dict[str, str]]:
    """``status``'s rows for stage folders given by stage name (in run order), e.g. those a
    run recorded when it started (``jobs.resolved``): no corpus listing needed."""
    rows = []
    for name, folder in folders.items():
        state = folder_state(folder)
        stats = io.read_json(io.join(folder, "stats.json")) if state == "done" else None
        rows.append(
            {
                "stage": name,
                "hash": posixpath.basename(folder.rstrip("/")).rpartition("-")[2],
                "status": state,
                "folder": folder,
                "summary": summarize(stats) if stats is not None else "",
            }
        )
    return rows


def summarize(stats: dict[str, Any]) -> str:
    """One line from a stage's stats.

    Stages that keep record accounting (``counts``) show ``input``, ``kept``, and removals and
    quarantine by reason. Other stages show their top-level numbers, and the size of each
    top-level table or list.
    """
    counts = stats.get("counts")
    if counts:
        parts = [f"{counts['input']} in, {counts['kept']} kept"]
        for label in ("removed", "quarantined"):
            if counts[label]:
                reasons = ", ".join(f"{reason} {n}" for reason, n in counts[label].items())
                parts.append(f"{label}: {reasons}")
        return "; ".join(parts)
    return ", ".join(
        f"{key} {value}" if isinstance(value, int | float) else f"{key}: {len(value)}"
        for key, value in stats.items()
        if isinstance(value, int | float | dict | list) and not isinstance(value, bool)
    )


def run(
    resolved_spec: dict[str, Any], stages: list[Stage], console: Console
) -> list[dict[str, Any]]:
    """Run every unfinished stage in order; returns one summary per stage. ``resolved_spec`` is
    written beside each stage's data."""
    summaries = []
    for s in stages:
        name = f"{s.key.name}-{s.key.hash[:8]}"
        if s.status == "done":
            console.print(f"[green]✓[/] {name} already done, skipped")
            summaries.append({"stage": s.key.name, "folder": s.folder, "skipped": True})
            continue
        if not s.decl.resumable:
            stage.begin(s.folder)
        start = time.perf_counter()
        with console.status(f"running {name}"):
            stats = s.execute()
        # Logged, not stored: stage outputs stay byte-identical.
        elapsed = time.perf_counter() - start
        stage.commit(s.folder, s.key, resolved_spec, stats)
        console.print(f"[green]✓[/] {name} done in {elapsed:.1f} s: {stats.get('counts', stats)}")
        summaries.append(
            {
                "stage": s.key.name,
                "folder": s.folder,
                "skipped": False,
                "stats": stats,
                "elapsed_s": elapsed,
            }
        )
    return summaries
