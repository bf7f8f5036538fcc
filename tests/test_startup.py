"""What the light commands import: ``taggant --help`` none of the spec's or the data's packages,
``taggant validate`` the spec's (pydantic, numpy for drawing items, fsspec for the corpus paths)
but nothing of training, Ray, Parquet or the fits, so a gain in their start-up cannot be lost
unseen (``bench/cli_startup.py`` measures it)."""

from __future__ import annotations

from tests.startup import demo_spec_file, run_cli

RUNTIME = frozenset({"torch", "megatron", "ray", "numba", "pyarrow", "pandas", "scipy"})
"""Packages of the stages themselves: training, Ray, the dedup kernels, Parquet, the fits."""


def test_help_imports_neither_the_spec_nor_the_data_packages(tmp_path):
    run = run_cli(tmp_path, "--help")
    assert run.code == 0
    assert "usage: taggant" in run.stdout
    assert "argparse" in run.packages  # what the wrapper reports is what was imported
    assert sorted((RUNTIME | {"pydantic", "numpy", "fsspec", "yaml", "rich"}) & run.packages) == []


def test_validate_imports_the_spec_but_nothing_a_stage_runs_on(debian_corpus, tmp_path):
    spec = demo_spec_file(tmp_path, str(debian_corpus / "*.jsonl*"))
    run = run_cli(tmp_path, "validate", str(spec))
    assert run.code == 0
    assert "valid" in run.stdout
    assert {"pydantic", "numpy", "fsspec"} <= run.packages
    assert sorted(RUNTIME & run.packages) == []
