"""The megatron ↔ Hugging Face Llama mapping in one process (world size 1, gloo): a megatron model's
tensors survive the round trip through HF names; an HF Llama imported into megatron-core gives
the HF model's logits (a random one with grouped-query attention, another RoPE base and epsilon,
a vocabulary that is not a multiple of 128; and the real SmolLM2-135M); models taggant's GPT
cannot express are refused with the reason."""

import json

import numpy as np
import pytest
import torch

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.train import hf
from taggant.pipeline.train.model import ModelConfig, build_model, init_parallel

LOGITS_ATOL = 1e-4
"""Largest |HF − megatron| logit allowed (float32, CPU). Measured: 0 (bitwise equal) for the
random models here and for the 30 layers of SmolLM2-135M."""

GQA = ModelConfig(
    num_layers=2,
    hidden_size=64,
    num_attention_heads=4,
    ffn_hidden_size=176,
    vocab_size=500,
    seq_length=32,
    num_query_groups=2,
    rotary_base=50000.0,
    layernorm_epsilon=1e-6,
)


def random_llama(config: ModelConfig, folder, seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` of ``config`` saved in ``folder``; norm weights
    are perturbed too, so that a misplaced one shows in the logits."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(hf.llama_config(config, eod_id=0)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(
                torch.randn_like(param) * (0.3 if "norm" in name else 0.05) + ("norm" in name)
            )
    model.save_pretrained(folder)
    return model


def megatron_logits(model, ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(ids, None, None)[..., :vocab_size]


def test_megatron_tensors_survive_the_round_trip_through_hf_names():
    init_parallel()
    model = build_model(GQA, seed=3)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    tensors = hf.to_hf(state, GQA)
    assert tensors["model.embed_tokens.weight"].shape == (500, 64)  # padding rows dropped
    assert tensors["model.layers.1.self_attn.k_proj.weight"].shape == (2 * 16, 64)
    back = hf.from_hf(tensors, GQA)
    assert back.keys() == state.keys()
    for name, value in state.items():
        expected = value.clone()
        if name == "embedding.word_embeddings.weight":
            expected[500:] = 0  # padding comes back as zeros
        assert torch.equal(back[name], expected), name


def test_an_imported_llama_gives_the_hf_logits(tmp_path):
    reference = random_llama(GQA, tmp_path / "hf")
    record = hf.import_hf(
        str(tmp_path / "hf"), str(tmp_path / "init"), vocab_size=500, seq_length=32
    )
    config = hf.init_model_config(str(tmp_path / "init"))
    assert config == GQA and record["model"] == GQA.to_dict()
    model = build_model(config, seed=1)  # other random weights, then the imported ones
    hf.load_init(model, str(tmp_path / "init"))
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 500, (2, 32)))
    with torch.no_grad():
        expected = reference(input_ids=ids, use_cache=False).logits
    got = megatron_logits(model, ids, 500)
    assert (got - expected).abs().max().item() < LOGITS_ATOL


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"tie_word_embeddings": False}, "not tied"),
        ({"attention_bias": True}, "biases"),
        ({"model_type": "mistral"}, "'mistral' model"),
        (
            {
                "rope_parameters": {
                    "rope_type": "llama3",
                    "rope_theta": 5e5,
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192,
                }
            },
            "RoPE scaling",
        ),
    ],
)
def test_a_model_taggant_cannot_express_is_refused(tmp_path, change, reason):
    config = hf.llama_config(GQA, eod_id=0).to_dict()
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=reason):
        hf.model_config_from_hf(str(tmp_path), vocab_size=500, seq_length=32)


@pytest.mark.slow
def test_smollm2_imported_into_megatron_gives_its_own_logits(smollm2_hf, tmp_path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tests.corpus import pinned_docs

    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf, local_files_only=True)
    texts = [d["text"] for d in pinned_docs("copyright")[:2]]
    ids = torch.tensor([tokenizer(t)["input_ids"][:64] for t in texts])
    hf.import_hf(str(smollm2_hf), str(tmp_path / "init"), vocab_size=len(tokenizer), seq_length=64)
    config = hf.init_model_config(str(tmp_path / "init"))
    assert (config.num_layers, config.num_query_groups, config.rotary_base) == (30, 3, 1e5)
    model = build_model(config, seed=0)
    hf.load_init(model, str(tmp_path / "init"))
    got = megatron_logits(model, ids, len(tokenizer))
    reference = LlamaForCausalLM.from_pretrained(
        smollm2_hf, dtype=torch.float32, local_files_only=True
    ).eval()
    with torch.no_grad():
        expected = reference(input_ids=ids, use_cache=False).logits
    # 30 layers through two implementations of the same float32 ops: measured bitwise equal
    # (max |diff| 0 with logits up to 39); the tolerance allows other CPUs' kernels.
    assert (got - expected).abs().max().item() < LOGITS_ATOL
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
