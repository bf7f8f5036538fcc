"""``bench/gpu_check.sh --tiny``: the GPU check's own code path (run folder with an overlay,
training, checkpoint commit, probe rows in the store, resume) runs on CPU and reports its figures;
on a GPU the same script runs the gpt-125m and gpt-350m presets in bf16."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BARE_PYTHON = "/usr/bin/python3"


def bare_python_lacks_megatron() -> bool:
    if not os.path.exists(BARE_PYTHON):
        return False
    found = subprocess.run(
        [BARE_PYTHON, "-c", "import megatron.core, pydantic"], capture_output=True
    )
    return found.returncode != 0


@pytest.mark.slow
def test_the_tiny_mode_runs_every_check_on_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--tiny", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ALL CHECKS PASSED" in done.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["environment"]["cuda"] is False
    [tiny] = report["presets"]
    assert tiny["preset"] == "tiny-2m" and tiny["mfu"] is None  # no peak to compare on CPU
    assert all(tiny["checks"].values()), tiny["checks"]
    assert tiny["resume_max_loss_diff"] == 0.0  # CPU float32 resumes exactly
    for figure in (
        "tokens_per_s",
        "commit_to_probe_rows_s",
        "probe_tokens_per_s",
        "plain_forward_tokens_per_s",
        "step_and_save_s",
    ):
        assert tiny[figure] > 0, figure


@pytest.mark.skipif(
    not bare_python_lacks_megatron(), reason=f"needs a {BARE_PYTHON} without megatron-core"
)
def test_without_megatron_or_wheels_it_says_what_it_needs(tmp_path):
    # The system Python, without taggant's dependencies, and no wheels to install them from.
    env = {**os.environ, "PYTHON": BARE_PYTHON, "TAGGANT_WHEELS": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--tiny"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "megatron-core==0.16.1" in done.stderr and "--fetch-wheels" in done.stderr
