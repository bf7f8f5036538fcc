"""Generators by versioned name, and the version each kind uses now.

A shipped version never changes behaviour: a change of output is a new name (``canary.v2``) added
here, and ``CURRENT`` moves to it. The version enters the plan stage's hash and every item's
``version`` column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.perturb import canary, ghost, testset, watermark
from taggant.pipeline.perturb.items import Source
from taggant.pipeline.spec import PerturbationSpec


@dataclass(frozen=True)
class CorpusInputs:
    """What generators that rewrite corpus documents need from the corpus scan.

    Attributes:
        watermark_docs: set name → its candidate documents in priority order.
        unigrams: corpus word counts (``None`` when no set needs them).
    """

    watermark_docs: dict[str, list[watermark.DocCandidate]] = field(default_factory=dict)
    unigrams: watermark.Unigrams | None = None


def _canary(pset, seed: int, corpus: CorpusInputs) -> Source:
    return canary.CanarySource(pset, seed)


def _ghost(pset, seed: int, corpus: CorpusInputs) -> Source:
    return ghost.GhostSource(pset, seed)


def _testset(pset, seed: int, corpus: CorpusInputs) -> Source:
    return testset.TestsetSource(pset, seed)


def _watermark(pset, seed: int, corpus: CorpusInputs) -> Source:
    assert corpus.unigrams is not None, "watermark sets need the corpus scan"
    return watermark.WatermarkSource(pset, corpus.watermark_docs[pset.name], corpus.unigrams)


GENERATORS: dict[str, Callable[[PerturbationSpec, int, CorpusInputs], Source]] = {
    canary.VERSION: _canary,
    ghost.VERSION: _ghost,
    testset.VERSION: _testset,
    watermark.VERSION: _watermark,
}
"""Versioned name → factory of a set's candidate stream."""

CURRENT: dict[str, str] = {
    "canary": canary.VERSION,
    "ghost": ghost.VERSION,
    "testset": testset.VERSION,
    "watermark": watermark.VERSION,
}
"""Kind → the generator version it uses."""


def version_of(kind: str) -> str:
    """The generator version of ``kind``.

    Raises:
        ConfigError: for a kind with no generator.
    """
    if kind not in CURRENT:
        raise ConfigError(
            [
                (
                    "perturbations.kind",
                    f"no generator for kind {kind!r}; use one of {', '.join(sorted(CURRENT))}",
                )
            ]
        )
    return CURRENT[kind]


def make_source(pset: PerturbationSpec, seed: int, corpus: CorpusInputs) -> Source:
    """The candidate stream of ``pset`` under the current version of its kind."""
    return GENERATORS[version_of(pset.kind)](pset, seed, corpus)
