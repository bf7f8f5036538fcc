"""``bench/gpu_check.sh --tiny``: the GPU check's own code path (run folder with an overlay,
training, checkpoint commit, probe rows in the store, resume; two ranks resumed at another
layout) runs on CPU and reports its figures after every phase; on a GPU the same script runs the
gpt-125m and gpt-350m presets in bf16. It starts from a bare Python that has only torch: what it
lacks is installed, or named before anything starts (``bench/gpu_check_deps.py``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


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
    assert report["status"] == "passed" and "data_parallel" not in report  # one CPU, no GPUs
    assert report["phases_done"] == [
        "prepare",
        *(
            f"tiny-2m:{p}"
            for p in ("train", "checkpoint", "probe_step", "probe_vs_forward", "resume")
        ),
    ]
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


def deps(python: list[str], command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*python, "bench/gpu_check_deps.py", command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_python_without_packages_gets_every_pin_and_each_missing_import_named():
    # -S: no site-packages, i.e. a Python with only its standard library.
    bare = [sys.executable, "-S"]
    pins = deps([sys.executable], "pins").stdout.split()
    assert deps(bare, "missing").stdout.split() == pins
    assert "megatron-core==0.16.1" in pins and "numba==0.68.1" in pins
    done = deps(bare, "verify")
    assert done.returncode == 1
    named = [line for line in done.stderr.splitlines() if line.startswith("gpu_check needs import")]
    modules = {line.split()[3].rstrip(":") for line in named}
    assert {"torch", "megatron.core", "pyarrow", "pandas", "numba"} <= modules


def test_this_virtualenv_lacks_nothing():
    assert deps([sys.executable], "missing").stdout.split() == []
    assert deps([sys.executable], "verify").returncode == 0


@pytest.mark.slow
@pytest.mark.venv  # ~4 minutes of pip: outside `make test`, run with `pytest -m venv`
def test_a_bare_virtualenv_with_only_torch_starts_and_passes(tmp_path):
    """The bare-machine start: a fresh virtualenv holding only torch (the CPU wheel standing in
    for a GPU image's CUDA build) runs gpu_check.sh, which installs the rest itself; both phases,
    including two ranks on gloo, pass. Minutes: pip installs ~20 packages."""
    wheel = sorted(Path("/opt/wheels").glob("torch-*-cp311-*.whl"))
    if not wheel:
        pytest.skip("no local torch wheel to build the bare virtualenv from")
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel[-1])], check=True)
    assert deps([python], "missing").stdout.split()  # it lacks what the script must bring
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(PYTHON=python, CUDA_VISIBLE_DEVICES="", GPU_CHECK_TIMEOUT_S="900")
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--tiny", "--data-parallel", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "passed"
    assert report["phases_done"][-2:] == ["data_parallel:dp2", "data_parallel:tp2_resume"]
    assert all(report["data_parallel"]["checks"].values())
