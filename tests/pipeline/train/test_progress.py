"""Progress records and TensorBoard views without a training loop: probe summaries per set and
duplication level, and a run that goes on (with a message) where TensorBoard is not installed.
Progress records of a real training run are checked in ``test_loop``."""

import os
import sys

import pyarrow as pa
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from taggant.pipeline.store import PROBE_SCHEMA
from taggant.pipeline.train import progress


def probe_rows() -> pa.Table:
    """Rows of one checkpoint: loss of two controls and two ×16 canaries, exact match of one."""
    rows = [
        ("canary/0", 0, "loss", "loss", 5.0),
        ("canary/1", 0, "loss", "loss", 6.0),
        ("canary/2", 16, "loss", "loss", 1.0),
        ("canary/3", 16, "loss", "loss", 2.0),
        ("canary/2", 16, "exact_match", "exact_match", 1.0),
    ]
    return pa.table(
        {
            "tokens_seen": [512] * len(rows),
            "item_id": [r[0] for r in rows],
            "set": ["canaries"] * len(rows),
            "kind": ["canary"] * len(rows),
            "dup_level": [r[1] for r in rows],
            "probe": [r[2] for r in rows],
            "probe_version": ["v1"] * len(rows),
            "probe_config": ["c"] * len(rows),
            "metric": [r[3] for r in rows],
            "value": [r[4] for r in rows],
            "schema_version": [1] * len(rows),
        },
        schema=PROBE_SCHEMA,
    )


def test_probe_summaries_are_means_per_set_and_level_in_tensorboard(tmp_path):
    assert progress.probe_summary(probe_rows()) == {
        "probe/canaries/dup0/loss/loss": 5.5,
        "probe/canaries/dup16/exact_match/exact_match": 1.0,
        "probe/canaries/dup16/loss/loss": 1.5,
    }
    progress.write_probe_summary(str(tmp_path), 7, probe_rows())
    events = EventAccumulator(os.path.join(tmp_path, progress.TENSORBOARD))
    events.Reload()
    [scalar] = events.Scalars("probe/canaries/dup16/loss/loss")
    assert (scalar.step, scalar.value) == (7, 1.5)


def test_progress_without_tensorboard_installed_goes_on_with_a_message(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    run = progress.Progress(
        str(tmp_path), num_steps=2, tokens_per_step=8, interval_steps=1, tensorboard=True
    )
    assert "pip install 'taggant[tensorboard]'" in caplog.text
    run.start()
    assert run.step_done({"step": 1, "loss": 2.0, "lr": 0.1, "grad_norm": None})["loss"] == 2.0
    assert [r["step"] for r in progress.read_metrics(str(tmp_path))] == [1]
    assert not (tmp_path / progress.TENSORBOARD).exists()
