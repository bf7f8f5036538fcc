"""Log-probs of groups of token sequences that share a prefix, the prefix computed once per group.

The candidate texts of one item (a canary's secret and its ~1000 references, a question's
choices, the choices of one view) differ only after a common prompt. A group's shared prefix is
the longest common token prefix of its sequences (the BOS included). It is run once, filling a KV
cache; each continuation runs from that cache, in batches of right-padded rows with the cache
repeated over the batch. A scored token is predicted from the prefix pass's logits where its
context lies inside the prefix (the first token after the prefix, and any scored token inside
it), else from its continuation's. With a KV cache (``cached.CachedLM``) a canary's references
cost their secret tokens only; ``Recompute`` runs the same groups through a model without one.

Every sequence of a group is scored by the same computation (one model form, one prefix pass), so
comparisons inside a group (exposure's rank of the secret among its references, the most likely
choice) are not decided by the float differences between model forms or between cached and full
passes; values equal a full teacher-forced pass of the same model up to float rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from taggant.pipeline.probe.scoring import LOGPROB, LogitsFn, Progress, stats_at, token_stats


class PrefixLM(Protocol):
    """A causal LM that continues a cache: ``cached.CachedLM`` or ``Recompute``."""

    def forward(self, ids: torch.Tensor, cache: Any = None) -> tuple[torch.Tensor, Any]:
        """Logits ``(batch, new, vocab)`` of ``ids`` after the tokens held by ``cache`` (none
        when ``None``), and the cache extended by them."""
        ...

    def expand(self, cache: Any, batch: int) -> Any:
        """A one-row cache repeated over ``batch`` rows, the original kept."""
        ...


class Recompute:
    """A ``LogitsFn`` (a model without a KV cache, e.g. a megatron checkpoint's) as a
    ``PrefixLM``: its cache is the tokens so far, recomputed with every continuation, so it
    saves nothing and equals its full passes."""

    def __init__(self, logits_fn: LogitsFn):
        self.logits_fn = logits_fn

    def forward(self, ids: torch.Tensor, cache: Any = None) -> tuple[torch.Tensor, Any]:
        tokens = ids if cache is None else torch.cat([cache, ids], dim=1)
        return self.logits_fn(tokens.numpy())[:, tokens.shape[1] - ids.shape[1] :], tokens

    def expand(self, cache: Any, batch: int) -> Any:
        return cache.expand(batch, -1)


def score_groups(
    lm: PrefixLM,
    groups: Sequence[Sequence[np.ndarray]],
    starts: Sequence[Sequence[int]],
    batch_size: int,
    chunk_rows: int | None = None,
    progress: Progress | None = None,
) -> list[list[np.ndarray]]:
    """Log-probs (float32, nats) of tokens ``groups[g][k][starts[g][k]:]`` of every sequence.

    Args:
        lm: the model.
        groups: groups of integer token sequences (1-D); a group may have any size.
        starts: first scored token of each sequence, ``1 ≤ start < len(sequence)``.
        batch_size: continuations per forward pass.
        chunk_rows: scored positions per softmax chunk (``scoring.stats_at``).
        progress: told the number of sequences scored, after each batch and each group.

    Returns:
        per group, per sequence, the log-probs of its scored tokens, in input order.

    Raises:
        ValueError: a start out of range, or groups and starts of different shapes.
    """
    if [len(g) for g in groups] != [len(s) for s in starts]:
        raise ValueError("groups and starts differ in shape")
    out, done = [], 0
    with torch.inference_mode():
        for sequences, firsts in zip(groups, starts):
            out.append(_score_group(lm, sequences, firsts, batch_size, chunk_rows, progress, done))
            done += len(sequences)
    return out


def _score_group(
    lm: PrefixLM,
    sequences: Sequence[np.ndarray],
    starts: Sequence[int],
    batch_size: int,
    chunk_rows: int | None,
    progress: Progress | None,
    done: int,
) -> list[np.ndarray]:
    for seq, start in zip(sequences, starts):
        if not 1 <= start < len(seq):
            raise ValueError(f"start {start} outside [1, {len(seq)}): a scored token needs context")
    if not sequences:
        return []
    shared = _common_prefix_length(sequences)
    # Position p predicts token p + 1: predictions at p < shared read the prefix pass.
    predictions = [np.arange(start - 1, len(seq) - 1) for seq, start in zip(sequences, starts)]
    out = [np.empty(len(p), dtype=np.float32) for p in predictions]
    cache = None
    if shared:
        head = torch.from_numpy(np.asarray(sequences[0][:shared], dtype=np.int64))[None]
        prefix_logits, cache = lm.forward(head)
        inside = [p < shared for p in predictions]
        rows = np.concatenate([np.full(m.sum(), 0) for m in inside])
        positions = np.concatenate([p[m] for p, m in zip(predictions, inside)])
        targets = np.concatenate(
            [seq[p[m] + 1] for seq, p, m in zip(sequences, predictions, inside)]
        )
        if len(rows):
            _scatter(out, inside, _logprob(prefix_logits, rows, positions, targets, chunk_rows))
    # Continuation k feeds tokens shared .. len - 2: the last token is predicted, never fed.
    tails = [k for k, seq in enumerate(sequences) if len(seq) - 1 > shared]
    tails.sort(key=lambda k: -len(sequences[k]))
    for first in range(0, len(tails), batch_size):
        batch = tails[first : first + batch_size]
        width = len(sequences[batch[0]]) - 1 - shared
        ids = np.zeros((len(batch), width), dtype=np.int64)
        for row, k in enumerate(batch):
            ids[row, : len(sequences[k]) - 1 - shared] = sequences[k][shared:-1]
        logits, _ = lm.forward(
            torch.from_numpy(ids), None if cache is None else lm.expand(cache, len(batch))
        )
        after = [predictions[k] >= shared for k in batch]
        rows = np.concatenate([np.full(m.sum(), row) for row, m in enumerate(after)])
        positions = np.concatenate([predictions[k][m] - shared for k, m in zip(batch, after)])
        targets = np.concatenate(
            [sequences[k][predictions[k][m] + 1] for k, m in zip(batch, after)]
        )
        values = _logprob(logits, rows, positions, targets, chunk_rows)
        _scatter([out[k] for k in batch], after, values)
        if progress is not None and first + batch_size < len(tails):
            progress(done + first + len(batch))
    if progress is not None:
        progress(done + len(sequences))
    return out


def _logprob(
    logits: torch.Tensor,
    rows: np.ndarray,
    positions: np.ndarray,
    targets: np.ndarray,
    chunk_rows: int | None,
) -> np.ndarray:
    stats = functools.partial(token_stats, fields=LOGPROB)
    return stats_at(logits, rows, positions, targets.astype(np.int64), stats, chunk_rows)["logprob"]


def _scatter(out: list[np.ndarray], masks: list[np.ndarray], values: np.ndarray) -> None:
    """Write ``values``, in order, into the entries of each ``out[i]`` selected by ``masks[i]``."""
    offset = 0
    for arr, mask in zip(out, masks):
        n = int(mask.sum())
        arr[mask] = values[offset : offset + n]
        offset += n


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64))
    return int(differ[0]) if len(differ) else n


def _common_prefix_length(sequences: Sequence[np.ndarray]) -> int:
    """Length of the longest token prefix common to every sequence."""
    return min(common_prefix(sequences[0], seq) for seq in sequences)
