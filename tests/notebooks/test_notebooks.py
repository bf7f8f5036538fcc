"""The notebooks run top to bottom on the tiny experiment's store and stage folders, and write their
figures; they are committed without outputs."""

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
FIGURES = {
    "scaling_laws.ipynb": ["dose_response.png", "over_training.png", "auroc.png"],
    "dedup_insertion_report.ipynb": ["duplicate_clusters.png", "insertions.png"],
}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A ``python3`` kernelspec that runs this interpreter, found before any user or system one."""
    root = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(root / "kernels" / "python3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        yield


def execute(name: str, parameters: dict, cwd: Path) -> nbformat.NotebookNode:
    """Run a notebook with ``parameters`` injected in a cell right after its ``parameters`` cell
    (as papermill does); raises ``CellExecutionError`` on the first failing cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    [index] = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    source = "\n".join(
        [f"{key} = {value!r}" for key, value in parameters.items()]
        + [f"assert __import__('sys').executable == {sys.executable!r}"]
    )
    nb.cells.insert(
        index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    )
    NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


@pytest.fixture(scope="module")
def tiny(tiny_experiment, kernel) -> dict:
    """The tiny experiment's resolved spec (``work_dir``, ``store.url``, ``name``)."""
    return yaml.safe_load(tiny_experiment.read_text())


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), (
        f"{name}: clear its outputs"
    )
    assert [c for c in code if "parameters" in c.metadata.get("tags", [])], (
        f"{name}: no parameters cell"
    )


@pytest.mark.ray
@pytest.mark.slow
def test_scaling_laws(tiny, tmp_path):
    out = tmp_path / "figures"
    nb = execute(
        "scaling_laws.ipynb",
        {
            "store_url": tiny["store"]["url"],
            "experiment": tiny["name"],
            "metric": "loss.nll_mean",
            "out_dir": str(out),
        },
        tmp_path,
    )
    for png in FIGURES["scaling_laws.ipynb"]:
        assert (out / png).stat().st_size > 0, png
    assert sum("image/png" in o.get("data", {}) for o in outputs(nb)) == 3, (
        "every figure is shown inline"
    )
    assert "twin_reference" in "".join(
        o.get("data", {}).get("text/plain", "") for o in outputs(nb)
    ), "AUROC table"


@pytest.mark.ray
@pytest.mark.slow
def test_dedup_insertion_report(tiny, tmp_path):
    out = tmp_path / "figures"
    nb = execute(
        "dedup_insertion_report.ipynb",
        {"work_dir": tiny["work_dir"], "out_dir": str(out)},
        tmp_path,
    )
    for png in FIGURES["dedup_insertion_report.ipynb"]:
        assert (out / png).stat().st_size > 0, png
    assert sum("image/png" in o.get("data", {}) for o in outputs(nb)) == 2, (
        "both figures are shown inline"
    )
    assert "all counts add up" in "".join(o.get("text", "") for o in outputs(nb))


@pytest.mark.ray
@pytest.mark.slow
def test_dedup_insertion_report_fails_when_counts_do_not_add_up(tiny, tmp_path):
    work = tmp_path / "work"
    for stage in Path(tiny["work_dir"]).glob("*-*"):
        if stage.name.split("-")[0] in ("ingest", "dedup", "plan", "tokenize"):
            shutil.copytree(
                stage, work / stage.name, ignore=shutil.ignore_patterns("*.bin", "sketches")
            )
    [stats] = work.glob("dedup-*/stats.json")
    counts = json.loads(stats.read_text())
    counts["counts"]["removed"]["near_dup"] += 1  # balanced, but one more input than ingest kept
    counts["counts"]["input"] += 1
    stats.write_text(json.dumps(counts))
    with pytest.raises(CellExecutionError, match="stages do not chain"):
        execute(
            "dedup_insertion_report.ipynb",
            {"work_dir": str(work), "out_dir": str(tmp_path / "figures")},
            tmp_path,
        )


@pytest.mark.ray
@pytest.mark.slow
def test_dedup_insertion_report_refuses_to_choose_among_plans(tiny, tmp_path):
    """A second plan of the same experiment (a re-run with other settings) is not silently
    reported: the notebook asks which one, and reports the one it is given."""
    work = tmp_path / "work"
    for stage in Path(tiny["work_dir"]).glob("*-*"):
        if stage.name.split("-")[0] in ("ingest", "dedup", "plan", "tokenize"):
            shutil.copytree(
                stage, work / stage.name, ignore=shutil.ignore_patterns("*.bin", "sketches")
            )
    [plan] = work.glob("plan-*")
    shutil.copytree(plan, work / "plan-0000beef")
    parameters = {"work_dir": str(work), "out_dir": str(tmp_path / "figures")}
    with pytest.raises(CellExecutionError, match="set `plan_folder`"):
        execute("dedup_insertion_report.ipynb", parameters, tmp_path)
    nb = execute("dedup_insertion_report.ipynb", parameters | {"plan_folder": str(plan)}, tmp_path)
    assert str(plan) in "".join(o.get("text", "") for o in outputs(nb))
