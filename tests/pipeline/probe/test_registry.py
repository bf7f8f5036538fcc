"""The registry's names are the spec's, each under a versioned name."""

from __future__ import annotations

import re

from taggant.pipeline.probe import PROBES
from taggant.pipeline.spec import PERTURBATION_KINDS, PROBE_NAMES


def test_every_spec_probe_name_has_one_versioned_implementation():
    assert list(PROBES) == list(PROBE_NAMES)
    for name, probe in PROBES.items():
        assert re.fullmatch(rf"{name}\.v\d+", probe.version), probe.version
        assert probe.kinds is None or probe.kinds <= set(PERTURBATION_KINDS)
