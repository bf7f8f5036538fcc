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
        ("canary/2", 16, "loss", "loss", 3.0, "variant:0"),  # its own mean, never mixed in
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
            "eval_format": [r[5] if len(r) > 5 else "canonical" for r in rows],
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
        "probe/canaries/dup16/loss/loss/variant:0": 3.0,
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


def test_with_bars_opted_in_each_run_is_one_bar_and_no_line(tmp_path, monkeypatch, capsys, caplog):
    """Outside Ray, Ray's tqdm draws the bar here; in a Ray worker the driver draws it."""
    monkeypatch.setenv(progress.BARS, "1")
    monkeypatch.setenv("RAY_TQDM_PATCH_PRINT", "0")  # Ray's bar manager would patch print
    run_dir = tmp_path / "tiny-run"
    run_dir.mkdir()
    run = progress.Progress(str(run_dir), num_steps=4, tokens_per_step=64, interval_steps=2)
    run.start()
    for step in (1, 2, 3, 4):
        run.step_done({"step": step, "loss": 2.0, "lr": 0.1, "grad_norm": None})
    err = capsys.readouterr().err
    assert "train tiny-run step 4/4" in err and "256/256" in err and "tok/s" in err
    assert not caplog.records  # no progress line besides the bar
    assert [r["step"] for r in progress.read_metrics(str(run_dir))] == [2, 4]


def test_elsewhere_each_record_is_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(progress.BARS, raising=False)
    caplog.set_level("INFO", logger=progress.__name__)
    run = progress.Progress(str(tmp_path), num_steps=4, tokens_per_step=64, interval_steps=2)
    run.start()
    for step in (1, 2, 3, 4):
        run.step_done({"step": step, "loss": 2.0, "lr": 0.1, "grad_norm": None})
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split("  ")[0] for line in lines] == [
        f"train {tmp_path.name}: step 2/4",
        f"train {tmp_path.name}: step 4/4",
    ]
    assert all("tokens/s" in line and "ETA" in line for line in lines)
