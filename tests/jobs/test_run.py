"""``taggant run`` end to end on a real local Ray: ingest a real corpus with broken records mixed in,
skip finished stages on re-run, redo a half-written one, and write the same bytes whatever the
number of workers."""

import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from taggant.jobs.cli import EXPERIMENTS, main
from taggant.pipeline import io
from tests.conftest import BROKEN_RECORDS
from tests.corpus import pinned_docs

pytestmark = pytest.mark.ray


def write_spec(tmp_path: Path, corpus: Path) -> Path:
    spec = yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text())
    spec["corpus"] = {"paths": [str(corpus / "*.jsonl*")], "max_shard_docs": 200}
    spec["work_dir"] = str(tmp_path / "work")
    spec["store"] = {"url": str(tmp_path / "store")}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def ingest_folder(work: Path) -> Path:
    [folder] = work.glob("ingest-*")
    return folder


def test_run_ingests_everything_and_loses_nothing(debian_corpus, tmp_path, local_ray, capsys):
    spec = write_spec(tmp_path, debian_corpus)
    assert main(["run", str(spec), "--until", "dedup"]) == 0
    folder = ingest_folder(tmp_path / "work")
    assert (folder / "_SUCCESS").exists() and (folder / "spec.yaml").exists()

    counts = io.read_json(str(folder / "stats.json"))["counts"]
    real = pinned_docs("copyright")
    empty = [d for d in real if not d["text"].strip()]  # real files: none on most machines
    oversized = [d for d in real if len(d["text"].encode()) > 1_000_000]
    copyright_docs = [d for d in real if d not in empty and d not in oversized]
    expected_reasons = Counter(reason for _, reason in BROKEN_RECORDS)
    expected_reasons["too_large"] += len(oversized)
    expected_reasons["empty_text"] += len(empty)
    assert counts["quarantined"] == expected_reasons
    assert counts["input"] == counts["kept"] + sum(counts["quarantined"].values())

    docs = pa.concat_tables(io.read_table(str(p)) for p in sorted(folder.glob("shard-*.parquet")))
    assert counts["kept"] == docs.num_rows == len(copyright_docs) + 2
    by_id = dict(zip(docs.column("doc_id").to_pylist(), docs.column("text").to_pylist()))
    assert all(by_id[d["id"]] == d["text"] for d in copyright_docs)

    quarantine = io.read_table(str(folder / "quarantine-00000.parquet"))  # broken.jsonl sorts first
    assert quarantine.column("record").to_pylist() == [raw for raw, _ in BROKEN_RECORDS]

    capsys.readouterr()
    assert main(["run", str(spec), "--until", "dedup"]) == 0
    assert "already done, skipped" in capsys.readouterr().err


def test_a_half_written_stage_is_cleared_and_redone(debian_corpus, tmp_path, local_ray):
    spec = write_spec(tmp_path, debian_corpus)
    assert main(["run", str(spec), "--until", "dedup"]) == 0
    folder = ingest_folder(tmp_path / "work")
    (folder / "_SUCCESS").unlink()
    (folder / "shard-00001-0000.parquet").write_bytes(b"torn write")
    (folder / "stray.tmp").write_bytes(b"left by a killed worker")
    assert main(["run", str(spec), "--until", "dedup"]) == 0
    assert (folder / "_SUCCESS").exists() and not (folder / "stray.tmp").exists()
    assert io.read_table(str(folder / "shard-00001-0000.parquet")).num_rows == 200


def stage_digests(work: Path) -> dict[str, str]:
    """Digest of every stage output file (the resolved spec names the work dir, so it differs;
    so does the run's record under ``experiments/``, which lists the stage folders by path)."""
    return {
        str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(work.rglob("*"))
        if p.is_file()
        and p.name != "spec.yaml"
        and not {"logs", "experiments"} & set(p.relative_to(work).parts[:1])
    }


@pytest.mark.slow
def test_outputs_are_byte_identical_whatever_the_worker_count(debian_corpus, tmp_path, local_ray):
    """The session's Ray has 2 CPUs; a second process runs the same spec on a Ray of 1."""
    one, two = tmp_path / "cpus1", tmp_path / "cpus2"
    one.mkdir()
    two.mkdir()
    assert main(["run", str(write_spec(two, debian_corpus)), "--until", "tokenize"]) == 0
    subprocess.run(
        [
            sys.executable,
            "-m",
            "taggant.jobs",
            "run",
            str(write_spec(one, debian_corpus)),
            "--num-cpus",
            "1",
            "--until",
            "tokenize",
        ],
        check=True,
        env=dict(os.environ, RAY_AUTH_MODE="disabled"),
        capture_output=True,
    )
    digests = stage_digests(two / "work")
    assert stage_digests(one / "work") == digests
    assert {name.split("-")[0] for name in digests} == {"ingest", "dedup", "plan", "tokenize"}


def test_until_names_an_existing_stage(debian_corpus, tmp_path, capsys):
    assert main(["run", str(write_spec(tmp_path, debian_corpus)), "--until", "dedupe"]) == 2
    assert (
        "--until: no stage 'dedupe'; stages: ingest, dedup, plan, tokenize, train"
        in capsys.readouterr().err
    )
