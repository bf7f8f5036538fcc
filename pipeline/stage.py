"""Content-addressed stage outputs.

A stage writes to ``<work_dir>/<stage>-<hash8>/`` where the hash covers the stage's name, the version
of its algorithm, its declared config fields and the hashes of its inputs, so changing any of them
makes a new folder instead of overwriting data already used downstream. Inside it the stage writes
its data, ``spec.yaml`` (the resolved spec), ``stats.json``, and ``_SUCCESS`` last: a folder with
``_SUCCESS`` is finished and skipped on re-run; a folder without it is half-written and is cleared
and redone.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

from taggant.pipeline import io

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
            {"name": self.name, "version": self.version, "config": self.config, "inputs": self.inputs},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def folder(self, work_dir: str) -> str:
        """The stage's output folder under ``work_dir``."""
        return io.join(work_dir, f"{self.name}-{self.hash[:8]}")


def is_done(folder: str) -> bool:
    """Whether the stage in ``folder`` finished (its ``_SUCCESS`` marker exists)."""
    return io.exists(io.join(folder, SUCCESS))


def begin(folder: str) -> None:
    """Clear a half-written output so a stage starts from nothing."""
    assert not is_done(folder), f"{folder} is finished; a finished stage is never rewritten"
    io.remove(folder)


def commit(folder: str, key: StageKey, resolved_spec: dict[str, Any], stats: dict[str, Any]) -> None:
    """Write the sidecars and then the ``_SUCCESS`` marker, which must be the last file written."""
    io.write_text(io.join(folder, "spec.yaml"), yaml.safe_dump(resolved_spec, sort_keys=True))
    io.write_json(io.join(folder, "stats.json"), stats)
    io.write_json(io.join(folder, SUCCESS), {"stage": key.name, "version": key.version, "hash": key.hash})


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
