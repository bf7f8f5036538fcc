"""Content-addressed stage outputs.

A stage writes to ``<work_dir>/<stage>-<hash8>/`` where the hash covers the stage's name, the
version of its algorithm, its declared config fields and the hashes of its inputs, so changing any
of them makes a new folder instead of overwriting data already used downstream. Inside it the
stage writes its data, ``spec.yaml`` (the resolved spec), ``stats.json``, and ``_SUCCESS`` last: a
folder with ``_SUCCESS`` is finished and skipped on re-run; a folder without it is half-written and
is cleared and redone.

Each stage module declares itself with a ``StageDecl`` (name, version, inputs, config, how to run);
``jobs.graph`` derives the keys, folders, run order and status from the declarations alone.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

from taggant.pipeline import io
from taggant.pipeline.spec import CorpusSpec, DedupSpec, ExperimentSpec

SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class StageKey:
    """What a stage's output depends on; equal keys mean equal outputs."""

    name: str
    version: str
    config: dict[str, Any]
    inputs: tuple[str, ...] = ()

    @property
    def hash(self) -> str:
        """Hex SHA-256 of the canonical JSON of the key."""
        canonical = json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "config": self.config,
                "inputs": self.inputs,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def folder(self, work_dir: str) -> str:
        """The stage's output folder under ``work_dir``."""
        return io.join(work_dir, f"{self.name}-{self.hash[:8]}")


@dataclass(frozen=True)
class DataSpec:
    """The sections the data stages (``ingest``, ``dedup``) read, for ``taggant dedup``, which
    has no experiment: their declarations read only these fields of an ``ExperimentSpec`` too."""

    corpus: CorpusSpec
    dedup: DedupSpec
    work_dir: str


Spec = ExperimentSpec | DataSpec


@dataclass(frozen=True)
class StageContext:
    """What a stage's ``execute`` is given."""

    spec: Spec
    key: StageKey
    folders: Mapping[str, str]
    """The output folder of this stage and of every stage it depends on, directly or through
    others, by stage name (their hashes all reach this stage's key)."""

    @property
    def folder(self) -> str:
        """This stage's output folder."""
        return self.folders[self.key.name]


@dataclass(frozen=True)
class StageDecl:
    """A stage as its module declares it, at import time and cheaply (no Ray, torch or megatron:
    ``taggant plan`` and ``status`` read every declaration and run none).

    The stage's key is ``StageKey(name, version, config(spec), hashes of inputs)``. A stage whose
    ``skip(spec)`` is true is left out of the graph and passes its one input through: stages that
    name it get that input's hash and folder in its place.
    """

    name: str
    """The folder prefix, and how other stages name this one in ``inputs``."""
    version: str
    """Version of the stage's algorithm; a shipped version never changes its output."""
    inputs: tuple[str, ...]
    """Stages whose outputs this one reads, in the order their hashes enter its key."""
    config: Callable[[Spec], dict[str, Any]]
    """The spec fields (and versions of the algorithms it calls) the output depends on, as JSON
    data. Called whenever the graph is built: no work beyond reading the spec (and, for ingest,
    listing the corpus files)."""
    execute: Callable[[StageContext], dict[str, Any]]
    """Writes the stage's data into ``StageContext.folder`` and returns its stats; imports Ray,
    torch and megatron inside."""
    resumable: bool = False
    """A half-written folder is resumed (training from its last checkpoint), not cleared."""
    skip: Callable[[Spec], bool] | None = None
    """Whether the stage has nothing to do for a spec (``None``: never)."""


def section_config(section: BaseModel, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """A spec section as JSON data for a stage's config, without the fields in ``exclude`` (those
    that never change the stage's output). Every other field enters the key: adding a field to a
    section changes the keys, and so the folders, of the stages that read it."""
    return section.model_dump(mode="json", exclude=set(exclude))


def is_done(folder: str) -> bool:
    """Whether the stage in ``folder`` finished (its ``_SUCCESS`` marker exists)."""
    return io.exists(io.join(folder, SUCCESS))


def begin(folder: str) -> None:
    """Clear a half-written output so a stage starts from nothing."""
    assert not is_done(folder), f"{folder} is finished; a finished stage is never rewritten"
    io.remove(folder)


def commit(
    folder: str, key: StageKey, resolved_spec: dict[str, Any], stats: dict[str, Any]
) -> None:
    """Write the sidecars and then the ``_SUCCESS`` marker, which must be the last file written."""
    io.write_text(io.join(folder, "spec.yaml"), yaml.safe_dump(resolved_spec, sort_keys=True))
    io.write_json(io.join(folder, "stats.json"), stats)
    # the inputs' hashes let a reader walk from a folder to the exact folders it was made from
    marker = {"stage": key.name, "version": key.version, "hash": key.hash, "inputs": key.inputs}
    io.write_json(io.join(folder, SUCCESS), marker)


@dataclass
class Counts:
    """Record accounting of a stage or shard: ``input = kept + Σ removed + Σ quarantined``."""

    input: int = 0
    kept: int = 0
    removed: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.input + other.input,
            self.kept + other.kept,
            self.removed + other.removed,
            self.quarantined + other.quarantined,
        )

    def balanced(self) -> bool:
        return self.input == self.kept + sum(self.removed.values()) + sum(self.quarantined.values())

    def to_dict(self) -> dict[str, Any]:
        assert self.balanced(), f"counts do not add up: {self}"
        return {
            "input": self.input,
            "kept": self.kept,
            "removed": dict(sorted(self.removed.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counts:
        return cls(d["input"], d["kept"], Counter(d["removed"]), Counter(d["quarantined"]))
