"""Memorization probes of one checkpoint on manifest items, as long-format store rows.

``probe_items`` scores every item in one teacher-forced pass (``scoring``), computes the requested
probes (``registry``: names, versions, metrics and their directions) and returns
``pipeline.store.PROBE_SCHEMA`` rows. ``hf.load`` turns a local Hugging Face model into the
``LogitsFn`` and tokenizer it needs.
"""

from taggant.pipeline.probe.registry import PROBES
from taggant.pipeline.probe.run import Tokenize, probe_items
from taggant.pipeline.probe.scoring import LogitsFn, TokenScores, score

__all__ = ["PROBES", "LogitsFn", "TokenScores", "Tokenize", "probe_items", "score"]
