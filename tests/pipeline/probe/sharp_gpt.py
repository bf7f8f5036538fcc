"""A random 2-layer taggant GPT (megatron-core, grouped-query attention) with sharpened logits:
greedy paths differ by prompt and candidates' NLLs spread, so neither a decoding nor a rank is
decided by rounding. For the tests that compare its megatron logits with its Llama form."""

from __future__ import annotations

import torch


def sharp_gpt(vocab_size: int, seed: int):
    """``(model, config)``: the GPT in eval mode and its ``ModelConfig``."""
    from taggant.pipeline.train.model import ModelConfig, build_model, init_parallel

    init_parallel()
    config = ModelConfig(
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        ffn_hidden_size=176,
        vocab_size=vocab_size,
        seq_length=64,
        num_query_groups=2,
    )
    model = build_model(config, seed=seed).eval()
    with torch.no_grad():
        model.embedding.word_embeddings.weight.mul_(30)
    return model, config
