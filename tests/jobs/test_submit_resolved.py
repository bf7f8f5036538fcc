"""A run's experiment is addressable by its work dir: ``taggant status WORK_DIR`` and ``taggant fit
--work-dir WORK_DIR`` read the resolved spec the run recorded (``jobs.resolved``), so the
overrides it ran with are never repeated; ``status SPEC`` says which spec and work dir it reports
on, and warns when the work dir's run had other settings. And submit's hints, as printed.

The record is written here with ``resolved.write``, the call ``taggant run`` makes when it starts;
``tests/jobs/test_submit.py`` checks that a submitted job's run writes it."""

from __future__ import annotations

import json
import shlex

import pytest

from taggant.jobs import graph, resolved
from taggant.jobs.cli import build_parser, main
from taggant.jobs.submit import hints
from taggant.pipeline.spec import load_spec
from taggant.pipeline.store import StoreWriter
from tests.conftest import tiny_spec_file
from tests.pipeline.test_fit import write_run

OVERRIDES = ["seed=11", "fit.audit_delta=0.01"]


def record(spec_file, overrides=OVERRIDES):
    """Record the spec as ``taggant run`` does when it starts; returns the resolved spec."""
    spec = load_spec(spec_file, overrides)
    resolved.write(spec, {s.key.name: s.folder for s in graph.build(spec)})
    return spec


def table(out: str) -> str:
    """What ``status`` prints below its first line (which names the spec and work dir)."""
    return out.split("\n", 1)[1]


@pytest.fixture
def spec_file(tmp_path, debian_corpus):
    return tiny_spec_file(tmp_path, debian_corpus)


def test_status_of_a_work_dir_reports_the_experiment_as_it_ran(spec_file, capsys):
    spec = record(spec_file)
    assert main(["status", str(spec_file), *[a for o in OVERRIDES for a in ("--set", o)]]) == 0
    given = capsys.readouterr().out
    assert main(["status", spec.work_dir]) == 0
    by_work_dir = capsys.readouterr().out
    assert table(by_work_dir) == table(given)
    first = by_work_dir.splitlines()[0]
    assert "'tiny' as its run resolved it" in first and spec.work_dir in first
    ingest = graph.status(spec)[0]
    assert ingest["stage"] == "ingest" and ingest["hash"] in by_work_dir


def test_status_of_the_spec_without_the_overrides_says_so_and_warns(spec_file, capsys):
    spec = record(spec_file)
    assert main(["status", str(spec_file)]) == 0
    out, err = capsys.readouterr()
    assert f"'tiny' from {spec_file} with no --set; work dir {spec.work_dir}" in out
    assert "ran 'tiny' with other seed, fit" in err
    assert f"taggant status {spec.work_dir} --experiment tiny" in err
    plan = next(row["hash"] for row in graph.status(spec) if row["stage"] == "plan")
    assert plan not in out  # another seed: another plan folder, as the warning says


def test_a_work_dir_is_never_guessed(spec_file, tmp_path, capsys):
    assert main(["status", str(tmp_path / "fresh")]) == 2
    assert "holds no experiment record" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "typo.yaml")]) == 2  # a spec's name, not a work dir
    assert "typo.yaml: no such spec file" in capsys.readouterr().err
    spec = record(spec_file)
    record(spec_file, [*OVERRIDES, "name=other"])
    assert main(["status", spec.work_dir]) == 2
    assert "holds other, tiny: name one with --experiment" in capsys.readouterr().err
    assert main(["status", spec.work_dir, "--experiment", "tiny"]) == 0
    assert main(["status", spec.work_dir, "--set", "seed=3", "--experiment", "tiny"]) == 2
    assert "--set: only with a spec file" in capsys.readouterr().err


def test_fit_of_a_work_dir_reads_its_store_experiment_and_fit_settings(spec_file, capsys):
    spec = record(spec_file)
    for experiment, slope in (("tiny", -2.0), ("other", -4.0)):
        writer = StoreWriter(spec.store.url, experiment)
        write_run(writer, "r", slope=slope, tokens=10**6, params=10**6, steps=[10])

    def fit(*args: str) -> dict:
        assert main(["fit", *args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    by_work_dir = fit("--work-dir", spec.work_dir)
    assert {f["experiment"] for f in by_work_dir["fits"]} == {"tiny"}
    url = spec.store.url
    assert by_work_dir == fit("--store", url, "--experiment", "tiny", "--audit-delta", "0.01")
    assert by_work_dir != fit("--store", url, "--experiment", "tiny")  # the recorded δ counts
    # An option given still overrides the recorded setting.
    assert fit("--work-dir", spec.work_dir, "--audit-delta", "0") == fit(
        "--store", url, "--experiment", "tiny"
    )


@pytest.mark.parametrize("token", [True, False])
def test_the_hints_parse_and_carry_the_auth_mode_when_a_token_is_found(
    token, monkeypatch, tmp_path
):
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    if token:
        monkeypatch.setenv("RAY_AUTH_TOKEN", "t")
    else:
        monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    printed = dict(hints("raysubmit_x", "127.0.0.1:8290", "/shared/work", "demo"))
    assert list(printed) == ["logs", "state", "stop", "progress", "results"]
    for what in ("logs", "state", "stop"):
        words = shlex.split(printed[what])
        assert (words[0] == "RAY_AUTH_MODE=token") is token
        assert words[-3:] == ["raysubmit_x", "--address", "http://127.0.0.1:8290"]
    status = build_parser().parse_args(shlex.split(printed["progress"])[1:])
    assert (status.spec, status.experiment, status.set) == ("/shared/work", "demo", None)
    fit = build_parser().parse_args(shlex.split(printed["results"])[1:])
    assert (fit.work_dir, fit.experiment, fit.store) == ("/shared/work", "demo", None)
