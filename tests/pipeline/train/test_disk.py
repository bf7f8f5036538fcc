"""The disk estimate of a spec's checkpoints (``pipeline.train.disk``): its peak under
``keep_last`` against the watchers' real retention on a run folder, its counts per kind, the
budget check, and ``taggant plan`` printing it and refusing a plan over budget; retention keeps
checkpoints whose export has not run yet."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from taggant.jobs import probe as probe_job
from taggant.jobs.cli import main
from taggant.pipeline.errors import ConfigError
from taggant.pipeline.models import MODEL_PRESETS
from taggant.pipeline.spec import ExperimentSpec, ProbesSpec
from taggant.pipeline.train import checkpoint, disk, hf
from taggant.pipeline.train.schedule import full_checkpoint_steps
from tests.conftest import TINY_SPEC

SIZES = {"weights": 3, "full": 17}
"""Bytes of a fake checkpoint of each kind (the payload file written for it)."""


def tiny(**checkpoints) -> ExperimentSpec:
    spec = {**TINY_SPEC, "checkpoints": {**TINY_SPEC["checkpoints"], **checkpoints}}
    return ExperimentSpec.model_validate(
        {**spec, "corpus": {"paths": ["c/*.jsonl"]}, "work_dir": "w", "store": {"url": "s"}}
    )


def commit(run_dir: str, step: int, kind: str) -> None:
    """A committed checkpoint of ``kind`` whose payload is ``SIZES[kind]`` bytes."""
    folder = checkpoint.step_dir(run_dir, step)
    os.makedirs(folder)
    with open(os.path.join(folder, "payload"), "wb") as f:
        f.write(b"x" * SIZES[kind])
    with open(os.path.join(folder, checkpoint.COMMIT), "w") as f:
        json.dump({"step": step, "kind": kind}, f)


def payload_bytes(run_dir: str) -> int:
    return sum(
        os.path.getsize(os.path.join(checkpoint.step_dir(run_dir, s), "payload"))
        for s in checkpoint.committed_steps(run_dir)
    )


def test_the_peak_is_what_the_watchers_retention_leaves_on_disk_at_most(tmp_path):
    rng = np.random.default_rng(20)
    for case in range(30):
        steps = sorted(rng.choice(np.arange(1, 60), size=int(rng.integers(1, 15)), replace=False))
        steps = [int(s) for s in steps]
        resume_every, keep_last = int(rng.integers(0, 20)), int(rng.integers(0, 5))
        full = set(full_checkpoint_steps(steps, resume_every))
        run_dir = str(tmp_path / str(case))
        # retain() reads only the folder and keep_last of a target.
        target = probe_job.Target("e", None, run_dir, None, "s", ProbesSpec(), keep_last)
        peak = 0
        for step in steps:  # each checkpoint committed, then probed and retained at once
            commit(run_dir, step, "full" if step in full else "weights")
            peak = max(peak, payload_bytes(run_dir))
            probe_job.retain(target, set(checkpoint.committed_steps(run_dir)))
            assert checkpoint.resume_step(run_dir) == max([0] + [s for s in full if s <= step])
        assert disk.peak_bytes(steps, full, SIZES, keep_last) == peak, (steps, full, keep_last)


def test_the_estimate_counts_each_kind_at_its_bytes_per_parameter():
    # TINY_SPEC checkpoints steps 1, 9, 64, 74, 80 and 160; its tokenizer has 512 ids.
    params = MODEL_PRESETS["tiny-2m"].num_params(512)
    [run] = [r for r in tiny().runs.grid() if r.perturbed]
    every = disk.run_disk(tiny(), run, 512)
    assert (every.num_params, every.full_checkpoints, every.weights_checkpoints) == (params, 6, 0)
    assert every.peak_bytes == 6 * 14 * params and every.export_bytes == 0  # auto: the larger

    spaced = disk.run_disk(tiny(resume_every_steps=64, export_hf=True), run, 512)
    assert (spaced.full_checkpoints, spaced.weights_checkpoints) == (2, 4)  # 64 and 160 full
    assert spaced.peak_bytes == (2 * 14 + 4 * 4) * params
    assert spaced.export_bytes == 6 * 4 * params

    on_cpu = tiny(resume_every_steps=64).model_copy(
        update={"runs": tiny().runs.model_copy(update={"device": "cuda"})}
    )
    assert disk.run_disk(on_cpu, run, 512).peak_bytes == (2 * 14 + 4 * 2) * params


def test_a_spec_over_its_budget_is_refused_with_the_fix():
    disks = disk.plan_disk(tiny())
    need = sum(d.total_bytes for d in disks)
    assert [d.run for d in disks] == [r.name for r in tiny().runs.grid()]
    disk.check_budget(tiny(disk_budget_bytes=need), disks)
    disk.check_budget(tiny(), disks)  # no budget
    with pytest.raises(ConfigError, match=f"need about {need:,} bytes but the budget is") as e:
        disk.check_budget(tiny(disk_budget_bytes=need - 1))
    assert e.value.problems[0][0] == "checkpoints.disk_budget_bytes"
    assert "keep_last" in str(e.value) and "resume_every_steps" in str(e.value)


def test_the_budget_does_not_change_the_train_stage():
    from taggant.jobs import train as train_job

    assert train_job.stage_config(tiny(disk_budget_bytes=10)) == train_job.stage_config(tiny())
    assert train_job.stage_config(tiny(resume_every_steps=10)) != train_job.stage_config(tiny())


def test_taggant_plan_prints_the_disk_and_refuses_a_plan_over_budget(tmp_path, capsys):
    spec = {**TINY_SPEC, "work_dir": str(tmp_path / "w"), "store": {"url": str(tmp_path / "s")}}
    (tmp_path / "docs.jsonl").write_text('{"id": "a", "text": "a document"}\n')
    spec["corpus"] = {"paths": [str(tmp_path / "*.jsonl")]}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    need = sum(d.total_bytes for d in disk.plan_disk(tiny()))

    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{need / 1e9:,.3f} GB (budget: none" in out and "tiny-2m" in out
    assert main(["plan", str(path), "--set", f"checkpoints.disk_budget_bytes={need - 1}"]) == 2
    assert "checkpoints.disk_budget_bytes: the 2 runs' checkpoints need" in capsys.readouterr().err


def test_retention_keeps_checkpoints_not_exported_yet(tmp_path):
    run_dir = str(tmp_path)
    for step in (1, 2, 3, 4):
        commit(run_dir, step, "weights")  # no full one: the resume point is the start
    for step in (1, 3):  # exports run beside training and may lag behind (jobs.hf.Exporter)
        os.makedirs(hf.export_dir(run_dir, step))
        Path(hf.export_dir(run_dir, step), hf.EXPORT_META).write_text("{}")
    target = probe_job.Target("e", None, run_dir, None, "s", ProbesSpec(), 1, export_hf=True)
    probe_job.retain(target, {1, 2, 3, 4})
    assert checkpoint.committed_steps(run_dir) == [2, 4]  # 2 awaits its export, 4 is the newest
    probe_job.retain(dataclasses.replace(target, export_hf=False), {1, 2, 3, 4})
    assert checkpoint.committed_steps(run_dir) == [4]
