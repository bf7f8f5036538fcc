"""Every shipped experiment spec validates; the one that reads only files in this repository
passes ``taggant validate``'s checks of those files too."""

from pathlib import Path

import pytest

from taggant.jobs.cli import EXPERIMENTS
from taggant.pipeline import preflight
from taggant.pipeline.spec import load_spec

SPECS = sorted(EXPERIMENTS.glob("*.yaml"))
REPO = Path(__file__).resolve().parents[1]


def test_there_are_shipped_specs():
    assert SPECS


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_spec_validates(path: Path):
    spec = load_spec(path)
    assert spec.name == path.stem


def test_hubble_domains_files_are_found_and_items_fit(monkeypatch: pytest.MonkeyPatch):
    # Its corpus (tests/data) and its passages and questions (pipeline/resources) are named
    # relative to the repository root, where the README says to run it; the demo's corpus is
    # built at run time, so only this spec can be checked against its files here.
    monkeypatch.chdir(REPO)
    found = preflight.check(load_spec(EXPERIMENTS / "hubble-domains.yaml"))
    assert found.errors == []
