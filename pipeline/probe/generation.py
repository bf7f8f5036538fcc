"""Real greedy decoding with a KV cache, and the metrics of a generated text against a reference.

The teacher-forced probes (``scoring``) decide whether greedy decoding reproduces a span exactly;
the metrics of ``text_metrics`` look past the first mistake (Hubble's ``*_verbatim_p*`` and
``yago_hubble_gen`` tasks), so they need the generated text itself.

``Greedy`` decodes with a ``cached.CachedLM`` (any Hugging Face causal LM: ``hf.load`` for a local
model, a checkpoint of taggant's own through its exact Llama mapping, ``native.Checkpoint.lm``):
the prompt in one pass that fills the KV cache, then one token a step from the cache. The next token
is the argmax of the float32 logits (ties to the lowest id, as ``transformers``'
``generate(do_sample=False)``). Decoding stops before the first of

* the end-of-document token (``eod_id``; taggant's EOD, or the HF model's EOS);
* a token whose text holds a newline, when the caller asks (``stop_at_newline``);
* (after) the token whose addition makes the decoded text hold ``stop_text``, when given: the
  caller cuts the text there (a biography value ends at ``". "``), so later tokens are not paid for;
* ``max_new_tokens`` tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from taggant.pipeline.probe.cached import CachedLM

Decode = Callable[[Sequence[int]], str]
"""Token ids → text (the tokenizer's decode, without special tokens)."""


@dataclass(frozen=True)
class Generation:
    """What one greedy decoding produced.

    Attributes:
        ids: the generated tokens, the stopping token excluded.
        text: their decoded text.
        stop: why decoding stopped: ``eod``, ``newline``, ``stop_text`` or ``max_tokens``.
    """

    ids: list[int]
    text: str
    stop: Literal["eod", "newline", "stop_text", "max_tokens"]


class Greedy:
    """Greedy decoding with a KV cache.

    Args:
        lm: the model (built on the first generation, unless a scorer built it before).
        decode: the tokenizer's decode.
        eod_id: the token that ends a document, or ``None``.
    """

    def __init__(self, lm: CachedLM, decode: Decode, eod_id: int | None):
        self.lm, self.decode, self.eod_id = lm, decode, eod_id
        self._newlines: frozenset[int] | None = None

    def newline_ids(self) -> frozenset[int]:
        """Tokens whose decoded text holds a newline (found once over the vocabulary)."""
        if self._newlines is None:
            self._newlines = frozenset(
                i for i in range(self.lm.vocab_size) if "\n" in self.decode([i])
            )
        return self._newlines

    def __call__(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        stop_at_newline: bool = False,
        stop_text: str | None = None,
    ) -> Generation:
        """Greedily continue ``prompt_ids`` (at least one token) under the stop rule above."""
        if not prompt_ids:
            raise ValueError("greedy decoding needs at least one prompt token")
        newlines = self.newline_ids() if stop_at_newline else frozenset()
        ids: list[int] = []
        stop: Literal["eod", "newline", "stop_text", "max_tokens"] = "max_tokens"
        with torch.inference_mode():
            logits, cache = self.lm.forward(torch.tensor([list(prompt_ids)], dtype=torch.long))
            for _ in range(max_new_tokens):
                token = int(torch.argmax(logits[0, -1].float()))
                if token == self.eod_id:
                    stop = "eod"
                    break
                if token in newlines:
                    stop = "newline"
                    break
                ids.append(token)
                if stop_text is not None and stop_text in self.decode(ids):
                    stop = "stop_text"
                    break
                if len(ids) == max_new_tokens:
                    break
                logits, cache = self.lm.forward(torch.tensor([[token]]), cache)
        return Generation(ids, self.decode(ids), stop)
