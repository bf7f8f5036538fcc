"""A perturbation kind is one module listed once in ``registry.KINDS``: the spec union, the kind
names, the generator versions and the kinds each kind-specific probe reads all follow from it."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.perturb import registry
from taggant.pipeline.probe.registry import PROBES
from taggant.pipeline.spec import PROBE_NAMES, parse_spec

REQUIRED = {"text": {"path": "records.jsonl"}}
"""Fields a kind needs beyond those every set needs."""


def one_set(kind) -> dict:
    return {
        "kind": kind.KIND,
        "name": "s",
        "count": 4,
        "dup_levels": [1],
        **REQUIRED.get(kind.KIND, {}),
    }


@pytest.mark.parametrize("kind", registry.KINDS, ids=lambda k: k.KIND)
def test_each_kind_module_declares_the_whole_kind(kind):
    assert kind.SPEC.model_fields["kind"].default == kind.KIND
    assert kind.VERSION.startswith(kind.KIND + ".v")
    assert set(kind.PROBES) <= set(PROBE_NAMES)
    assert callable(kind.source)
    parsed = TypeAdapter(registry.PerturbationSpec).validate_python(one_set(kind))
    assert type(parsed) is kind.SPEC
    assert registry.version_of(kind.KIND) == kind.VERSION


def test_kind_names_are_the_modules_in_order_and_distinct():
    assert registry.PERTURBATION_KINDS == tuple(k.KIND for k in registry.KINDS)
    assert len(set(registry.PERTURBATION_KINDS)) == len(registry.KINDS)
    assert registry.SPEC_CLASSES == tuple(k.SPEC for k in registry.KINDS)


def test_kind_specific_probes_read_exactly_the_kinds_that_list_them():
    declared = {name for k in registry.KINDS for name in k.PROBES}
    for name, probe in PROBES.items():
        if name in declared:
            assert probe.kinds == registry.kinds_probed_by(name)
        else:
            assert probe.kinds is None, f"{name} reads only some kinds but no kind lists it"


def experiment(tmp_path, pset: dict) -> dict:
    return {
        "name": "k",
        "seed": 1,
        "work_dir": str(tmp_path),
        "corpus": {"paths": [str(tmp_path / "c.jsonl")]},
        "perturbations": [pset],
        "runs": {"model_sizes": ["tiny-2m"], "train_tokens": [1_000_000]},
        "store": {"url": str(tmp_path / "store")},
    }


def test_spec_errors_list_every_kind_and_know_every_kinds_fields(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_spec(experiment(tmp_path, {"kind": "novel", "name": "s", "count": 4}))
    assert info.value.problems == [
        (
            "perturbations[0].kind",
            f"unknown kind 'novel'; use one of {', '.join(registry.PERTURBATION_KINDS)}",
        )
    ]
    text_set = {**one_set(next(k for k in registry.KINDS if k.KIND == "text")), "prompt_feild": "q"}
    with pytest.raises(ConfigError, match="did you mean 'prompt_field'"):
        parse_spec(experiment(tmp_path, text_set))


def test_an_unknown_kind_has_no_version():
    with pytest.raises(ConfigError, match="no generator for kind 'novel'"):
        registry.version_of("novel")
