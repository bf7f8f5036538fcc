"""The perturbation kinds, listed once in ``KINDS``; the spec union, the kind names, the generator
versions and which kinds each kind-specific probe reads all derive from that tuple.

A kind is one module under ``pipeline/perturb/`` that defines

* ``KIND``: the spec's ``kind`` value; ``SPEC``: its spec class (a ``setspec.PerturbationSet``
  with ``kind: Literal[KIND]``);
* ``VERSION``: its generator's version. A shipped version never changes behaviour: a change of
  output is a new version string, which enters the plan stage's hash and every item's ``version``;
* ``PROBES``: the probes that read what only this kind has (``pipeline.probe.registry`` asks
  ``kinds_probed_by``; generic probes read every kind);
* ``source(pset, seed, corpus) -> items.Source``: the set's candidate stream.

Adding a kind is its module plus its name in ``KINDS``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Annotated, Union

from pydantic import Field

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.perturb import variants
from taggant.pipeline.perturb.items import CorpusInputs, Source
from taggant.pipeline.perturb.setspec import PerturbationSet

KINDS: tuple[ModuleType, ...] = tuple(
    importlib.import_module(f"taggant.pipeline.perturb.{name}")
    for name in ("canary", "ghost", "watermark", "testset", "text", "biography")
)
"""Every perturbation kind's module, in the order error messages list them."""

PERTURBATION_KINDS: tuple[str, ...] = tuple(k.KIND for k in KINDS)
"""The ``kind`` values a perturbation set may take."""

SPEC_CLASSES: tuple[type[PerturbationSet], ...] = tuple(k.SPEC for k in KINDS)

PerturbationSpec = Annotated[Union[SPEC_CLASSES], Field(discriminator="kind")]  # noqa: UP007
"""A perturbation set of any kind, told apart by its ``kind`` field."""

CURRENT: dict[str, str] = {k.KIND: k.VERSION for k in KINDS}
"""Kind → the generator version it uses."""

_BY_KIND: dict[str, ModuleType] = {k.KIND: k for k in KINDS}


def kinds_probed_by(probe: str) -> frozenset[str]:
    """The kinds whose module lists ``probe`` among its ``PROBES``."""
    return frozenset(k.KIND for k in KINDS if probe in k.PROBES)


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
                    f"no generator for kind {kind!r}; use one of {', '.join(PERTURBATION_KINDS)}",
                )
            ]
        )
    return CURRENT[kind]


def make_source(pset: PerturbationSet, seed: int, corpus: CorpusInputs) -> Source:
    """The candidate stream of ``pset`` under the current version of its kind, with per-copy
    variants when the set asks for generated ones (``pipeline.perturb.variants``)."""
    version_of(pset.kind)
    return variants.with_variants(_BY_KIND[pset.kind].source(pset, seed, corpus), pset, seed)
