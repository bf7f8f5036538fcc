"""The dependency rule: sketches ← pipeline ← jobs; nothing imports jobs; no module-level ray."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "sketches": {"pipeline", "jobs", "ray", "torch", "pyarrow", "fsspec"},
    "pipeline": {"jobs"},
    "notebooks": {"jobs"},
}


def _imports(tree: ast.AST, top_level_only: bool) -> set[str]:
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_layers(package):
    for path in _modules(package):
        bad = _imports(ast.parse(path.read_text()), top_level_only=False) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_pipeline_never_imports_ray_at_module_level():
    for path in _modules("pipeline"):
        assert "ray" not in _imports(ast.parse(path.read_text()), top_level_only=True), path


@pytest.mark.parametrize("package", ["sketches", "pipeline", "jobs"])
def test_generic_package_names_resolve_inside_this_repo(package):
    module = __import__(package)
    assert Path(module.__file__).resolve().is_relative_to(ROOT), module.__file__
