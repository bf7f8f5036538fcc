"""Initial-weight seeds per pipeline stage: every stage of a model starts from its own weights.

The stages are built in this process (world size 1) by setting megatron's pipeline rank and size
overrides (``parallel_state.set_pipeline_model_parallel_rank``/``_world_size``, the hooks megatron's
own unit tests use), so a PP=4 model's stages are real ``GPTModel`` stages without four ranks.
"""

from __future__ import annotations

import pytest
import torch
from megatron.core import parallel_state, tensor_parallel

from taggant.pipeline.train.model import (
    ModelConfig,
    build_model,
    init_parallel,
    seed_init_rngs,
    stage_seed,
)

CUDA_TRACKER_OFFSET = 2718
"""What ``model_parallel_cuda_manual_seed`` adds to its seed for the tensor-parallel RNG stream
(megatron/core/tensor_parallel/random.py), plus the tensor-parallel rank."""

CONFIG = ModelConfig(
    num_layers=4, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64, vocab_size=100,
    seq_length=16,
)  # fmt: skip


@pytest.fixture
def one_process():
    init_parallel()
    yield
    parallel_state.set_pipeline_model_parallel_rank(None)
    parallel_state.set_pipeline_model_parallel_world_size(None)


def build_stage(pipeline_rank: int, pipeline_size: int, seed: int) -> torch.nn.Module:
    parallel_state.set_pipeline_model_parallel_world_size(pipeline_size)
    parallel_state.set_pipeline_model_parallel_rank(pipeline_rank)
    return build_model(CONFIG, seed)


def layer_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """The stage's transformer-layer weights in build order (the embedding and head excluded)."""
    return [p.detach().clone() for n, p in model.named_parameters() if ".layers." in n]


def test_stage_zero_keeps_the_run_seed_and_later_stages_get_their_own():
    assert [stage_seed(s, 0) for s in range(5)] == list(range(5))
    seeds = {(s, r): stage_seed(s, r) for s in range(300) for r in range(16)}
    # No two (run seed, stage) pairs share a seed: seed + 100 * pp_rank would map (0, 1) and
    # (100, 0) together.
    assert len(set(seeds.values())) == len(seeds)
    # Room for megatron's offsets within torch's 64-bit seeds.
    assert max(seeds.values()) + CUDA_TRACKER_OFFSET + 64 < 2**64
    assert stage_seed(7, 3) == stage_seed(7, 3)


def test_every_stage_starts_from_its_own_layers(one_process):
    # Stages 0-2 of 4; the last stage's tied output head is copied from the first stage by an
    # all-reduce between them, which needs the two ranks. Stages 1 and 2 are the ones that started
    # bit-identical when every stage had the run's seed: neither builds an embedding first.
    stages = [build_stage(rank, 4, seed=0) for rank in range(3)]
    weights = [layer_weights(stage) for stage in stages]
    assert all(len(w) == len(weights[0]) > 0 for w in weights)  # one layer each, same shapes
    for a in range(3):
        for b in range(a + 1, 3):
            for x, y in zip(weights[a], weights[b], strict=True):
                if x.std() > 0:  # norms start at ones everywhere
                    assert not torch.equal(x, y), (a, b)
    # Still a function of the seed alone: the same stage rebuilt is bit-identical.
    again = layer_weights(build_stage(2, 4, seed=0))
    assert all(torch.equal(x, y) for x, y in zip(weights[2], again, strict=True))


def test_a_single_stage_model_keeps_the_run_seeds_weights(one_process):
    # PP = 1 draws from the run's seed, as before stages had their own: checkpoints and tests of
    # single-stage runs are unchanged.
    torch.manual_seed(5)
    expected = torch.empty(CONFIG.padded_vocab_size, CONFIG.hidden_size).normal_(0, 0.02)
    model = build_stage(0, 1, seed=5)
    embedding = model.embedding.word_embeddings.weight.detach()
    assert torch.equal(embedding, expected)


def test_the_cuda_tracker_gets_the_stage_seed(monkeypatch):
    # megatron's CUDA tracker needs a GPU; record what it is asked for instead. It then derives
    # stage seed + 2718 + tp_rank per tensor-parallel rank (random.py), distinct per stage.
    asked: list[int] = []
    monkeypatch.setattr(tensor_parallel, "model_parallel_cuda_manual_seed", asked.append)
    returned = [seed_init_rngs(11, rank, cuda=True) for rank in range(4)]
    assert asked == returned == [stage_seed(11, rank) for rank in range(4)]
    tracker_seeds = {s + CUDA_TRACKER_OFFSET + tp for s in asked for tp in range(8)}
    assert len(tracker_seeds) == 4 * 8
    assert seed_init_rngs(11, 0, cuda=False) == 11 and len(asked) == 4
