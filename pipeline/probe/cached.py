"""A causal LM with a KV cache, built on first use: the one model form that greedy decoding
(``generation.Greedy``) and prefix-shared scoring (``shared_prefix.score_groups``) run on.

It wraps a ``transformers`` causal LM (``hf.load`` for a local model; a checkpoint of taggant's
own through its exact Llama mapping, ``native.as_llama``), which is built only when a probe first
needs it: a checkpoint probed without generation or candidate texts never builds it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


class CachedLM:
    """A ``transformers`` causal LM, loaded on first use.

    Args:
        load: builds the model (called once).
        vocab_size: ids the tokenizer gives (logits past it are padding: never chosen by greedy
            decoding, and left out of the log-softmax, as ``load_logits_fn`` leaves them out).
        device: where the model runs.
    """

    def __init__(self, load: Callable[[], Any], vocab_size: int, device: str = "cpu"):
        self._load, self._model = load, None
        self.vocab_size, self.device = vocab_size, device

    @property
    def model(self) -> Any:
        """The model, in eval mode on ``device`` (built on the first access)."""
        if self._model is None:
            self._model = self._load().to(self.device).eval()
        return self._model

    def logits(self, ids: np.ndarray) -> torch.Tensor:
        """A full teacher-forced pass without a cache: a ``scoring.LogitsFn``."""
        return self.model(input_ids=torch.from_numpy(ids).to(self.device), use_cache=False).logits[
            ..., : self.vocab_size
        ]

    def forward(self, ids: torch.Tensor, cache: Any = None) -> tuple[torch.Tensor, Any]:
        """Logits of ``ids`` ``(batch, new)`` after the tokens held by ``cache`` (none when
        ``None``), and the cache extended by them.

        ``cache`` is extended in place: pass ``expand(cache, batch)`` to keep a prefix's cache
        for other continuations. Rows are right-padded or not at all (no attention mask: a causal
        model never lets a real token see a pad after it).
        """
        out = self.model(input_ids=ids.to(self.device), cache=cache, use_cache=True)
        return out.logits[..., : self.vocab_size], out.cache

    @staticmethod
    def expand(cache: Any, batch: int) -> Any:
        """A copy of a one-row ``cache`` repeated over ``batch`` rows (the original untouched)."""
        expanded = copy.deepcopy(cache)
        expanded.batch_repeat_interleave(batch)
        return expanded
