"""The teacher-forced pass: per-token statistics of token sequences under a causal LM.

One forward pass per sequence gives everything the probes need (research/probes.md §0): the
log-probability of each true token, whether it is the argmax (greedy decoding reproduces a suffix
iff every suffix token is, given the true context: the teacher-forcing equivalence), the top-1 −
top-2 logit margin (to flag near-ties that bf16 or KV-cache decoding could flip), the mean and
standard deviation of log p(v) under the model's own next-token distribution (Min-K%++), and the
log-probability under top-k sampling (Hayes et al.'s p_z for that sampler).

Sequences are padded on the right, so a causal model never lets a real token see a pad token and
no attention mask is needed; padded positions are never read. The statistics are computed over at
most ``chunk_rows`` positions at a time, in float32, only at the positions that are scored, and
only the ``fields`` a caller asks for: each probe declares what it reads (``registry.Probe.reads``),
and the vocabulary-wide ones (Min-K%++'s mean and std, the top-k sampler) cost more than the
forward pass's own log-softmax. A field that was not asked for is ``None``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from taggant.pipeline.probe.token_scores import FIELDS, TOP_K, TokenScores

LogitsFn = Callable[[np.ndarray], torch.Tensor]
"""A causal LM: token ids, int64 ``(batch, seq)`` → logits ``(batch, seq, vocab)`` (any float
dtype, any device), where ``logits[b, t]`` predicts token ``t + 1`` from tokens ``0..t``."""

CHUNK_ELEMENTS = 1 << 24
"""Default bound on the logits one softmax chunk holds (64 MiB in float32)."""


def token_stats(
    logits: torch.Tensor,
    targets: torch.Tensor,
    fields: frozenset[str] = frozenset(FIELDS),
    top_k: int = TOP_K,
) -> dict[str, torch.Tensor]:
    """The ``TokenScores`` fields in ``fields`` (``logprob`` always) for rows of logits.

    ``logprob`` is computed the same way whatever else is asked, so a value does not depend on
    which other fields were computed beside it.

    Args:
        logits: ``(rows, vocab)``, any float dtype; computed on in float32.
        targets: ``(rows,)`` int64, the true next token of each row.
        fields: the fields to compute.
        top_k: k of the top-k sampler (capped at the vocabulary size).

    Returns:
        field name → ``(rows,)`` tensor on the logits' device.
    """
    x = logits.float()
    # log_softmax, not logit − logsumexp: the same value whatever else is computed, and faster
    logp = torch.log_softmax(x, dim=-1)
    out = {"logprob": logp.gather(1, targets[:, None])[:, 0]}
    if "correct" in fields:
        out["correct"] = x.argmax(-1) == targets
    if "margin" in fields or "topk_logprob" in fields:
        k = min(max(top_k, 2) if "topk_logprob" in fields else 2, x.shape[-1])
        top = torch.topk(x, k=k, dim=-1).values
        out["margin"] = top[:, 0] - top[:, 1]
        if "topk_logprob" in fields:
            true_logit = x.gather(1, targets[:, None])[:, 0]
            kept = top[:, : min(top_k, x.shape[-1])]
            in_top = true_logit >= kept[:, -1]
            lse_k = torch.logsumexp(kept, dim=-1)
            out["topk_logprob"] = torch.where(in_top, true_logit - lse_k, -torch.inf)
    if "mean" in fields or "std" in fields:
        p = logp.exp()
        mean = torch.linalg.vecdot(p, logp)
        out["mean"] = mean
        # Variance around the mean rather than E[(log p)²] − μ²: no cancellation in float32.
        # In place: logp is not read again.
        out["std"] = torch.linalg.vecdot(p, logp.sub_(mean[:, None]).square_()).sqrt()
    return {f: v for f, v in out.items() if f == "logprob" or f in fields}


Progress = Callable[[int], None]
"""Called after each batch with the number of sequences scored so far."""


def score(
    logits_fn: LogitsFn,
    sequences: Sequence[np.ndarray],
    starts: Sequence[int],
    batch_size: int,
    chunk_rows: int | None = None,
    progress: Progress | None = None,
    fields: frozenset[str] = frozenset(FIELDS),
) -> list[TokenScores]:
    """Score tokens ``sequences[i][starts[i]:]`` of every sequence in teacher-forced passes,
    computing the ``TokenScores`` ``fields`` only (the others ``None``).

    Sequences are grouped by length (longest first) into batches of ``batch_size``, so padding is
    small; results do not depend on the batch size or the order of ``sequences`` beyond the model's
    own floating-point batch effects.

    Args:
        logits_fn: the model (see ``LogitsFn``); called under ``torch.inference_mode``.
        sequences: integer token ids, 1-D, any lengths.
        starts: first scored token of each sequence, ``1 ≤ start < len(sequence)`` (token 0 has no
            context to be predicted from).
        batch_size: sequences per forward pass.
        chunk_rows: scored positions per softmax chunk; default ``CHUNK_ELEMENTS // vocab``.
        progress: told the sequences scored after each batch.

    Returns:
        ``TokenScores`` of ``len(seq) - start`` tokens per sequence, in input order.

    Raises:
        ValueError: starts out of range, or logits of the wrong shape.
    """
    stats = functools.partial(token_stats, fields=frozenset(fields))
    columns = _score(logits_fn, sequences, starts, batch_size, chunk_rows, stats, progress)
    return [TokenScores(**c) for c in columns]


LOGPROB = frozenset({"logprob"})
"""The fields of candidate texts: all that probes read of them, a fraction of the cost of the
others."""


Stats = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
"""``token_stats`` with its fields chosen: rows of logits and their targets → named columns."""


def _score(
    logits_fn: LogitsFn,
    sequences: Sequence[np.ndarray],
    starts: Sequence[int],
    batch_size: int,
    chunk_rows: int | None,
    stats: Stats,
    progress: Progress | None,
) -> list[dict[str, np.ndarray]]:
    """The columns ``stats`` computes, per sequence, in input order (see ``score``)."""
    if len(sequences) != len(starts):
        raise ValueError(f"{len(sequences)} sequences but {len(starts)} starts")
    for seq, start in zip(sequences, starts):
        if not 1 <= start < len(seq):
            raise ValueError(f"start {start} outside [1, {len(seq)}): a scored token needs context")
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    out: dict[int, dict[str, np.ndarray]] = {}
    for first in range(0, len(order), batch_size):
        batch = order[first : first + batch_size]
        scored = _score_batch(
            logits_fn,
            [sequences[i] for i in batch],
            [starts[i] for i in batch],
            chunk_rows,
            stats,
        )
        out.update(zip(batch, scored))
        if progress is not None:
            progress(len(out))
    return [out[i] for i in range(len(sequences))]


def _score_batch(
    logits_fn: LogitsFn,
    sequences: list[np.ndarray],
    starts: list[int],
    chunk_rows: int | None,
    stats: Stats,
) -> list[dict[str, np.ndarray]]:
    ids = np.zeros((len(sequences), max(len(s) for s in sequences)), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
    counts = [len(s) - st for s, st in zip(sequences, starts)]
    # (row, position) of every scored prediction: position t predicts token t + 1.
    rows = np.repeat(np.arange(len(sequences)), counts)
    positions = np.concatenate([np.arange(st - 1, len(s) - 1) for s, st in zip(sequences, starts)])
    with torch.inference_mode():
        logits = logits_fn(ids)
        if tuple(logits.shape[:2]) != ids.shape:
            raise ValueError(
                f"the logits function returned shape {tuple(logits.shape)} for ids "
                f"of shape {ids.shape}; it must return (batch, seq, vocab)"
            )
        columns = stats_at(logits, rows, positions, ids[rows, positions + 1], stats, chunk_rows)
    bounds = np.cumsum([0, *counts])
    return [{f: col[a:b] for f, col in columns.items()} for a, b in itertools.pairwise(bounds)]


def stats_at(
    logits: torch.Tensor,
    rows: np.ndarray,
    positions: np.ndarray,
    targets: np.ndarray,
    stats: Stats,
    chunk_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """``stats`` of the predictions ``logits[rows[i], positions[i]]`` of ``targets[i]``, from
    logits ``(batch, seq, vocab)``, over at most ``chunk_rows`` predictions at a time (default
    ``CHUNK_ELEMENTS // vocab``): one column per field, as numpy arrays in the order given."""
    rows_t = torch.from_numpy(rows).to(logits.device)
    positions_t = torch.from_numpy(positions).to(logits.device)
    targets_t = torch.from_numpy(targets).to(logits.device)
    step = chunk_rows or max(1, CHUNK_ELEMENTS // logits.shape[-1])
    parts = [
        stats(logits[rows_t[c : c + step], positions_t[c : c + step]], targets_t[c : c + step])
        for c in range(0, len(rows), step)
    ]
    return {f: torch.cat([part[f] for part in parts]).cpu().numpy() for f in parts[0]}
