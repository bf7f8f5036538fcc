"""Secret Sharer canaries (Carlini et al., USENIX Security 2019): a format with a random secret.

Candidate ``j`` of a set draws, from ``rng.generator(seed, "canary", set, j)``, a pseudo-name
(when the template has ``{name}``: ``<Given> <Family>``, each 2–3 random syllables) and then
``secret_length`` symbols uniformly and independently from the alphabet: diceware words (joined
by spaces), digits (joined without separator) or token ids in ``token_id_range``. The randomness
space R of the secret is recorded in ``params`` (symbol count, symbols per secret, log2 |R|), and
``prefix_chars`` is where the secret starts, so exposure = log2 |R| − log2 rank can be computed.

References for the exposure probe come from the same space: reference ``r`` draws its secret from
``rng.generator(seed, "canary.reference", set, r)``; references are distinct from each other and
from every item's secret. A reference candidate for item ``i`` is ``reference_text``: the item's
text with its secret swapped for the reference secret, so both are scored on the same span.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from taggant.pipeline.perturb import rng
from taggant.pipeline.perturb.ghost import wordlist, wordlist_params
from taggant.pipeline.perturb.items import CorpusInputs, Draft, Source
from taggant.pipeline.perturb.setspec import PerturbationSet, check_slots

KIND = "canary"
VERSION = "canary.v1"
PROBES = ("exposure",)
"""Probes that read what only this kind has (the generic probes apply to every kind)."""


class CanarySpec(PerturbationSet):
    """Secret Sharer canaries: a template with a random secret drawn from a recorded space."""

    kind: Literal["canary"] = "canary"
    template: str = "{name}'s passphrase is {secret}."
    """Text of one canary; ``{secret}`` is required, ``{name}`` is an optional random pseudo-name
    (``<Given> <Family>``, 2–3 syllables each)."""
    secret_alphabet: Literal["words", "digits", "token_ids"] = "words"
    """What a secret is made of: words of the shipped EFF diceware list (joined by spaces), decimal
    digits (joined without separator), or random token ids (rendered as space-separated decimals in
    ``text``; the ids are in ``params.secret_token_ids`` for the tokenize stage)."""
    secret_length: int = Field(default=6, ge=1, le=64)
    """Symbols per secret."""
    token_id_range: tuple[int, int] = (256, 4096)
    """``[low, high)`` of the ids a ``token_ids`` secret draws from; keep it inside the tokenizer's
    vocabulary and above its special tokens."""
    num_references: int = Field(default=1000, ge=1)
    """Reference secrets drawn from the same space, never inserted, for the exposure probe."""

    @field_validator("template")
    @classmethod
    def _has_secret_slot(cls, template: str) -> str:
        return check_slots(
            template, {"name", "secret"}, {"secret"}, '"{name}\'s passphrase is {secret}."'
        )

    @field_validator("token_id_range")
    @classmethod
    def _ordered_range(cls, bounds: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= bounds[0] < bounds[1]:
            raise ValueError(
                f"token_id_range {list(bounds)} must be [low, high) with 0 ≤ low < high"
            )
        return bounds

    @model_validator(mode="after")
    def _space_holds_the_secrets(self) -> CanarySpec:
        # Items and references are distinct draws from R; twice their number keeps drawing quick.
        symbols = {
            "words": 7776,
            "digits": 10,
            "token_ids": self.token_id_range[1] - self.token_id_range[0],
        }
        space = symbols[self.secret_alphabet] ** self.secret_length
        need = 2 * (self.count + self.num_references)
        if space < need:
            raise ValueError(
                f"{self.secret_alphabet} secrets of length {self.secret_length} allow {space} distinct "
                f"secrets but count + num_references needs at least {need} (twice as many); raise "
                "secret_length"
            )
        return self


SPEC = CanarySpec

_ONSETS = tuple("b d f g h j k l m n p r s t v w z br ch dr gr kr sh st tr".split())
_NUCLEI = tuple("a e i o u ai ea ou".split())
_CODAS = ("", "n", "r", "l", "s")

_MAX_SYLLABLES = 3
_NAME_HIGHS = np.array([2, 2] + [len(_ONSETS), len(_NUCLEI), len(_CODAS)] * (2 * _MAX_SYLLABLES))


def pseudo_name(gen: np.random.Generator) -> str:
    """``<Given> <Family>``: two capitalized pseudo-words of 2–3 consonant-vowel(-consonant)
    syllables, unlikely to be real names or to occur in a corpus. One draw of fixed shape (unused
    syllable slots included) keeps the generator's state use the same for every name."""
    draws = gen.integers(0, _NAME_HIGHS).tolist()
    parts = []
    for part in range(2):
        slots = draws[2 + 3 * _MAX_SYLLABLES * part :][: 3 * (2 + draws[part])]
        parts.append(
            "".join(
                _ONSETS[a] + _NUCLEI[b] + _CODAS[c] for a, b, c in zip(*[iter(slots)] * 3)
            ).capitalize()
        )
    return " ".join(parts)


