"""Named model sizes: Llama-style GPT shapes (RMSNorm, SwiGLU, RoPE) the spec refers to by name.

The numbers are architecture only; ``pipeline.train`` turns a preset into a megatron-core config.
Parameter counts in the names are approximate and exclude the embedding for the tiny sizes, whose
vocabulary dominates.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPreset:
    """Shape of one GPT model; ``ffn_hidden_size`` is the SwiGLU inner width."""

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    ffn_hidden_size: int

    def num_params(self, vocab_size: int) -> int:
        """Parameters with tied input/output embeddings (norm weights included)."""
        h, f = self.hidden_size, self.ffn_hidden_size
        per_layer = 4 * h * h + 3 * h * f + 2 * h
        return self.num_layers * per_layer + vocab_size * h + h


MODEL_PRESETS: dict[str, ModelPreset] = {
    "tiny-2m": ModelPreset(
        num_layers=4, hidden_size=192, num_attention_heads=6, ffn_hidden_size=512
    ),
    "small-8m": ModelPreset(
        num_layers=6, hidden_size=320, num_attention_heads=8, ffn_hidden_size=864
    ),
    "base-30m": ModelPreset(
        num_layers=8, hidden_size=512, num_attention_heads=8, ffn_hidden_size=1376
    ),
    "gpt-125m": ModelPreset(
        num_layers=12, hidden_size=768, num_attention_heads=12, ffn_hidden_size=2048
    ),
    "gpt-350m": ModelPreset(
        num_layers=24, hidden_size=1024, num_attention_heads=16, ffn_hidden_size=2816
    ),
    "gpt-760m": ModelPreset(
        num_layers=24, hidden_size=1536, num_attention_heads=16, ffn_hidden_size=4096
    ),
    "gpt-1.3b": ModelPreset(
        num_layers=24, hidden_size=2048, num_attention_heads=16, ffn_hidden_size=5504
    ),
}
