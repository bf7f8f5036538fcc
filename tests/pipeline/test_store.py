"""The results store: visibility only after commit, re-probing replaces, any fsspec URL, commit
records that list their files, rows and probe configuration, rows of two probe configurations
never read together, and the files read back with pyarrow, pandas, DuckDB and polars, even beside a
killed writer's leftovers."""

import os
from pathlib import Path

import duckdb
import pandas as pd
import polars
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from taggant.pipeline import io
from taggant.pipeline.errors import DataError
from taggant.pipeline.store import StoreWriter, read_checkpoints, read_probes, read_runs


def rows(step: int, n_items: int, value: float, config: str = "c1") -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "tokens_seen": step * 1024,
                "item_id": f"canaries/{i:06d}",
                "set": "canaries",
                "kind": "canary",
                "dup_level": i % 3,
                "probe": "loss",
                "probe_version": "loss.v1",
                "probe_config": config,
                "eval_format": "canonical",
                "metric": "suffix_loss",
                "value": value + i,
                "schema_version": 1,
            }
            for i in range(n_items)
        ]
    )


def probe(
    writer: StoreWriter,
    run: str,
    step: int,
    n_items: int,
    value: float,
    shards: int = 1,
    config: str = "c1",
) -> None:
    writer.begin_checkpoint(run, step)
    table = rows(step, n_items, value, config)
    per = -(-n_items // shards)
    for s in range(shards):
        writer.write_probe_rows(run, step, "loss", s, table.slice(s * per, per))
    writer.commit_checkpoint(run, step, step * 1024, ["loss"], config, n_items)


@pytest.fixture(params=["file", "memory"])
def store_url(request, tmp_path):
    if request.param == "file":
        yield str(tmp_path / "store")
        return
    url = f"memory://store-{id(request)}"
    yield url
    import fsspec

    fsspec.filesystem("memory").rm(url.removeprefix("memory://"), recursive=True)


def test_rows_are_visible_only_after_their_checkpoint_commits(store_url):
    writer = StoreWriter(store_url, "exp")
    probe(writer, "r1", 10, 4, 1.0)
    writer.begin_checkpoint("r1", 20)
    writer.write_probe_rows("r1", 20, "loss", 0, rows(20, 4, 9.0))  # not committed yet
    table = read_probes(store_url)
    assert table.num_rows == 4 and set(table.column("step").to_pylist()) == {10}
    assert read_checkpoints(store_url).column("step").to_pylist() == [10]
    writer.commit_checkpoint("r1", 20, 20 * 1024, ["loss"], "c1", 4)
    assert read_probes(store_url).num_rows == 8


def test_probing_a_checkpoint_again_replaces_its_rows(store_url):
    writer = StoreWriter(store_url, "exp")
    probe(writer, "r1", 10, 6, 1.0, shards=3)
    probe(
        writer, "r1", 10, 6, 2.0, shards=2
    )  # fewer shards the second time: no stale file survives
    table = read_probes(store_url)
    assert table.num_rows == 6
    assert table.column("value").to_pylist() == [2.0 + i for i in range(6)]


def test_partition_columns_filters_and_runs(store_url):
    writer = StoreWriter(store_url, "exp")
    writer.write_run("r1", {"model_size": "tiny-2m", "train_tokens": 1000, "perturbed": True})
    probe(writer, "r1", 10, 3, 1.0)
    probe(writer, "r2", 10, 3, 5.0)
    table = read_probes(store_url, filter=ds.field("run") == "r2")
    assert set(table.column("run").to_pylist()) == {"r2"}
    assert table.schema.field("step").type == pa.int64()
    assert {
        "experiment",
        "run",
        "step",
        "tokens_seen",
        "item_id",
        "set",
        "kind",
        "dup_level",
        "probe",
        "probe_version",
        "probe_config",
        "eval_format",
        "metric",
        "value",
        "schema_version",
    } <= set(table.column_names)
    runs = read_runs(store_url)
    assert runs.column("model_size").to_pylist() == ["tiny-2m"]
    assert runs.column("experiment").to_pylist() == ["exp"]


def test_an_empty_store_reads_as_empty_tables(tmp_path):
    assert read_probes(str(tmp_path / "none")).num_rows == 0
    assert read_checkpoints(str(tmp_path / "none")).num_rows == 0


def test_other_readers_see_the_same_rows(tmp_path):
    url = str(tmp_path / "store")
    writer = StoreWriter(url, "exp")
    probe(writer, "r1", 10, 5, 1.0)
    probe(writer, "r1", 30, 5, 0.5)
    frame = read_probes(url).to_pandas()
    assert len(frame) == 10 and frame.groupby("step")["value"].mean().to_dict() == {
        10: 3.0,
        30: 2.5,
    }
    con = duckdb.connect()
    got = con.execute(
        f"select step, count(*), avg(value) from read_parquet('{url}/probes/**/*.parquet', hive_partitioning=true) "
        "group by step order by step"
    ).fetchall()
    assert [(int(s), n, v) for s, n, v in got] == [(10, 5, 3.0), (30, 5, 2.5)]


def test_a_killed_writers_leftover_breaks_no_reader(tmp_path):
    url = str(tmp_path / "store")
    writer = StoreWriter(url, "exp")
    probe(writer, "r1", 10, 5, 1.0)
    # What a writer killed before its rename leaves: the first bytes of a file at its temp name.
    step_dir = f"{url}/probes/experiment=exp/run=r1/step=10"
    target = f"{step_dir}/loss-00001.parquet"
    with open(io.temp_path(target), "wb") as leftover:
        leftover.write((Path(step_dir) / "loss-00000.parquet").read_bytes()[:100])
    assert len(os.listdir(step_dir)) == 2

    assert read_probes(url).num_rows == 5
    assert ds.dataset(f"{url}/probes", format="parquet", partitioning="hive").count_rows() == 5
    glob = f"{url}/probes/**/*.parquet"
    got = (
        duckdb.connect()
        .execute(f"select count(*) from read_parquet('{glob}', hive_partitioning=true)")
        .fetchone()
    )
    assert got == (5,)
    frame = polars.scan_parquet(glob, hive_partitioning=True).select(polars.len()).collect()
    assert frame.item() == 5


def test_a_commit_record_lists_its_files_and_rows_and_the_reader_checks_them(tmp_path):
    url = str(tmp_path / "store")
    writer = StoreWriter(url, "exp")
    probe(writer, "r1", 10, 6, 1.0, shards=3)
    [commit] = read_checkpoints(url).to_pylist()
    assert commit["files"] == [f"loss-{s:05d}.parquet" for s in range(3)]
    assert commit["num_rows"] == 6

    step_dir = Path(url, "probes", "experiment=exp", "run=r1", "step=10")
    # A file the commit does not list (a stray writer's, after the commit) is not read.
    pq.write_table(rows(10, 4, 7.0), step_dir / "loss-00003.parquet")
    assert read_probes(url).num_rows == 6
    # A listed file with other rows than committed, or gone: the reader refuses the store.
    pq.write_table(rows(10, 1, 7.0), step_dir / "loss-00002.parquet")
    with pytest.raises(
        DataError,
        match=r"run r1 step 10 of experiment exp: its files hold 5 "
        r"rows, its commit record 6",
    ):
        read_probes(url)
    (step_dir / "loss-00002.parquet").unlink()
    with pytest.raises(
        DataError,
        match=r"run r1 step 10 of experiment exp: .*loss-00002.parquet"
        r".* is missing",
    ):
        read_probes(url)


def test_a_commit_refuses_rows_its_files_do_not_hold(tmp_path):
    writer = StoreWriter(str(tmp_path / "store"), "exp")
    writer.begin_checkpoint("r1", 10)
    writer.write_probe_rows("r1", 10, "loss", 0, rows(10, 3, 1.0))
    with pytest.raises(DataError, match="hold 3 rows, not the 4"):
        writer.commit_checkpoint("r1", 10, 10 * 1024, ["loss.v1"], "c1", 4)
    assert read_checkpoints(str(tmp_path / "store")).num_rows == 0


def test_rows_of_two_probe_configurations_are_never_read_together(tmp_path):
    url = str(tmp_path / "store")
    writer = StoreWriter(url, "exp")
    probe(writer, "r1", 10, 3, 1.0, config="old")
    probe(writer, "r1", 20, 3, 2.0, config="old")
    probe(writer, "r2", 10, 3, 1.0, config="old")
    assert read_checkpoints(url).column("probe_config").to_pylist() == ["old"] * 3
    assert set(read_probes(url).column("probe_config").to_pylist()) == {"old"}

    # One step of r1 probed again with a new setting: the experiment now mixes two.
    probe(writer, "r1", 20, 3, 5.0, config="new")
    with pytest.raises(
        DataError,
        match=r"experiment exp: its probe rows come from 2 probe configurations: "
        r"new \(r1: 1 steps\); old \(r1: 1 steps, r2: 1 steps\); run the probe stage again",
    ):
        read_probes(url)
    # A filter that leaves one configuration reads; so does choosing one.
    assert read_probes(url, filter=ds.field("step") == 20).num_rows == 3
    chosen = read_probes(url, probe_config="new")
    assert chosen.column("value").to_pylist() == [5.0, 6.0, 7.0]
    assert read_probes(url, probe_config="old").num_rows == 6
    # Another experiment's configuration is no mix.
    probe(StoreWriter(url, "other"), "r1", 10, 3, 1.0, config="new")
    assert read_probes(url, filter=ds.field("experiment") == "other").num_rows == 3
    # Every step probed again with the new setting: one configuration again.
    probe(writer, "r1", 10, 3, 1.0, config="new")
    probe(writer, "r2", 10, 3, 1.0, config="new")
    assert set(read_probes(url).column("probe_config").to_pylist()) == {"new"}


def test_pandas_reads_every_table_of_the_store(tmp_path):
    url = str(tmp_path / "store")
    writer = StoreWriter(url, "exp")
    for run in ("r1", "r2"):
        writer.write_run(run, {"model_size": "tiny-2m", "train_tokens": 1000, "perturbed": True})
        probe(writer, run, 10, 3, 1.0)
    runs = pd.read_parquet(f"{url}/runs")
    assert sorted(runs["run"].astype(str)) == ["r1", "r2"]
    assert list(runs["model_size"]) == ["tiny-2m", "tiny-2m"]
    probes = pd.read_parquet(f"{url}/probes")
    assert len(probes) == 6 and set(probes["run"].astype(str)) == {"r1", "r2"}
    assert len(pd.read_parquet(f"{url}/checkpoints")) == 2


def test_run_metadata_holds_no_partition_column(tmp_path):
    # A `run` column in the file and in the path is what made pandas refuse store/runs.
    with pytest.raises(ValueError, match="must not hold `experiment` or `run`"):
        StoreWriter(str(tmp_path), "exp").write_run("r1", {"run": "r1", "seed": 0})
