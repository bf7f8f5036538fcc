"""Memorization probes of one checkpoint on manifest items, as long-format store rows.

``probe_items`` scores every item in one teacher-forced pass (``scoring``), computes the requested
probes (``registry``: names, versions, metrics and their directions) and returns
``pipeline.store.PROBE_SCHEMA`` rows; ``probe_model`` runs it with a model under test and a
``ProbesSpec``. A model under test is a checkpoint of a run (``native.open_checkpoint``;
``native.probe_checkpoint`` probes one on the run's ``inputs``) or a local Hugging Face model
(``hf.load``).
"""

import importlib

_EXPORTS = {
    "PROBES": "registry",
    "Model": "run",
    "Tokenize": "run",
    "probe_items": "run",
    "probe_model": "run",
    "LogitsFn": "scoring",
    "score": "scoring",
    "TokenScores": "token_scores",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Load a name's module on first use: the model-facing ones load torch, which the registry
    and settings hashes (``taggant status``, ``plan``) must not."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
