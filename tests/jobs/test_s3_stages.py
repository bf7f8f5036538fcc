"""The data stages with the corpus, ``work_dir`` and the store on ``s3://`` (moto's server,
``tests/s3.py``) write the same bytes as on local disk, and a re-run skips or redoes them the
same way. A run past ``plan`` with an object-store ``work_dir`` is refused before any Ray work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taggant.jobs.cli import main
from taggant.jobs.storage import OBJECT_STORE_STAGES
from taggant.pipeline import io
from taggant.pipeline.spec import load_spec
from tests.conftest import tiny_spec_file
from tests.digests import folder_digests

SHARD_DOCS = 200
"""Several corpus shards, so each stage runs more than one task."""
SIDECARS = frozenset({"spec.yaml", "_SUCCESS"})
"""Files that name the paths (the resolved spec) or the hash (which covers the corpus paths)."""


def data_folders(work_dir: str) -> dict[str, str]:
    """``{stage: folder}`` of the data stages in a work dir that holds one run's folders."""
    fs, root = io.filesystem(work_dir)
    folders = {path.rsplit("/", 1)[-1].split("-")[0]: path for path in fs.ls(root, detail=False)}
    prefix = "s3://" if work_dir.startswith("s3://") else ""
    return {name: prefix + folders[name] for name in OBJECT_STORE_STAGES}


@pytest.fixture
def specs(tmp_path, debian_corpus, s3_server, request) -> tuple[Path, Path, str]:
    """The tiny experiment twice: on local disk, and with every path on a bucket of the test's
    own; and that bucket's name."""
    name = request.node.name.replace("_", "-")[:40].strip("-")
    bucket = s3_server.bucket(name)
    corpus = "corpus/debian-copyright.jsonl.zst"
    s3_server.client.upload_file(str(debian_corpus / "debian-copyright.jsonl.zst"), name, corpus)
    local = tiny_spec_file(tmp_path, debian_corpus)
    spec = yaml.safe_load(local.read_text())
    spec["corpus"]["max_shard_docs"] = SHARD_DOCS
    local.write_text(yaml.safe_dump(spec))
    spec.update(
        corpus={"paths": [f"{bucket}/{corpus}"], "max_shard_docs": SHARD_DOCS},
        work_dir=f"{bucket}/work",
        store={"url": f"{bucket}/store"},
    )
    remote = tmp_path / "tiny-s3.yaml"
    remote.write_text(yaml.safe_dump(spec))
    return local, remote, name


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_data_stages_on_s3_write_what_local_disk_gets_and_rerun_alike(
    specs, local_ray, s3_server, capsys
):
    local, remote, bucket = specs
    for spec in (local, remote):
        assert main(["run", str(spec), "--until", "plan"]) == 0
    on_disk, on_s3 = (data_folders(load_spec(spec).work_dir) for spec in (local, remote))
    assert all(folder.startswith(f"s3://{bucket}/work/") for folder in on_s3.values())
    for name in OBJECT_STORE_STAGES:
        digests = folder_digests(on_s3[name], SIDECARS)
        assert digests == folder_digests(on_disk[name], SIDECARS), name
        assert any(path.startswith("shard-") for path in digests), name
    assert len([p for p in folder_digests(on_s3["ingest"]) if p.startswith("shard-")]) > 1
    assert all(io.exists(io.join(folder, "_SUCCESS")) for folder in on_s3.values())
    capsys.readouterr()

    # A re-run skips every finished stage and rewrites nothing.
    before = {name: folder_digests(on_s3[name]) for name in OBJECT_STORE_STAGES}
    assert main(["run", str(remote), "--until", "plan"]) == 0
    assert capsys.readouterr().err.count("already done, skipped") == len(OBJECT_STORE_STAGES)
    assert {name: folder_digests(on_s3[name]) for name in OBJECT_STORE_STAGES} == before

    # A half-written stage (no _SUCCESS, a stray object) is cleared and redone to the same bytes.
    plan = on_s3["plan"].removeprefix(f"s3://{bucket}/")
    s3_server.client.delete_object(Bucket=bucket, Key=f"{plan}/_SUCCESS")
    s3_server.client.put_object(
        Bucket=bucket, Key=f"{plan}/stray.parquet", Body=b"left by a killed attempt"
    )
    assert main(["run", str(remote), "--until", "plan"]) == 0
    assert capsys.readouterr().err.count("already done, skipped") == len(OBJECT_STORE_STAGES) - 1
    assert folder_digests(on_s3["plan"], SIDECARS) == folder_digests(on_disk["plan"], SIDECARS)
    assert "stray.parquet" not in folder_digests(on_s3["plan"])
    assert io.exists(io.join(on_s3["plan"], "_SUCCESS"))


def test_an_object_store_work_dir_is_refused_past_plan_before_ray_starts(specs, s3_server, capsys):
    _, remote, bucket = specs
    assert main(["run", str(remote), "--until", "tokenize"]) == 2
    message = capsys.readouterr().err
    assert message.startswith(f"work_dir: 's3://{bucket}/work' is on an object store")
    assert "--set work_dir=/shared/work/NAME" in message
    assert s3_server.keys(bucket, "work/") == []  # nothing ran
