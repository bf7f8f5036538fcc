"""Per-copy variants: synonym rewrites keep the prompt and protected spans, are distinct and
seeded; copy j of an item inserts variant j mod n; variants never move an occurrence."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pytest

from taggant.pipeline import manifest
from taggant.pipeline.errors import DataError
from taggant.pipeline.perturb import canary, plan, registry, variants
from taggant.pipeline.perturb.canary import CanarySpec
from taggant.pipeline.perturb.setspec import VariantsSpec
from taggant.pipeline.perturb.text import TextSpec
from taggant.pipeline.perturb.watermark import WORD
from taggant.pipeline.spec import parse_spec
from tests.pipeline.perturb.changelog_records import changelog_records

SEED = 5


@pytest.fixture(scope="module")
def records_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("text") / "changelog.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in changelog_records(200, min_chars=200)))
    return str(path)


def text_set(path: str, **options) -> TextSpec:
    return TextSpec(
        name="t",
        path=path,
        count=30,
        dup_levels=[1, 3, 7],
        prompt_field="prompt",
        fields="fields",
        **options,
    )


def drafts_of(pset, seed: int = SEED, start: int = 0, stop: int = 30):
    return registry.make_source(pset, seed, registry.CorpusInputs()).draw(start, stop)


def test_synonym_variants_keep_prompt_and_fields_and_are_distinct(records_file):
    pset = text_set(records_file, variants=VariantsSpec(count=4))
    changed = 0
    for d in drafts_of(pset):
        assert len(d.variants) == 4 and len(set(d.variants)) == 4 and d.text not in d.variants
        for v in d.variants:
            assert v[: d.prefix_chars] == d.text[: d.prefix_chars]  # the prompt
            # Only whole words change, so the text outside words is the same sequence.
            assert WORD.sub("", v) == WORD.sub("", d.text)
            for name, (a, b) in d.params["fields"].items():
                assert d.text[a:b] in v  # a field's value stays, though it may move
            changed += sum(x != y for x, y in zip(WORD.findall(v), WORD.findall(d.text)))
        assert d.params["variants"]["version"] == variants.VERSION
    assert changed > 0


def test_variants_depend_on_seed_set_and_index_only(records_file):
    pset = text_set(records_file, variants=VariantsSpec(count=3))
    whole = drafts_of(pset)
    pieces = drafts_of(pset, stop=11) + drafts_of(pset, start=11)
    assert [d.variants for d in pieces] == [d.variants for d in whole]
    assert [d.variants for d in drafts_of(pset, seed=SEED + 1)] != [d.variants for d in whole]


def test_a_canary_keeps_its_secret_in_every_variant():
    template = "{name}'s passphrase is {secret}, written down in the old brown notebook."
    pset = CanarySpec(
        name="c", count=10, dup_levels=[2], template=template, variants=VariantsSpec(count=2)
    )
    for d in drafts_of(pset, stop=10):
        secret = d.params["secret"]
        for v in d.variants:
            assert v[: d.prefix_chars + len(secret)] == d.text[: d.prefix_chars + len(secret)]


def test_nothing_to_rewrite_is_a_data_error():
    pset = CanarySpec(name="c", count=10, dup_levels=[2], variants=VariantsSpec(count=2))
    with pytest.raises(DataError, match="no word outside its prompt and protected spans"):
        drafts_of(pset, stop=1)
    plain = canary.CanarySource(pset, SEED).draw(0, 1)[0]
    assert variants.replaceable_occurrences(plain) == []


def experiment(tmp_path: Path, pset: dict) -> dict:
    return {
        "name": "v",
        "seed": SEED,
        "work_dir": str(tmp_path / "work"),
        "corpus": {"paths": [str(tmp_path / "c.jsonl")]},
        "perturbations": [
            pset,
            {"kind": "ghost", "name": "g", "count": 20, "dup_levels": [2, 5]},
        ],
        "runs": {
            "model_sizes": ["tiny-2m"],
            "train_tokens": [128 * 2_000],
            "seq_length_tokens": 128,
            "global_batch_sequences": 8,
            "micro_batch_sequences": 4,
        },
        "store": {"url": str(tmp_path / "store")},
    }


def planned(tmp_path: Path, raw: dict):
    spec = parse_spec(raw)
    drafts = [drafts_of(p, stop=p.count) for p in spec.perturbations]
    plan.write_manifests(str(tmp_path), spec, plan.items_table(spec.perturbations, drafts, SEED))
    (run,) = [r for r in spec.runs.grid() if r.perturbed]
    items, occurrences, _ = manifest.read(str(tmp_path / "manifests" / run.name))
    return items, occurrences


@pytest.mark.parametrize("source", ["generated", "from the file"])
def test_a_run_with_variants_and_one_without_are_a_minimal_pair(tmp_path, records_file, source):
    base = {
        "kind": "text",
        "name": "t",
        "path": records_file,
        "count": 30,
        "dup_levels": [1, 3, 7],
        "prompt_field": "prompt",
    }
    if source == "generated":
        with_variants = {**base, "variants": {"count": 3}}
    else:
        path = Path(records_file).with_name("with-variants.jsonl")
        rows = [json.loads(line) for line in Path(records_file).read_text().splitlines()]
        for r in rows:  # two real paraphrase-like variants: the entry reflowed, and shouted
            r["variants"] = [" ".join(r["text"].split()), r["text"].upper()]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with_variants = {**base, "path": str(path), "variants_field": "variants"}
    items_a, occ_a = planned(tmp_path / "a", experiment(tmp_path, base))
    items_b, occ_b = planned(tmp_path / "b", experiment(tmp_path, with_variants))
    keys = ["item_id", "sample_index", "step"]
    assert occ_a.select(keys).equals(occ_b.select(keys))
    assert items_a["text"].equals(items_b["text"])
    assert set(occ_a["variant"].to_pylist()) == {manifest.CANONICAL}
    n = {i: len(v) for i, v in zip(items_b["item_id"].to_pylist(), items_b["variants"].to_pylist())}
    text_items = [i for i, k in n.items() if i.startswith("t/")]
    assert {n[i] for i in text_items} == {2 if source == "from the file" else 3}
    assert {n[i] for i in n if i.startswith("g/")} == {0}
    seen: dict[str, int] = {}
    for item, variant in zip(occ_b["item_id"].to_pylist(), occ_b["variant"].to_pylist()):
        copy = seen.get(item, 0)  # occurrences are sorted by sample index
        assert variant == (copy % n[item] if n[item] else manifest.CANONICAL)
        seen[item] = copy + 1
    # The 7-copy items cycle through every variant.
    sevens = pc.filter(items_b["item_id"], pc.equal(items_b["dup_level"], 7)).to_pylist()
    for item in sevens:
        used = pc.filter(occ_b["variant"], pc.equal(occ_b["item_id"], item)).to_pylist()
        assert sorted(set(used)) == list(range(n[item]))
