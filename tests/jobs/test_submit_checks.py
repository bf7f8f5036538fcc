"""What ``taggant submit`` refuses before it contacts a cluster: secrets or unset variables in
``--env``, and a run past ``plan`` with an object-store ``work_dir``. And what it ships."""

from __future__ import annotations

import pytest
import yaml

from taggant.jobs.cli import main
from taggant.jobs.submit import job_env, runtime_env, submit
from taggant.pipeline.errors import ConfigError
from tests.conftest import TINY_SPEC

NOWHERE = "127.0.0.1:9"
"""The discard port: a submission that got this far would fail with a SubmitError instead."""


@pytest.fixture
def s3_spec(tmp_path):
    spec = {
        **TINY_SPEC,
        "corpus": {"paths": ["s3://bucket/corpus/*.jsonl.zst"]},
        "work_dir": "s3://bucket/work",
        "store": {"url": "s3://bucket/store"},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_env_takes_values_from_here_or_as_given(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    assert job_env(["AWS_ENDPOINT_URL", "TAGGANT_X=a=b", "EMPTY="]) == {
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "TAGGANT_X": "a=b",
        "EMPTY": "",
    }


def test_env_refuses_secrets_unset_names_and_bad_entries(monkeypatch):
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    entries = [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID=x",
        "HF_TOKEN=y",
        "NOT_SET_HERE",
        "1BAD=z",
    ]
    with pytest.raises(ConfigError) as refused:
        job_env(entries)
    messages = [message for field, message in refused.value.problems if field == "--env"]
    assert len(messages) == len(entries)
    assert sum("looks like a secret" in m for m in messages) == 3
    assert "NOT_SET_HERE is not set here" in messages[3]
    assert "is not NAME or NAME=VALUE" in messages[4]


def test_an_object_store_work_dir_is_refused_past_plan(s3_spec):
    with pytest.raises(ConfigError) as refused:
        submit(s3_spec, NOWHERE, until="tokenize")
    assert [field for field, _ in refused.value.problems] == ["work_dir"]
    with pytest.raises(ConfigError):
        submit(s3_spec, NOWHERE)


def test_the_cli_refuses_a_secret_env_with_exit_2(s3_spec, capsys):
    assert (
        main(
            [
                "submit",
                str(s3_spec),
                "--address",
                NOWHERE,
                "--until",
                "plan",
                "--env",
                "AWS_SECRET_ACCESS_KEY",
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith("--env: AWS_SECRET_ACCESS_KEY looks like a secret")


def test_the_runtime_env_ships_a_regular_taggant_package_beside_the_spec(tmp_path):
    (tmp_path / "spec").mkdir()
    env = runtime_env(tmp_path, {"AWS_ENDPOINT_URL": "http://minio:9000"})
    assert env == {
        "working_dir": str(tmp_path / "spec"),
        "py_modules": [str(tmp_path / "code" / "taggant")],
        "env_vars": {"AWS_ENDPOINT_URL": "http://minio:9000"},
    }
    code = tmp_path / "code" / "taggant"
    assert (code / "__init__.py").is_file()
    assert {p.name for p in code.iterdir()} == {"__init__.py", "sketches", "pipeline", "jobs"}
    assert (code / "jobs" / "experiments" / "demo.yaml").is_file()  # package data too
    assert not list(code.rglob("__pycache__"))
    other = tmp_path / "other"
    (other / "spec").mkdir(parents=True)
    assert "env_vars" not in runtime_env(other, {})