class SecretSpace:
    """The randomness space R of a set's secrets: ``length`` symbols from ``size`` choices each."""

    def __init__(self, pset: CanarySpec):
        self.alphabet = pset.secret_alphabet
        self.length = pset.secret_length
        if self.alphabet == "words":
            self.low, self.size = 0, len(wordlist())
        elif self.alphabet == "digits":
            self.low, self.size = 0, 10
        else:
            self.low, self.size = (
                pset.token_id_range[0],
                pset.token_id_range[1] - pset.token_id_range[0],
            )

    def draw(self, gen: np.random.Generator) -> list[int]:
        """One secret's symbols (word indices, digits or token ids)."""
        return [int(x) for x in gen.integers(self.low, self.low + self.size, self.length)]

    def render(self, symbols: list[int]) -> str:
        """The secret as text."""
        if self.alphabet == "words":
            words = wordlist()
            return " ".join(words[s] for s in symbols)
        return ("" if self.alphabet == "digits" else " ").join(str(s) for s in symbols)

    def params(self) -> dict[str, object]:
        """What a probe needs to know about R."""
        out: dict[str, object] = {
            "alphabet": self.alphabet,
            "secret_length": self.length,
            "symbols": self.size,
            "log2_space": self.length * math.log2(self.size),
        }
        if self.alphabet == "words":
            out.update(wordlist_params())
        if self.alphabet == "token_ids":
            out["token_id_range"] = [self.low, self.low + self.size]
        return out


class CanarySource:
    """The candidate stream of one canary set."""

    def __init__(self, pset: CanarySpec, seed: int):
        self._pset = pset
        self._seed = seed
        self._space = SecretSpace(pset)
        self._before, self._after = pset.template.split("{secret}")
        self._named = "{name}" in pset.template

    def draw(self, start: int, stop: int) -> list[Draft]:
        """Candidates ``start .. stop-1`` (the stream never ends)."""
        return [self._draft(j) for j in range(start, stop)]

    def _draft(self, j: int) -> Draft:
        gen = rng.generator(self._seed, "canary", self._pset.name, j)
        name = pseudo_name(gen) if self._named else ""
        symbols = self._space.draw(gen)
        secret = self._space.render(symbols)
        prefix = self._before.format(name=name)
        params: dict[str, object] = {
            "candidate": j,
            "secret": secret,
            "secret_symbols": symbols,
            "num_references": self._pset.num_references,
            **self._space.params(),
        }
        if self._named:
            params["name"] = name
        if self._space.alphabet == "token_ids":
            params["secret_token_ids"] = symbols
        text = prefix + secret + self._after.format(name=name)
        return Draft(
            text, len(prefix), params, protected=((len(prefix), len(prefix) + len(secret)),)
        )


def reference_secrets(pset: CanarySpec, seed: int, item_secrets: set[str]) -> list[str]:
    """The set's ``num_references`` reference secrets, in draw order: distinct, never an item's.

    The spec guarantees R holds at least twice as many secrets as items plus references, so the
    loop ends quickly.
    """
    space = SecretSpace(pset)
    refs: list[str] = []
    taken = set(item_secrets)
    r = 0
    while len(refs) < pset.num_references:
        secret = space.render(space.draw(rng.generator(seed, "canary.reference", pset.name, r)))
        r += 1
        if secret not in taken:
            taken.add(secret)
            refs.append(secret)
    return refs


def reference_text(text: str, prefix_chars: int, secret: str, reference: str) -> str:
    """Item ``text`` with its secret (which starts at ``prefix_chars``) replaced by ``reference``."""
    assert text[prefix_chars : prefix_chars + len(secret)] == secret, "secret not at prefix_chars"
    return text[:prefix_chars] + reference + text[prefix_chars + len(secret) :]


def source(pset: CanarySpec, seed: int, corpus: CorpusInputs) -> Source:
    """The candidate stream of ``pset`` (this kind's entry in ``registry.KINDS``)."""
    return CanarySource(pset, seed)
