"""The base every spec section derives from, shared by ``pipeline.spec`` and the perturbation
kinds (whose spec classes live in their own modules under ``pipeline/perturb/``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
"""Names end up in folder names and store partitions: lowercase, digits, ``_`` and ``-``."""


class SpecModel(BaseModel):
    """Strict (unknown fields refused), frozen, with attribute docstrings as field docs."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
