"""The dependency rule: sketches ← pipeline ← jobs; nothing imports jobs; no module-level ray.
And the packaging rule: the folders install as ``taggant.*``, never as top-level modules."""

import ast
import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "sketches": {"pipeline", "jobs", "ray", "torch", "pyarrow", "fsspec"},
    "pipeline": {"jobs"},
    "notebooks": {"jobs"},
}


def _top(module: str) -> str:
    """The layer a module belongs to: ``taggant.pipeline.io`` → ``pipeline``, ``ray.util`` → ``ray``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "taggant" and len(parts) > 1 else parts[0]


def _imports(tree: ast.AST, top_level_only: bool) -> set[str]:
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {_top(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(_top(node.module))
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
def test_packages_install_under_the_taggant_namespace(package):
    module = importlib.import_module(f"taggant.{package}")
    assert Path(module.__file__).resolve().is_relative_to(ROOT / package), module.__file__
    for path in _modules(package):
        assert not any(
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] in {"sketches", "pipeline", "jobs"}
            for node in ast.walk(ast.parse(path.read_text()))
        ), f"{path} imports a bare name"


@pytest.mark.parametrize("package", ["sketches", "pipeline", "jobs"])
def test_every_module_is_in_the_install(package):
    # `make venv` installs strict-editable (pyproject.toml): a link per file present at install,
    # so a module added since cannot be imported until `make venv` links it.
    names = [
        ".".join(["taggant", *path.relative_to(ROOT).with_suffix("").parts]).removesuffix(
            ".__init__"
        )
        for path in _modules(package)
    ]
    unlinked = [name for name in names if importlib.util.find_spec(name) is None]
    assert not unlinked, f"{unlinked} are not in the install; run `make venv` to link them"


def test_pyproject_lists_every_package_folder():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        f"taggant.{p.parent.relative_to(ROOT).as_posix().replace('/', '.')}"
        for top in ("sketches", "pipeline", "jobs")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert set(tool["packages"]) == folders


def test_a_user_module_named_pipeline_does_not_shadow_taggant(tmp_path, monkeypatch):
    (tmp_path / "pipeline.py").write_text("raise ImportError('the user module was imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlib.util.find_spec("taggant.pipeline.spec").origin.startswith(str(ROOT))
