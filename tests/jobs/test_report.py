"""`taggant fit` and `taggant run` print one report the same way: the level table first, rows that
name their run in full at any width, and numbers at the precision their intervals support."""

import io

from rich.console import Console

from taggant.jobs import report as render
from taggant.jobs.cli import main
from taggant.pipeline import fit
from taggant.pipeline.report import FitReport, build
from taggant.pipeline.spec import FitSpec
from taggant.pipeline.store import StoreWriter
from tests.pipeline.test_fit import write_run

PERTURBED = "tiny-2m-2000000tok-seed0-perturbed"
STANDARD = "tiny-2m-2000000tok-seed0-standard"


def test_fit_prints_the_level_table_and_whole_run_names_at_any_width(tmp_path, capsys):
    url = str(tmp_path / "store")
    writer = StoreWriter(url, "e")
    write_run(writer, PERTURBED, slope=-2.0, tokens=10**6, params=10**6, steps=[10])
    write_run(writer, STANDARD, slope=0.0, tokens=10**6, params=10**6, steps=[10], seed=1)
    assert main(["fit", "--store", url]) == 0
    out = capsys.readouterr().out
    assert out.index("members − controls") < out.index("fits of")  # the level table first
    report = build(fit.load(url), "loss.nll_mean", FitSpec())
    narrow = Console(file=io.StringIO(), width=60)
    render.render(report, narrow, "the store")
    text = narrow.file.getvalue()
    # a long name folds onto more lines of its cell, never cut: what tells the runs apart shows
    assert "perturbed" in text and "standard" in text


def test_a_report_survives_its_folder_and_names_its_files(tmp_path):
    url = str(tmp_path / "store")
    write_run(StoreWriter(url, "e"), "r", slope=-2.0, tokens=10**6, params=10**6, steps=[10])
    report = build(fit.load(url), "loss.nll_mean", FitSpec())
    report.write(str(tmp_path / "fit"))
    assert sorted(p.name for p in (tmp_path / "fit").iterdir()) == sorted(FitReport.FILES.values())
    assert FitReport.read(str(tmp_path / "fit")) == report


def test_numbers_carry_the_precision_of_their_interval():
    assert render.estimate(-3.4312, -3.65, -3.19) == "-3.43 [-3.65, -3.19]"
    assert render.estimate(0.01234, 0.0101, 0.0149) == "+0.0123 [+0.0101, +0.0149]"
    assert render.estimate(12.3, 2.0, 25.0) == "+12 [+2, +25]"
    assert render.pvalue(0.0004) == "<0.001" and render.pvalue(0.0312) == "0.031"
