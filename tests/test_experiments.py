"""Every shipped experiment spec validates."""

from pathlib import Path

import pytest

from taggant.jobs.cli import EXPERIMENTS
from taggant.pipeline.spec import load_spec

SPECS = sorted(EXPERIMENTS.glob("*.yaml"))


def test_there_are_shipped_specs():
    assert SPECS


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_spec_validates(path: Path):
    spec = load_spec(path)
    assert spec.name == path.stem
