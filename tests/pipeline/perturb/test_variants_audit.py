"""The audit of a run whose items are inserted as variants, on a real tokenized Debian corpus:
each occurrence is found as its planned variant, and a manifest whose variants break the copy
rule fails the plan check."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from taggant.pipeline import audit, data, manifest
from taggant.pipeline.perturb import plan, registry, variants
from taggant.pipeline.perturb.items import Draft
from taggant.pipeline.spec import parse_spec
from tests.pipeline.perturb.changelog_records import changelog_records
from tests.pipeline.test_tokenize import (
    SAMPLES,
    SEQ,
    VOCAB_SIZE,
    debian_paragraphs,
    perturbed_run,
    tokenize_locally,
    write_corpus_shards,
)

SEED = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("variants")
    records = tmp / "changelog.jsonl"
    # Entries on one line, short enough for a 128-token sample with this small BPE, among those
    # the synonym generator can vary (the error for one it cannot is tested in test_variants).
    flat = [" ".join(r["text"].split()) for r in changelog_records()]
    short = [
        t
        for t in flat
        if 100 <= len(t) <= 160 and len(variants.replaceable_occurrences(Draft(t, 0, {}))) >= 3
    ]
    records.write_text("".join(json.dumps({"text": t}) + "\n" for t in short[:60]))
    spec = parse_spec(
        {
            "name": "variants",
            "seed": SEED,
            "work_dir": str(tmp / "work"),
            "corpus": {"paths": [str(tmp / "unused.jsonl")]},
            "perturbations": [
                {
                    "kind": "text",
                    "name": "entries",
                    "path": str(records),
                    "count": 12,
                    "dup_levels": [1, 4, 8],
                    "control_frac": 0.25,
                    "variants": {"count": 3},
                }
            ],
            "tokenizer": {"kind": "bpe", "vocab_size": VOCAB_SIZE, "train_bytes": 600_000},
            "runs": {
                "model_sizes": ["tiny-2m"],
                "train_tokens": [SEQ * SAMPLES],
                "seq_length_tokens": SEQ,
                "global_batch_sequences": 8,
                "micro_batch_sequences": 4,
            },
            "store": {"url": str(tmp / "store")},
        }
    )
    corpus = write_corpus_shards(tmp / "corpus", debian_paragraphs())
    drafts = [
        registry.make_source(p, spec.seed, registry.CorpusInputs()).draw(0, p.count)
        for p in spec.perturbations
    ]
    plan.write_manifests(
        str(tmp / "plan"), spec, plan.items_table(spec.perturbations, drafts, spec.seed)
    )
    out = tokenize_locally(spec, str(tmp / "tokenize"), corpus, str(tmp / "plan" / "manifests"))
    (run_id,) = [r for r in spec.runs.grid() if r.perturbed]
    run_dir = str(tmp / "run")
    data.prepare_run_dir(run_dir, spec, run_id, out.root)
    return tmp, spec, out, run_id, run_dir


def test_every_occurrence_is_found_as_its_planned_variant(run):
    _, spec, out, _, run_dir = run
    report = audit.audit(run_dir)
    assert report.ok, "\n".join(report.lines())
    items, occ, _ = manifest.read(out.manifest(perturbed_run(spec)))
    assert set(occ["variant"].to_pylist()) == {0, 1, 2}
    assert all(len(v) == 3 for v in items["variant_token_ids"].to_pylist())
    # What the trainer reads at an occurrence is the variant's tokens, not the item's text.
    samples = data.open_training_samples(run_dir)
    by_item = dict(zip(items["item_id"].to_pylist(), items["variant_token_ids"].to_pylist()))
    for item, sample, offset, variant in zip(
        *(occ[c].to_pylist() for c in ("item_id", "sample_index", "token_offset", "variant"))
    ):
        ids = by_item[item][variant]
        assert samples.read(sample, sample + 1)[0, offset : offset + len(ids)].tolist() == ids


def test_a_manifest_that_breaks_the_copy_rule_fails_the_plan_check(run, tmp_path):
    _, spec, out, run_id, _ = run
    items, occ, meta = manifest.read(out.manifest(perturbed_run(spec)))
    first = occ["item_id"][0].as_py()
    shifted = pc.if_else(
        pc.equal(occ["item_id"], first),
        pc.add(occ["variant"], pa.scalar(1, pa.int32())),
        occ["variant"],
    )
    shifted = pc.if_else(pc.equal(shifted, pa.scalar(3, pa.int32())), 0, shifted)
    occ = occ.set_column(occ.schema.get_field_index("variant"), "variant", shifted)
    manifest.write(str(tmp_path / "manifest"), items, occ, meta["sample_order_hash"])
    data.prepare_run_dir(str(tmp_path / "run"), spec, run_id, out.root, str(tmp_path / "manifest"))
    report = audit.audit(str(tmp_path / "run"))
    (failed,) = [c for c in report.checks if not c.ok]
    assert failed.name == "plan"
    assert all(f"of {first} inserts variant" in p for p in failed.problems)
