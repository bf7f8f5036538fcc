"""``kind: text``: items read from a file of records at any fsspec URL, in every format, with their
prompts, ids and field spans; bad records refused with their line; decontamination as for any kind."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.perturb import registry, text
from taggant.pipeline.perturb.decontaminate import find_matches, select_items
from taggant.pipeline.perturb.setspec import DecontaminationSpec
from taggant.pipeline.perturb.text import TextSpec
from taggant.pipeline.spec import parse_spec
from tests.corpus import pinned_docs
from tests.pipeline.perturb.changelog_records import changelog_records

SEED = 11


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return changelog_records(120)


def jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def write(path: Path, records: list[dict]) -> str:
    """``records`` in the format ``path``'s suffix names."""
    if path.name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(records), path)
    elif path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(jsonl(records)))
    elif path.name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(jsonl(records)))
    else:
        path.write_bytes(jsonl(records))
    return str(path)


def texts_of(pset: TextSpec, n: int) -> list[tuple]:
    drafts = text.TextSource(pset, SEED).draw(0, n)
    return [(d.text, d.prefix_chars, d.params["record_id"], d.params["fields"]) for d in drafts]


@pytest.mark.parametrize("name", ["r.jsonl.gz", "r.jsonl.zst", "r.parquet"])
def test_every_format_gives_the_same_items(tmp_path, records, name):
    options = dict(count=20, dup_levels=[1], prompt_field="prompt", id_field="id", fields="fields")
    plain = TextSpec(name="t", path=write(tmp_path / "r.jsonl", records), **options)
    other = TextSpec(name="t", path=write(tmp_path / name, records), **options)
    assert texts_of(other, 40) == texts_of(plain, 40)


def test_prompt_id_and_fields_reach_the_item(tmp_path, records):
    pset = TextSpec(
        name="t",
        path=write(tmp_path / "r.jsonl", records),
        count=10,
        dup_levels=[1],
        prompt_field="prompt",
        id_field="id",
        fields="fields",
    )
    by_id = {r["id"]: r for r in records}
    for draft in text.TextSource(pset, SEED).draw(0, len(records)):
        record = by_id[draft.params["record_id"]]
        assert draft.text == record["prompt"] + record["text"]
        assert draft.prefix_chars == len(record["prompt"])
        assert records.index(record) + 1 == draft.params["record"]  # its line
        for name, (start, end) in draft.params["fields"].items():
            a, b = record["fields"][name]
            assert draft.text[start:end] == record["text"][a:b]
        assert sorted(draft.protected) == sorted(map(tuple, draft.params["fields"].values()))


def test_without_a_prompt_the_whole_text_is_the_target(tmp_path, records):
    pset = TextSpec(name="t", path=write(tmp_path / "r.jsonl", records), count=5, dup_levels=[1])
    drafts = text.TextSource(pset, SEED).draw(0, 5)
    assert {d.prefix_chars for d in drafts} == {0}
    assert {d.text for d in drafts} <= {r["text"] for r in records}


def test_the_stream_is_a_seeded_permutation_that_ends_with_the_file(tmp_path, records):
    path = write(tmp_path / "r.jsonl", records)
    pset = TextSpec(name="t", path=path, count=5, dup_levels=[1], id_field="id")
    ids = [d.params["record_id"] for d in text.TextSource(pset, SEED).draw(0, 10_000)]
    assert sorted(ids) == sorted(r["id"] for r in records)
    assert ids == [d.params["record_id"] for d in text.TextSource(pset, SEED).draw(0, 10_000)]
    assert ids != [d.params["record_id"] for d in text.TextSource(pset, SEED + 1).draw(0, 10_000)]
    assert ids[:30] != [r["id"] for r in records[:30]]


def test_any_fsspec_url(records):
    url = "memory://taggant-text-test/records.jsonl"
    with fsspec.open(url, "wb") as f:
        f.write(jsonl(records))
    pset = TextSpec(name="t", path=url, count=5, dup_levels=[1])
    assert len(text.TextSource(pset, SEED).draw(0, 5)) == 5


GOOD = {"id": "a", "prompt": "P: ", "text": "some text here", "fields": {"x": [0, 4]}}


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("not json", "not valid JSON"),
        ('["a list"]', "not a JSON object"),
        ({"id": "b", "prompt": "P: ", "fields": {}}, "`text` is missing"),
        ({"id": "b", "prompt": "P: ", "text": "  \n", "fields": {}}, "`text` is missing, blank"),
        ({"id": "b", "prompt": "P: ", "text": 42, "fields": {}}, "not text"),
        ({"id": "b", "text": "t", "fields": {}}, "`prompt` is missing"),
        ({"id": True, "prompt": "", "text": "t", "fields": {}}, "not a text or integer id"),
        ({"id": "a", "prompt": "", "text": "t", "fields": {}}, "also the id of"),
        (
            {"id": "b", "prompt": "", "text": "tiny", "fields": {"x": [2, 9]}},
            "0 <= start < end <= 4",
        ),
        ({"id": "b", "prompt": "", "text": "tiny", "fields": {"x": [3, 3]}}, "has span [3, 3]"),
        ({"id": "b", "prompt": "", "text": "tiny", "fields": [1, 2]}, "must map each field"),
    ],
)
def test_a_bad_record_is_refused_with_its_line(tmp_path, bad, says):
    path = tmp_path / "r.jsonl"
    line = bad if isinstance(bad, str) else json.dumps(bad)
    path.write_text(json.dumps(GOOD) + "\n\n" + line + "\n")  # a blank line still counts
    pset = TextSpec(
        name="t",
        path=str(path),
        count=1,
        dup_levels=[1],
        prompt_field="prompt",
        id_field="id",
        fields="fields",
    )
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3: .*{re.escape(says)}") as info:
        text.load(pset)
    assert "; " in str(info.value)  # with its fix


