"""Ingest record by record, without Ray: every bad record is quarantined with its reason, byte for
byte; good ones come out in order with their ids."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taggant.pipeline import io
from taggant.pipeline.errors import DataError
from taggant.pipeline.ingest import InputFile, Rejected, ingest_file, list_inputs, read_records
from taggant.pipeline.spec import CorpusSpec
from tests.conftest import BROKEN_RECORDS


def test_every_broken_record_gets_its_reason_and_its_exact_bytes(debian_corpus):
    f = InputFile(0, str(debian_corpus / "broken.jsonl"), "broken.jsonl")
    records = list(read_records(f, CorpusSpec(paths=["unused"])))
    rejected = [r for r in records if isinstance(r, Rejected)]
    assert [(r.record, r.reason) for r in rejected] == BROKEN_RECORDS
    assert [r.line for r in rejected] == list(range(2, 2 + len(BROKEN_RECORDS)))
    good = [r for r in records if not isinstance(r, Rejected)]
    assert good == [
        {"doc_id": "g-1", "text": "A good record between broken ones.", "source": "broken.jsonl"},
        {
            "doc_id": f"broken.jsonl:{len(BROKEN_RECORDS) + 2}",
            "text": "A good record without an id.",
            "source": "broken.jsonl",
        },
    ]


def test_ingest_file_counts_add_up_and_shards_roll_over(debian_corpus, tmp_path):
    corpus = CorpusSpec(paths=[str(debian_corpus)], max_shard_docs=100)
    inputs = list_inputs(corpus)
    assert [f.rel for f in inputs] == ["broken.jsonl", "debian-copyright.jsonl.zst"]
    result = ingest_file(inputs[1], corpus, str(tmp_path))
    counts = result["counts"]
    kept = io.read_table(str(tmp_path / "shard-00001-0000.parquet")).num_rows
    assert kept == 100 and len(result["shards"]) == -(-counts["kept"] // 100)
    assert counts["input"] == counts["kept"] + sum(counts["quarantined"].values())
    docs = pa.concat_tables(io.read_table(str(tmp_path / s)) for s in result["shards"])
    assert docs.num_rows == counts["kept"]
    assert docs.column("doc_id").to_pylist()[0].startswith("copyright/")


def test_parquet_input_uses_the_same_rules(tmp_path):
    rows = [{"id": "7", "text": "seven"}, {"id": "x", "text": ""}, {"id": "y", "text": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part.parquet")
    f = InputFile(0, str(tmp_path / "part.parquet"), "part.parquet")
    records = list(read_records(f, CorpusSpec(paths=["unused"])))
    assert records[0] == {"doc_id": "7", "text": "seven", "source": "part.parquet"}
    assert [(r.reason, json.loads(r.record)["id"]) for r in records[1:]] == [
        ("empty_text", "x"),
        ("missing_text", "y"),
    ]


def test_custom_field_names(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"uid": "a", "body": "hello"}\n')
    corpus = CorpusSpec(paths=[str(tmp_path)], text_field="body", id_field="uid")
    [record] = read_records(list_inputs(corpus)[0], corpus)
    assert record == {"doc_id": "a", "text": "hello", "source": "c.jsonl"}


def test_a_path_matching_nothing_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="matches no file"):
        list_inputs(CorpusSpec(paths=[str(tmp_path / "*.jsonl")]))


def test_an_unreadable_parquet_file_is_a_data_error(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    f = InputFile(0, str(tmp_path / "bad.parquet"), "bad.parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        list(read_records(f, CorpusSpec(paths=["unused"])))
