"""What ``bench/gpu_check.py`` imports besides torch, and which of it this Python lacks.

Standard library only: it runs before anything is installed. ``bench/gpu_check.sh`` calls it to
decide what to install and, after installing, to name what is still missing before the check
starts (instead of an ImportError minutes in). Usage (run it with the Python that runs the check):

    python bench/gpu_check_deps.py missing   # the pins to install, one per line
    python bench/gpu_check_deps.py pins      # every pin (for ``gpu_check.sh --fetch-wheels``)
    python bench/gpu_check_deps.py verify    # exit 1 naming each import that fails, and on CUDA
                                             # the C compiler or Python.h if absent

A requirement is met when its module imports' distribution is installed at or above the floor
(taggant's own floors in pyproject.toml). An unmet one is installed at its pin, the version the
CPU virtualenv tests with, together with the rest of its group (pydantic needs its own
pydantic-core exactly; numba its llvmlite). torch is never installed: the machine's CUDA build is
what is being checked.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import sysconfig
import warnings
from typing import NamedTuple


class Requirement(NamedTuple):
    module: str
    """What gpu_check imports (directly or through taggant)."""
    dist: str
    floor: str
    """Lowest version accepted when already installed."""
    pin: str
    """Version installed when unmet."""
    group: str
    """Unmet members install their whole group."""


REQUIREMENTS = [
    Requirement("megatron.core", "megatron-core", "0.16.1", "0.16.1", "megatron"),
    Requirement("packaging", "packaging", "24.2", "26.4", "megatron"),
    Requirement("pydantic", "pydantic", "2.9", "2.14.4", "pydantic"),
    Requirement("pydantic_core", "pydantic-core", "2.23", "2.50.5", "pydantic"),
    Requirement("annotated_types", "annotated-types", "0.6", "0.8.0", "pydantic"),
    Requirement("typing_inspection", "typing-inspection", "0.4.4", "0.4.5", "pydantic"),
    Requirement("typing_extensions", "typing-extensions", "4.16", "4.16.0", "pydantic"),
    Requirement("numpy", "numpy", "1.26", "2.4.6", "numpy"),
    Requirement("pyarrow", "pyarrow", "17", "26.0.1", "pyarrow"),
    Requirement("pandas", "pandas", "2.2", "3.1.2", "pandas"),
    Requirement("dateutil", "python-dateutil", "2.9", "2.9.0.post0", "pandas"),
    Requirement("six", "six", "1.5", "1.17.0", "pandas"),
    Requirement("numba", "numba", "0.60", "0.68.1", "numba"),
    Requirement("llvmlite", "llvmlite", "0.43", "0.50.0", "numba"),
    Requirement("scipy", "scipy", "1.13", "1.17.1", "scipy"),
    Requirement("xxhash", "xxhash", "3.4", "4.1.0", "xxhash"),
    Requirement("zstandard", "zstandard", "0.22", "0.25.0", "zstandard"),
    Requirement("fsspec", "fsspec", "2024.6", "2026.9.0", "fsspec"),
    Requirement("yaml", "PyYAML", "6", "6.0.4", "yaml"),
    Requirement("tokenizers", "tokenizers", "0.20", "0.23.3", "tokenizers"),
    Requirement("tqdm", "tqdm", "4.66", "4.70.1", "tqdm"),
    Requirement("psutil", "psutil", "5.9", "7.2.2", "psutil"),
]


def version_key(version: str) -> tuple[int, ...]:
    """The leading numeric release parts (``2.9.0.post0`` -> ``(2, 9, 0)``, ``2.13.0+cpu`` ->
    ``(2, 13, 0)``); enough to compare with the floors above, which are plain releases."""
    parts = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() != len(part):
            break
    return tuple(parts)


def met(req: Requirement) -> bool:
    try:
        found = importlib.util.find_spec(req.module) is not None
    except ImportError:  # a parent package that is absent or broken
        found = False
    if not found:
        return False
    try:
        installed = importlib.metadata.version(req.dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return version_key(installed) >= version_key(req.floor)


def missing() -> list[str]:
    """Pins to install: every unmet requirement's whole group."""
    groups = {req.group for req in REQUIREMENTS if not met(req)}
    return [f"{req.dist}=={req.pin}" for req in REQUIREMENTS if req.group in groups]


def verify() -> list[str]:
    """What still stops the check: each import that fails (with why), and on CUDA the compiler
    and header Triton needs to compile megatron's torch.compile'd fusions."""
    warnings.simplefilter("ignore")  # megatron warns at import that TE and Apex are absent
    problems = []
    for module in ["torch", *(req.module for req in REQUIREMENTS)]:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - any failure to import is reported by name
            problems.append(f"import {module}: {type(error).__name__}: {error}")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        if not (shutil.which("cc") or shutil.which("gcc")):
            problems.append("a C compiler (cc): Triton compiles megatron's fusions with it")
        header = os.path.join(sysconfig.get_paths()["include"], "Python.h")
        if not os.path.exists(header):
            problems.append(f"{header} (python3.x-dev): Triton needs it")
    return problems


def main(argv: list[str]) -> int:
    [command] = argv or ["missing"]
    if command == "pins":
        print("\n".join(f"{req.dist}=={req.pin}" for req in REQUIREMENTS))
    elif command == "missing":
        print("\n".join(missing()))
    elif command == "verify":
        problems = verify()
        for problem in problems:
            print(f"gpu_check needs {problem}", file=sys.stderr)
        return 1 if problems else 0
    else:
        print(f"unknown command {command!r}: use missing, pins or verify", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
