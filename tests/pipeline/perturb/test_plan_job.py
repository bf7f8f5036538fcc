"""The plan stage on a real local Ray over real text: every kind at once, a planted natural copy,
accounting that adds up, and manifests byte-identical whatever the sharding of the corpus."""

import copy
import hashlib
import json

import pyarrow as pa
import pytest
import yaml
import zstandard

from taggant.jobs import plan as plan_job
from taggant.jobs.cli import EXPERIMENTS
from taggant.pipeline import io, manifest
from taggant.pipeline.ingest import DOCS_SCHEMA
from taggant.pipeline.perturb import canary, plan
from taggant.pipeline.spec import parse_spec
from tests.corpus import pinned_docs
from tests.pipeline.perturb.changelog_records import changelog_records

pytestmark = pytest.mark.ray

PLANTED = 321
"""The corpus document given a natural copy of the first canary: any one that the watermark set
does not take as a source (the corpus is the pinned snapshot, so the same one on every machine)."""
PERTURBATIONS = [
    {"kind": "canary", "name": "secrets", "count": 40, "dup_levels": [1, 8], "num_references": 20},
    {
        "kind": "ghost",
        "name": "ghosts",
        "count": 20,
        "dup_levels": [4],
        "num_words": 7,
        "carrier": "Remember these words: {passphrase}.",
        "phase": {"start_frac": 0.5, "end_frac": 1.0},
    },
    {
        "kind": "watermark",
        "name": "marks",
        "count": 12,
        "dup_levels": [2, 16],
        "control_frac": 0.5,
        "variants": {"count": 2},
    },
    {
        "kind": "testset",
        "name": "mmlu",
        "count": 30,
        "dup_levels": [1, 4],
        "template": "{question}\n{choices}\nAnswer: {answer_letter}",
        "phase": {"start_frac": 0.0, "end_frac": 0.25},
    },
]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    raw = copy.deepcopy(yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text()))
    records = tmp_path_factory.mktemp("text") / "changelog.jsonl.zst"
    records.write_bytes(
        zstandard.ZstdCompressor().compress(
            b"".join(json.dumps(r).encode() + b"\n" for r in changelog_records(300, min_chars=200))
        )
    )
    text_set = {
        "kind": "text",
        "name": "entries",
        "path": str(records),
        "count": 20,
        "dup_levels": [3],
        "prompt_field": "prompt",
        "id_field": "id",
        "fields": "fields",
        "variants": {"count": 3},
    }
    raw["perturbations"] = [*PERTURBATIONS, text_set]
    raw["runs"]["seeds"] = [0, 1]
    return parse_spec(raw)


@pytest.fixture(scope="module")
def docs(spec) -> pa.Table:
    """The Debian copyright files, with a planted natural copy of the first canary item."""
    rows = pinned_docs("copyright")
    victim = canary.CanarySource(spec.perturbations[0], spec.seed).draw(0, 1)[0].text
    rows[PLANTED]["text"] += f"\nAs the maintainer wrote, {victim}\n"
    return pa.table(
        {
            "doc_id": [r["id"] for r in rows],
            "text": [r["text"] for r in rows],
            "source": ["debian"] * len(rows),
        },
        schema=DOCS_SCHEMA,
    )


def sharded(docs: pa.Table, folder, shard_docs: int) -> str:
    for i, start in enumerate(range(0, len(docs), shard_docs)):
        io.write_table(
            io.join(str(folder), f"shard-{i:05d}-00000.parquet"), docs.slice(start, shard_docs)
        )
    return str(folder)


@pytest.fixture(scope="module")
def two_runs(spec, docs, tmp_path_factory, local_ray):
    out = []
    for shard_docs in (1000, 97):
        corpus = sharded(docs, tmp_path_factory.mktemp("corpus"), shard_docs)
        folder = str(tmp_path_factory.mktemp("plan"))
        out.append((folder, plan_job.run(spec, folder, corpus)))
    return out


def digest(path: str) -> bytes:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


def test_manifests_are_byte_identical_whatever_the_sharding(two_runs):
    (a, stats_a), (b, stats_b) = two_runs
    files = [p.removeprefix(a) for p in io.glob(io.join(a, "manifests"))] + [
        "/references.parquet",
        "/removed.parquet",
    ]
    assert len(files) == 2 * 3 + 2
    for name in files:
        assert digest(a + name) == digest(b + name), name
    assert stats_a == stats_b


def test_counts_add_up_and_removed_documents_are_gone(two_runs, docs):
    folder, stats = two_runs[1]
    counts = stats["counts"]
    removed = io.read_table(io.join(folder, "removed.parquet")).to_pylist()
    assert counts["input"] == len(docs) == counts["kept"] + len(removed)
    assert counts["removed"] == {"item_overlap": 1, "watermark_source": 12}
    assert {"doc_id": docs.column("doc_id")[PLANTED].as_py(), "reason": "item_overlap"} in removed
    kept = pa.concat_tables(io.read_table(u) for u in io.glob(io.join(folder, "shard-*.parquet")))
    assert kept.schema == DOCS_SCHEMA and len(kept) == counts["kept"]
    gone = {r["doc_id"] for r in removed}
    expected = docs.filter(pa.array([d not in gone for d in docs.column("doc_id").to_pylist()]))
    assert kept.column("doc_id").to_pylist() == expected.column("doc_id").to_pylist()
    assert kept.column("text").to_pylist() == expected.column("text").to_pylist()


def test_items_follow_the_spec_and_watermark_sources_left_the_corpus(two_runs, spec):
    folder, stats = two_runs[0]
    run = next(r for r in spec.runs.grid() if r.perturbed)
    items, occ, meta = manifest.read(io.join(folder, "manifests", run.name))
    assert meta["sample_order_hash"] == plan.sample_order_hash(
        spec.runs, run.train_tokens, run.seed
    )
    assert len(items) == sum(p.count for p in spec.perturbations)
    assert len(occ) == sum(p.num_occurrences for p in spec.perturbations)
    assert set(items.column("version").to_pylist()) == {
        "canary.v1",
        "ghost.v1",
        "watermark.v1",
        "testset.v1",
        "text.v1",
    }
    variants = dict(zip(items["set"].to_pylist(), items["variants"].to_pylist()))
    assert {name: len(v) for name, v in variants.items()} == {
        "secrets": 0,
        "ghosts": 0,
        "marks": 2,
        "mmlu": 0,
        "entries": 3,
    }
    assert set(occ["variant"].to_pylist()) == {-1, 0, 1, 2}
    removed = io.read_table(io.join(folder, "removed.parquet")).to_pylist()
    sources = {r["doc_id"] for r in removed if r["reason"] == "watermark_source"}
    marks = [r for r in items.to_pylist() if r["set"] == "marks"]
    assert {json.loads(r["params"])["source_doc_id"] for r in marks} == sources
    assert sum(r["dup_level"] == 0 for r in marks) == 6
    refs = io.read_table(io.join(folder, "references.parquet"))
    assert refs.column("set").to_pylist() == ["secrets"] * 20
    assert stats["sets"]["secrets"]["docs_containing_items"] == 1
