"""The whole graph end to end: the tiny experiment (``tests.conftest.TINY_SPEC``: real Debian text,
canaries, a tiny megatron-core model and its standard twin on CPU) through ``taggant run`` on a
real local Ray, then everything a user reads afterwards: the stage folders, ``taggant audit``, the
store (through pyarrow, pandas and DuckDB), ``taggant fit`` and the fit stage's files. A second
``taggant run`` finds every stage done and changes nothing."""

import json
import os
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from taggant.jobs import graph
from taggant.jobs import probe as probe_job
from taggant.jobs.cli import main
from taggant.pipeline import fit, manifest, stage, store
from taggant.pipeline.data import RunInfo
from taggant.pipeline.spec import load_spec
from taggant.pipeline.train import checkpoint

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # the tiny experiment takes a minute or two

STAGES = ["ingest", "dedup", "plan", "tokenize", "train", "probe", "fit"]
MIN_GAP_NATS = 0.5
"""How far below the controls (and below the twin) canaries seen 16 times must end, in mean
loss per secret token. Seeds 1–5 and 7 of the tiny spec gave −0.9 to −1.9 nats; the twin ±0.1."""


@pytest.fixture(scope="module")
def tiny(tiny_experiment):
    """``(spec, {stage name: Stage}, {run name: run folder})`` of the finished tiny experiment."""
    spec = load_spec(tiny_experiment)
    stages = {s.key.name: s for s in graph.build(spec)}
    runs = {r.name: os.path.join(stages["train"].folder, r.name) for r in spec.runs.grid()}
    return spec, stages, runs


def store_files(url: str) -> dict[str, tuple[int, int]]:
    """Every file under the store: relative path → (size, mtime in ns)."""
    root = Path(url)
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def perturbed_dir(runs: dict[str, str]) -> str:
    [run_dir] = [d for d in runs.values() if RunInfo.read(d).perturbed]
    return run_dir


def test_every_stage_finished(tiny):
    spec, stages, runs = tiny
    assert list(stages) == STAGES
    for s in stages.values():
        assert s.status == "done", s.folder
        for name in (stage.SUCCESS, "spec.yaml", "stats.json"):
            assert os.path.exists(os.path.join(s.folder, name)), (s.folder, name)
    assert len(runs) == 2 and perturbed_dir(runs)
    last = spec.runs.num_steps(spec.runs.train_tokens[0])
    assert all(checkpoint.committed_steps(d)[-1] == last for d in runs.values())


