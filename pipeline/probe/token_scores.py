"""What the teacher-forced pass gives each scored token (``scoring`` computes it): numpy only, so
the probe registry, and what hashes probe settings, load without torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOP_K = 40
"""k of the top-k sampler whose p_z is reported (Hayes et al. 2024 sample with top-k = 40)."""


@dataclass(frozen=True)
class TokenScores:
    """Per-token results for the scored tokens of one sequence, all arrays of length ``T``.

    Entry ``i`` describes one scored token ``x``, predicted from every token before it.

    Attributes:
        logprob: float32, ``log p(x | context)`` in nats.
        correct: bool, ``x`` is the argmax of the logits (ties go to the lowest id, as in
            ``torch.argmax`` greedy decoding).
        margin: float32, top-1 minus top-2 logit (≥ 0).
        mean: float32, ``μ = Σ_v p(v) log p(v)`` over the vocabulary (minus the entropy).
        std: float32, ``σ = sqrt(Σ_v p(v) (log p(v) − μ)²)``.
        topk_logprob: float32, ``log`` of the probability of ``x`` under top-``TOP_K`` sampling
            (renormalized over the k most likely tokens); ``-inf`` when ``x`` is not among them.
    """

    logprob: np.ndarray
    correct: np.ndarray | None = None
    margin: np.ndarray | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    topk_logprob: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.logprob)

    def __getitem__(self, index: slice) -> TokenScores:
        """The scores of a contiguous range of the tokens."""
        return TokenScores(*(None if (v := getattr(self, f)) is None else v[index] for f in FIELDS))


FIELDS = ("logprob", "correct", "margin", "mean", "std", "topk_logprob")
"""Every ``TokenScores`` field; ``logprob`` is always computed."""