def test_a_bad_parquet_row_is_named_by_its_row(tmp_path):
    rows = [{"text": "fine"}, {"text": None}]
    pset = TextSpec(name="t", path=write(tmp_path / "r.parquet", rows), count=1, dup_levels=[1])
    with pytest.raises(DataError, match=r"r\.parquet:row 2: `text` is missing"):
        text.load(pset)


def test_parquet_rows_may_hold_different_fields(tmp_path, records):
    a, b = records[:2]
    rows = [
        {"text": a["text"], "fields": {"email": a["fields"]["email"]}},
        {"text": b["text"], "fields": {"name": b["fields"]["name"]}},
    ]
    path = write(tmp_path / "r.parquet", rows)
    pset = TextSpec(name="t", path=path, count=1, dup_levels=[1], fields="fields")
    got = {r.text: r.fields for r in text.load(pset).records}
    assert got == {r["text"]: r["fields"] for r in rows}


def test_missing_and_empty_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        text.load(TextSpec(name="t", path=str(tmp_path / "none.jsonl"), count=1, dup_levels=[1]))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no records"):
        text.load(TextSpec(name="t", path=str(tmp_path / "empty.jsonl"), count=1, dup_levels=[1]))


def base_spec(tmp_path: Path, pset: dict) -> dict:
    return {
        "name": "x",
        "seed": 1,
        "work_dir": str(tmp_path),
        "corpus": {"paths": [str(tmp_path / "c.jsonl")]},
        "perturbations": [pset],
        "runs": {"model_sizes": ["tiny-2m"], "train_tokens": [1_000_000]},
        "store": {"url": str(tmp_path / "store")},
    }


def test_spec_takes_kind_text_and_refuses_what_it_cannot_read(tmp_path):
    good = {"kind": "text", "name": "t", "path": "r.jsonl.zst", "count": 10, "dup_levels": [1]}
    (spec_set,) = parse_spec(base_spec(tmp_path, good)).perturbations
    assert isinstance(spec_set, TextSpec) and spec_set.text_field == "text"
    with pytest.raises(ConfigError) as info:
        parse_spec(base_spec(tmp_path, {**good, "path": "r.csv"}))
    assert info.value.problems[0][0] == "perturbations[0]"
    assert "none of the suffixes" in info.value.problems[0][1]
    both = {**good, "variants_field": "v", "variants": {"count": 2}}
    with pytest.raises(ConfigError, match="not both"):
        parse_spec(base_spec(tmp_path, both))


def test_a_record_found_in_the_corpus_is_resampled(tmp_path, records):
    path = write(tmp_path / "r.jsonl", records)
    pset = TextSpec(
        name="t",
        path=path,
        count=10,
        dup_levels=[1],
        decontamination=DecontaminationSpec(on_collision="resample"),
    )
    first = text.TextSource(pset, SEED).draw(0, 10)
    corpus = [d["text"] for d in pinned_docs("copyright")[:100]]
    corpus[40] += "\n\n" + first[3].text  # a natural copy of the fourth candidate

    def matcher(signatures):
        return [find_matches(signatures, corpus)]

    source = registry.make_source(pset, SEED, registry.CorpusInputs())
    chosen = [c.draft.text for c in select_items([pset], [source], matcher).items[0]]
    assert first[3].text not in chosen and len(chosen) == 10
    assert chosen[:3] == [d.text for d in first[:3]]


def test_a_variant_found_in_the_corpus_counts_as_its_item_found(tmp_path, records):
    # A variant that shares no 8-word run with the text: its words in reverse order.
    rows = [{**r, "variants": [r["text"], " ".join(r["text"].split()[::-1])]} for r in records]
    pset = TextSpec(
        name="t",
        path=write(tmp_path / "r.jsonl", rows),
        count=10,
        dup_levels=[1],
        variants_field="variants",
        decontamination=DecontaminationSpec(on_collision="resample"),
    )
    first = text.TextSource(pset, SEED).draw(0, 10)
    corpus = [d["text"] for d in pinned_docs("copyright")[:100]]
    corpus[40] += "\n\n" + first[3].variants[1]  # only the reversed variant, not the text

    def matcher(signatures):
        return [find_matches(signatures, corpus)]

    source = registry.make_source(pset, SEED, registry.CorpusInputs())
    chosen = [c.draft.text for c in select_items([pset], [source], matcher).items[0]]
    assert first[3].text not in chosen and len(chosen) == 10
