"""``pipeline.io`` and the store on ``s3://``, against moto's S3 server (``tests/s3.py``): writes are
one put, listings see other writers at once, and the store's commit records behave as on disk."""

from __future__ import annotations

import pyarrow as pa
import pytest

from taggant.pipeline import io, store

ROWS = pa.table(
    {
        "tokens_seen": [64, 64],
        "item_id": ["a", "b"],
        "set": ["s", "s"],
        "kind": ["canary", "canary"],
        "dup_level": [0, 4],
        "probe": ["loss", "loss"],
        "probe_version": ["loss.v1", "loss.v1"],
        "probe_config": ["c", "c"],
        "eval_format": ["canonical", "canonical"],
        "metric": ["nll_mean", "nll_mean"],
        "value": [3.0, 1.0],
        "schema_version": [store.SCHEMA_VERSION] * 2,
    }
)


@pytest.fixture
def bucket(s3_server, request) -> tuple[str, str]:
    """A bucket of its own for each test: its name and its URL."""
    name = request.node.name.replace("_", "-")[:60].strip("-")
    return name, s3_server.bucket(name)


def test_a_write_is_one_object_with_no_temp_object(s3_server, bucket):
    name, url = bucket
    table = pa.table({"x": list(range(1000))})
    io.write_table(io.join(url, "stage", "shard-00000.parquet"), table)
    io.write_json(io.join(url, "stage", "stats.json"), {"rows": 1000})
    assert s3_server.keys(name) == ["stage/shard-00000.parquet", "stage/stats.json"]
    assert io.read_table(io.join(url, "stage", "shard-00000.parquet")).equals(table)
    assert io.read_json(io.join(url, "stage", "stats.json")) == {"rows": 1000}


def test_a_write_to_a_missing_bucket_fails_instead_of_creating_it(s3_server):
    with pytest.raises(FileNotFoundError):
        io.write_text("s3://no-such-bucket-here/stage/_SUCCESS", "{}")
    assert "no-such-bucket-here" not in {
        b["Name"] for b in s3_server.client.list_buckets()["Buckets"]
    }


def test_listings_see_what_another_process_wrote_and_removed(s3_server, bucket):
    # s3fs caches listings per filesystem instance; a Ray task on another node writes through
    # its own. The boto3 client plays that other writer here.
    name, url = bucket
    io.write_text(io.join(url, "stage", "shard-00000.parquet"), "a")
    assert io.glob(io.join(url, "stage", "shard-*.parquet")) == [f"{url}/stage/shard-00000.parquet"]
    assert io.glob(io.join(url, "stage")) == [f"{url}/stage/shard-00000.parquet"]

    s3_server.client.put_object(Bucket=name, Key="stage/shard-00001.parquet", Body=b"b")
    s3_server.client.put_object(Bucket=name, Key="stage/_SUCCESS", Body=b"{}")
    assert io.glob(io.join(url, "stage", "shard-*.parquet")) == [
        f"{url}/stage/shard-00000.parquet",
        f"{url}/stage/shard-00001.parquet",
    ]
    assert len(io.glob(io.join(url, "stage"))) == 3
    assert io.exists(io.join(url, "stage", "_SUCCESS"))

    s3_server.client.delete_object(Bucket=name, Key="stage/_SUCCESS")
    assert not io.exists(io.join(url, "stage", "_SUCCESS"))
    io.remove(io.join(url, "stage"))
    assert s3_server.keys(name) == [] and not io.exists(io.join(url, "stage"))


def test_the_store_commits_and_replaces_a_checkpoint_on_s3(s3_server, bucket):
    name, url = bucket
    writer = store.StoreWriter(io.join(url, "store"), "exp")
    writer.begin_checkpoint("r", 8)
    writer.write_probe_rows("r", 8, "loss", 0, ROWS)
    assert store.read_probes(writer.url).num_rows == 0  # not committed: invisible
    writer.commit_checkpoint("r", 8, 64, ["loss.v1"], "c", ROWS.num_rows)
    first = store.read_probes(writer.url)
    assert first.column("value").to_pylist() == [3.0, 1.0]
    assert first.column("step").to_pylist() == [8, 8]

    # Probing the step again replaces its rows, one shard fewer included, instead of adding.
    writer.write_probe_rows("r", 8, "loss", 1, ROWS)
    writer.commit_checkpoint("r", 8, 64, ["loss.v1"], "c", 2 * ROWS.num_rows)
    assert store.read_probes(writer.url).num_rows == 4
    writer.begin_checkpoint("r", 8)
    assert store.read_probes(writer.url).num_rows == 0
    writer.write_probe_rows(
        "r",
        8,
        "loss",
        0,
        ROWS.set_column(ROWS.schema.get_field_index("value"), "value", pa.array([2.0, 0.5])),
    )
    writer.commit_checkpoint("r", 8, 64, ["loss.v1"], "c", ROWS.num_rows)
    assert store.read_probes(writer.url).column("value").to_pylist() == [2.0, 0.5]
    assert store.read_checkpoints(writer.url).column("files").to_pylist() == [
        ["loss-00000.parquet"]
    ]
    assert s3_server.keys(name, "store/probes/") == [
        "store/probes/experiment=exp/run=r/step=8/loss-00000.parquet"
    ]