def test_audit_passes_on_both_runs_and_fails_on_a_tampered_manifest(tiny, tmp_path, capsys):
    _, _, runs = tiny
    for run_dir in runs.values():
        assert main(["audit", run_dir]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert out.count(": OK") == 2 and "FAILED" not in out

    # A copy of the perturbed run whose manifest lost one occurrence of a member item.
    copy = tmp_path / "run"
    shutil.copytree(perturbed_dir(runs), copy, ignore=shutil.ignore_patterns("checkpoints"))
    items, occurrences, meta = manifest.read(RunInfo.read(str(copy)).manifest)
    dropped = occurrences.slice(0, 1).to_pylist()[0]
    tampered = str(tmp_path / "manifest")
    manifest.write(tampered, items, occurrences.slice(1), meta["sample_order_hash"])
    run_json = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**run_json, "manifest": tampered}))

    assert main(["audit", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and dropped["item_id"] in out


def test_the_store_holds_one_row_set_per_committed_checkpoint(tiny):
    spec, _, runs = tiny
    url = spec.store.url
    rows = store.read_probes(url).to_pandas()
    commits = store.read_checkpoints(url, spec.name).to_pandas()
    items, _, _ = manifest.read(RunInfo.read(perturbed_dir(runs)).manifest)
    item_ids = set(items["item_id"].to_pylist())
    metrics = rows.groupby("probe")["metric"].unique().map(len).to_dict()
    assert set(metrics) == set(spec.probes.names)
    assert not rows.duplicated(["run", "step", "item_id", "probe", "metric"]).any()
    assert set(rows["run"]) == set(runs) and set(rows["item_id"]) == item_ids
    for name, run_dir in runs.items():
        committed = checkpoint.committed_steps(run_dir)
        recorded = commits[commits["run"] == name]
        assert recorded["step"].tolist() == committed
        for record in recorded.to_dict("records"):
            step = record["step"]
            at = rows[(rows["run"] == name) & (rows["step"] == step)]
            assert list(record["probes"]) == probe_job.probe_versions(spec.probes)
            assert len(at) == record["num_rows"] == len(item_ids) * sum(metrics.values())
            for probe, count in at.groupby("probe").size().items():
                assert count == len(item_ids) * metrics[probe], (name, step, probe)
            tokens_seen = checkpoint.read_commit(run_dir, step)["tokens_seen"]
            assert set(at["tokens_seen"]) == {record["tokens_seen"]} == {tokens_seen}
            folder = Path(url, "probes", f"experiment={spec.name}", f"run={name}", f"step={step}")
            files = [f"{p}-00000.parquet" for p in sorted(spec.probes.names)]
            assert sorted(os.listdir(folder)) == files


def test_the_store_reads_back_with_pyarrow_pandas_and_duckdb(tiny):
    spec, _, _ = tiny
    url = spec.store.url
    keys = ["run", "step", "probe"]
    expected = store.read_probes(url).to_pandas()
    counts = expected.groupby(keys).size()
    sums = expected.groupby(keys)["value"].sum()

    frame = pd.read_parquet(os.path.join(url, "probes"))  # hive partitions come back as columns
    assert len(frame) == len(expected) and {"experiment", "run", "step"} <= set(frame.columns)
    frame = frame.astype({"run": str, "step": int, "probe": str})
    assert frame.groupby(keys).size().to_dict() == counts.to_dict()
    assert frame.groupby(keys)["value"].sum().to_numpy() == pytest.approx(sums.to_numpy())

    probes = os.path.join(url, "probes", "**", "*.parquet")
    db = duckdb.sql(
        f"select run, step, probe, count(*) as n, sum(value) as total "
        f"from read_parquet('{probes}', hive_partitioning = true) "
        "group by run, step, probe order by run, step, probe"
    ).df()
    assert list(zip(db["run"], db["step"], db["probe"])) == list(counts.index)
    assert db["n"].tolist() == counts.tolist()
    assert db["total"].to_numpy() == pytest.approx(sums.to_numpy())
    runs = os.path.join(url, "runs", "**", "*.parquet")
    perturbed = duckdb.sql(
        f"select run, perturbed from read_parquet('{runs}', hive_partitioning = true) order by run"
    ).fetchall()
    assert [p for _, p in perturbed] == [True, False]


def test_taggant_fit_fits_the_duplicates_law(tiny, capsys):
    spec, stages, _ = tiny
    assert main(["fit", "--store", spec.store.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    fits = report["fits"]
    duplicates = [f for f in fits if f["name"] == "duplicates"]
    assert [f["set"] for f in duplicates] == ["canaries"]  # the only set with two dup levels
    [canaries] = duplicates
    assert canaries["x"] == "dup_level" and canaries["n"] == 18  # 9 items at ×2, 9 at ×16
    assert canaries["slope"] < canaries["ci_high"] < 0  # more duplicates, further below controls
    assert {f["name"] for f in fits} >= {"duplicates", "forgetting"}
    membership = {
        (r["run"].rsplit("-", 1)[1], r["set"], r["dup_level"], r["attack"]): r
        for r in report["membership"]
    }
    assert membership["perturbed", "canaries", 16, "loss"]["auroc"] >= 0.9
    assert ("standard", "canaries", 16, "twin_reference") not in membership  # a twin has no twin

    folder = Path(stages["fit"].folder)
    assert json.loads((folder / "fits.json").read_text()) == fits
    for png in ("dose_response.png", "over_training.png", "auroc.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (folder / png).stat().st_size > 10_000


def test_canaries_seen_16_times_are_memorized(tiny):
    """At the last checkpoint the canaries inserted 16 times sit well below the controls in loss,
    and the standard twin, which never saw them, shows no such gap."""
    spec, _, _ = tiny
    levels = fit.level_summary(fit.load(spec.store.url, spec.name), "loss.nll_mean")
    gap = {
        (r["run"].rsplit("-", 1)[1], r["set"], r["dup_level"]): r for r in levels.to_dict("records")
    }
    perturbed, twin = gap["perturbed", "canaries", 16], gap["standard", "canaries", 16]
    assert perturbed["mean"] < -MIN_GAP_NATS and perturbed["ci_high"] < 0, levels
    assert perturbed["mean"] < twin["mean"] - MIN_GAP_NATS, levels


def test_a_rerun_skips_every_stage_and_adds_no_rows(tiny_experiment, tiny, capsys):
    spec, stages, _ = tiny
    before = store_files(spec.store.url)

    def markers() -> dict[str, int]:
        return {
            name: Path(s.folder, stage.SUCCESS).stat().st_mtime_ns for name, s in stages.items()
        }

    finished = markers()
    capsys.readouterr()
    assert main(["run", str(tiny_experiment)]) == 0
    err = capsys.readouterr().err
    assert err.count("already done, skipped") == len(STAGES), err
    assert store_files(spec.store.url) == before
    assert markers() == finished
