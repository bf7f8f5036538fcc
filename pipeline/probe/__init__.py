"""Memorization probes of one checkpoint on manifest items, as long-format store rows.

``probe_items`` scores every item in one teacher-forced pass (``scoring``), computes the requested
probes (``registry``: names, versions, metrics and their directions) and returns
``pipeline.store.PROBE_SCHEMA`` rows; ``probe_model`` runs it with a model under test and a
``ProbesSpec``. A model under test is a checkpoint of a run (``native.open_checkpoint``;
``native.probe_checkpoint`` probes one on the run's ``inputs``) or a local Hugging Face model
(``hf.load``).
"""

from taggant.pipeline.probe.registry import PROBES
from taggant.pipeline.probe.run import Model, Tokenize, probe_items, probe_model
from taggant.pipeline.probe.scoring import LogitsFn, TokenScores, score

__all__ = [
    "PROBES",
    "LogitsFn",
    "Model",
    "TokenScores",
    "Tokenize",
    "probe_items",
    "probe_model",
    "score",
]
