"""The teacher-forced pass: hand-computed statistics, chunking and batching invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from taggant.pipeline.probe import scoring

LN2 = math.log(2)


def test_token_stats_match_a_hand_computed_row():
    # p = (4, 1, 1, 1, 1) / 8: log p = (−ln 2, −3 ln 2, ...), μ = −2 ln 2, σ = ln 2.
    logits = torch.log(torch.tensor([[4.0, 1, 1, 1, 1], [4.0, 1, 1, 1, 1]]))
    stats = scoring.token_stats(logits, torch.tensor([0, 3]))
    assert stats["logprob"].tolist() == pytest.approx([-LN2, -3 * LN2], abs=1e-6)
    assert stats["correct"].tolist() == [True, False]
    assert stats["margin"].tolist() == pytest.approx([math.log(4)] * 2, abs=1e-6)
    assert stats["mean"].tolist() == pytest.approx([-2 * LN2] * 2, abs=1e-6)
    assert stats["std"].tolist() == pytest.approx([LN2] * 2, abs=1e-6)


def test_topk_logprob_renormalizes_over_the_k_most_likely():
    # p ∝ (6, 3, 1, 1, 1); under top-2 sampling token 1 has 3 / 9 and token 2 cannot be drawn.
    logits = torch.log(torch.tensor([[6.0, 3, 1, 1, 1]] * 2))
    stats = scoring.token_stats(logits, torch.tensor([1, 2]), top_k=2)
    assert stats["topk_logprob"][0].item() == pytest.approx(math.log(1 / 3), abs=1e-6)
    assert stats["topk_logprob"][1].item() == -math.inf


def _random_logits(vocab: int):
    table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0))
    return lambda ids: table[torch.from_numpy(ids)] * 3.0


def test_chunked_softmax_equals_full_log_softmax():
    vocab = 50
    logits_fn = _random_logits(vocab)
    rng = np.random.default_rng(1)
    sequences = [rng.integers(0, vocab, n) for n in (11, 4, 9)]
    starts = [1, 2, 5]
    expected = []
    for seq, start in zip(sequences, starts):
        logp = torch.log_softmax(logits_fn(seq[None])[0].double(), -1)[start - 1 : len(seq) - 1]
        p = logp.exp()
        mean = (p * logp).sum(-1)
        expected.append(
            (
                logp[torch.arange(len(logp)), torch.from_numpy(seq[start:])],
                mean,
                ((p * logp**2).sum(-1) - mean**2).sqrt(),
            )
        )
    for chunk_rows in (1, 7, None):
        got = scoring.score(logits_fn, sequences, starts, batch_size=2, chunk_rows=chunk_rows)
        for scores, (logprob, mean, std) in zip(got, expected):
            np.testing.assert_allclose(scores.logprob, logprob.numpy(), atol=1e-5)
            np.testing.assert_allclose(scores.mean, mean.numpy(), atol=1e-5)
            np.testing.assert_allclose(scores.std, std.numpy(), atol=1e-4)
        only = scoring.score(logits_fn, sequences, starts, 2, chunk_rows, fields=scoring.LOGPROB)
        for scores, (expected_logprob, _, _) in zip(only, expected):
            np.testing.assert_allclose(scores.logprob, expected_logprob.numpy(), atol=1e-5)
            assert scores.mean is None


def test_progress_is_told_the_sequences_scored_after_each_batch():
    told = []
    sequences = [np.arange(n) % 5 for n in (3, 6, 4, 2, 5)]
    scoring.score(_random_logits(5), sequences, [1] * 5, batch_size=2, progress=told.append)
    assert told == [2, 4, 5]


class _TinyCausalLM(torch.nn.Module):
    """A 2-layer causal transformer with random weights: a real model with real attention, so
    padding and batching effects would show."""

    def __init__(self, vocab: int = 13, width: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, width)
        self.position = torch.nn.Embedding(64, width)
        layer = torch.nn.TransformerEncoderLayer(width, 2, 32, dropout=0.0, batch_first=True)
        self.body = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, ids: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(ids)
        h = self.embed(x) + self.position(torch.arange(x.shape[1]))
        mask = torch.nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.head(self.body(h, mask=mask, is_causal=True))


def test_results_do_not_depend_on_batch_size_or_padding():
    model = _TinyCausalLM().eval()
    rng = np.random.default_rng(2)
    sequences = [rng.integers(0, 13, n) for n in (5, 17, 3, 9, 17, 2, 12, 8)]
    starts = [1, 4, 2, 1, 16, 1, 6, 3]
    one = scoring.score(model, sequences, starts, batch_size=1)
    seven = scoring.score(model, sequences, starts, batch_size=7)
    for a, b, seq, start in zip(one, seven, sequences, starts):
        assert len(a) == len(b) == len(seq) - start
        for field in ("logprob", "margin", "mean", "std", "topk_logprob"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), atol=1e-5)
        np.testing.assert_array_equal(a.correct, b.correct)


def test_a_wrong_logits_shape_is_reported():
    with pytest.raises(ValueError, match=r"\(batch, seq, vocab\)"):
        scoring.score(lambda ids: torch.zeros(ids.shape[0], 5), [np.arange(3)], [1], batch_size=1)
