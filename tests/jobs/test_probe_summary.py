"""The probe stage counts its rows where they are: in the store, whichever watcher wrote them
(the train stage's stream most), not only the rows its own catch-up pass wrote."""

from __future__ import annotations

import pyarrow as pa

from taggant.jobs import graph
from taggant.jobs import probe as probe_job
from taggant.pipeline.spec import parse_spec
from taggant.pipeline.store import StoreWriter
from tests.conftest import TINY_SPEC


def commit(writer: StoreWriter, run: str, step: int, config: str, num_rows: int) -> None:
    """One committed checkpoint of ``num_rows`` loss rows written with probe ``config``."""
    rows = [
        {
            "tokens_seen": step * 100,
            "item_id": f"c/{i}",
            "set": "c",
            "kind": "canary",
            "dup_level": 1,
            "probe": "loss",
            "probe_version": "loss.v1",
            "probe_config": config,
            "eval_format": "canonical",
            "metric": "nll_mean",
            "value": 1.0,
            "schema_version": 1,
        }
        for i in range(num_rows)
    ]
    writer.begin_checkpoint(run, step)
    writer.write_probe_rows(run, step, "loss", 0, pa.Table.from_pylist(rows))
    writer.commit_checkpoint(run, step, step * 100, ["loss.v1"], config, num_rows)


def test_the_stores_rows_of_the_specs_runs_and_probe_settings_count(tmp_path):
    spec = parse_spec(
        {
            **TINY_SPEC,
            "corpus": {"paths": ["unread"]},
            "work_dir": str(tmp_path),
            "store": {"url": str(tmp_path / "store")},
        }
    )
    perturbed, standard = (r.name for r in spec.runs.grid())
    writer = StoreWriter(spec.store.url, spec.name)
    wanted = probe_job.probe_config(spec.probes)
    commit(writer, perturbed, 1, wanted, 5)
    commit(writer, perturbed, 9, wanted, 7)
    commit(writer, standard, 1, wanted, 11)
    assert probe_job.in_store(spec) == {"rows": 23, "checkpoints": 3}
    # Not counted: another probe configuration, a run outside the grid, another experiment.
    commit(writer, standard, 9, "another-configuration", 13)
    commit(writer, "some-other-run", 1, wanted, 17)
    commit(StoreWriter(spec.store.url, "other"), perturbed, 1, wanted, 19)
    counted = probe_job.in_store(spec)
    assert counted == {"rows": 23, "checkpoints": 3}
    stats = {**counted, "rows_written": 0, "runs": {perturbed: {}, standard: {}}}
    assert graph.summarize(stats) == "rows 23, checkpoints 3, rows_written 0, runs: 2"
