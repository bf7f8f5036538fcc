"""The tests' corpus is hermetic: the same documents whatever packages the machine has.

``tests.corpus`` reads a snapshot shipped with the tests. These tests show that building it reads
nothing under the machine's ``/usr/share/doc`` (so adding or removing packages there cannot change
it), that the probe used to show this does see the demo's reads there, and that no test module
reads the machine's documentation itself.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from taggant.pipeline import corpora
from tests.corpus import SNAPSHOTS, pinned_docs

ROOT = Path(__file__).resolve().parents[1]
TRACE = """
import json, os, sys
touched = []
def hook(event, args):
    # open: (path, mode, flags); os.listdir / os.scandir: (path,); a descriptor is not a path.
    if event in ("open", "os.listdir", "os.scandir") and isinstance(args[0], (str, bytes, os.PathLike)):
        touched.append(os.path.abspath(os.fsdecode(args[0])))
sys.addaudithook(hook)
{call}
print(json.dumps(touched))
"""
MACHINE_DOCS = str(corpora.DEBIAN_DOC_ROOT)


def touched_paths(call: str, tmp_path: Path) -> list[str]:
    """Every path that ``call`` (Python statements, run in a fresh interpreter at the repository
    root) opened or listed."""
    done = subprocess.run(
        [sys.executable, "-c", TRACE.replace("{call}", call)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(done.stdout.splitlines()[-1])


def under_machine_docs(paths: list[str]) -> list[str]:
    return [p for p in paths if p == MACHINE_DOCS or p.startswith(MACHINE_DOCS + "/")]


def test_the_test_corpus_reads_nothing_of_the_machines_documentation(tmp_path):
    call = (
        "from pathlib import Path\n"
        "from taggant.pipeline import corpora\n"
        "from tests.corpus import pinned_docs\n"
        "for kind in ('copyright', 'changelog'):\n"
        "    corpora.write_jsonl_zst(pinned_docs(kind), Path(os.environ['TMPDIR']) / kind)\n"
    )
    touched = touched_paths(call, tmp_path)
    assert {str(p) for p in SNAPSHOTS.values()} <= set(touched)
    assert under_machine_docs(touched) == []


def test_the_probe_sees_the_demos_reads_of_the_machines_documentation(tmp_path):
    # Without this, the test above would also pass if the probe saw no reads at all.
    touched = touched_paths(
        "from taggant.pipeline import corpora\ncorpora.debian_docs('copyright')", tmp_path
    )
    assert MACHINE_DOCS in under_machine_docs(touched)


def reads_of_the_machines_documentation(source: str) -> list[str]:
    """What in Python ``source`` reads the machine's documentation: calls of ``debian_docs``,
    uses of ``DEBIAN_DOC_ROOT``, and string literals naming the folder (docstrings aside)."""
    tree = ast.parse(source)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        name = getattr(node, "attr", None) or getattr(node, "id", None)
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name == "debian_docs":
                found.append(f"line {node.lineno}: debian_docs(...)")
        elif name == "DEBIAN_DOC_ROOT":
            found.append(f"line {node.lineno}: DEBIAN_DOC_ROOT")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and MACHINE_DOCS in node.value
            and id(node) not in docstrings
        ):
            found.append(f"line {node.lineno}: {MACHINE_DOCS!r}")
    return found


def test_the_reader_check_finds_each_way_of_reading_the_machines_documentation():
    source = (
        '"""Docstrings may name /usr/share/doc."""\n'
        "from taggant.pipeline import corpora\n"
        "corpora.debian_docs('copyright')\n"
        "root = corpora.DEBIAN_DOC_ROOT\n"
        "paths = glob.glob('/usr/share/doc/*/copyright')\n"
    )
    assert reads_of_the_machines_documentation(source) == [
        "line 3: debian_docs(...)",
        "line 4: DEBIAN_DOC_ROOT",
        "line 5: '/usr/share/doc'",
    ]


def test_no_test_module_reads_the_machines_documentation():
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path.name != Path(__file__).name
        and (found := reads_of_the_machines_documentation(path.read_text()))
    }
    assert offenders == {}, "read the pinned snapshot instead: tests.corpus.pinned_docs"


@pytest.mark.parametrize("kind", sorted(SNAPSHOTS))
def test_the_snapshot_is_the_demo_builders_records_in_package_order(kind):
    docs = pinned_docs(kind)
    ids = [d["id"] for d in docs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(set(d) == {"id", "text"} and d["id"].startswith(f"{kind}/") for d in docs)
    docs[0]["text"] = "edited"  # a caller's copy: the next caller still gets the snapshot
    assert pinned_docs(kind)[0]["text"] != "edited"
