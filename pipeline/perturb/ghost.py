"""Ghost sentences (Zhao et al., arXiv 2403.15740): passphrases of random diceware words.

Candidate ``j`` of a set draws ``num_words`` indices uniformly and independently (with
replacement, the diceware assumption behind the last-k test's null |W|^-k) into the shipped EFF
large wordlist (7,776 words) from ``rng.generator(seed, "ghost", set, j)``, joins the words with
single spaces and puts the passphrase into the carrier sentence. ``prefix_chars`` is where the
passphrase starts; ``params`` records the words, their character spans in ``text`` (for last-k
prompts) and the wordlist's name, size and SHA-256 (for the p-value and perplexity tests).
"""

from __future__ import annotations

import functools
import hashlib
import math
from importlib import resources
from typing import Literal

from pydantic import Field, field_validator

from taggant.pipeline.perturb import rng
from taggant.pipeline.perturb.items import CorpusInputs, Draft, Source
from taggant.pipeline.perturb.setspec import PerturbationSet, check_slots

KIND = "ghost"
VERSION = "ghost.v1"
PROBES = ("ghost_last_k",)
"""Probes that read what only this kind has (the generic probes apply to every kind)."""
WORDLIST = "eff_large"
_WORDLIST_FILE = "eff_large_wordlist.txt"


class GhostSpec(PerturbationSet):
    """Ghost sentences: passphrases of random wordlist words, optionally in a carrier sentence."""

    kind: Literal["ghost"] = "ghost"
    num_words: int = Field(default=10, ge=2, le=64)
    """Words per passphrase, drawn uniformly and independently (with replacement) from the shipped
    EFF diceware list of 7,776 words: log2(7776) ≈ 12.9 bits per word."""
    carrier: str = "{passphrase}"
    """Sentence wrapping the passphrase; must contain ``{passphrase}`` once."""

    @field_validator("carrier")
    @classmethod
    def _has_passphrase_slot(cls, carrier: str) -> str:
        return check_slots(
            carrier, {"passphrase"}, {"passphrase"}, '"My code words are {passphrase}."'
        )


SPEC = GhostSpec


@functools.cache
def wordlist() -> tuple[str, ...]:
    """The EFF large diceware wordlist (7,776 words, ``<dice>\\t<word>`` lines), in file order."""
    text = (
        resources.files("taggant.pipeline.resources")
        .joinpath(_WORDLIST_FILE)
        .read_text(encoding="utf-8")
    )
    return tuple(line.split("\t")[1] for line in text.splitlines())


@functools.cache
def wordlist_sha256() -> str:
    """SHA-256 of the wordlist file's bytes: recorded so probes know exactly which list was used."""
    return hashlib.sha256(
        resources.files("taggant.pipeline.resources").joinpath(_WORDLIST_FILE).read_bytes()
    ).hexdigest()


def wordlist_params() -> dict[str, object]:
    """The wordlist's identity and size, as recorded in item params."""
    return {
        "wordlist": WORDLIST,
        "wordlist_size": len(wordlist()),
        "wordlist_sha256": wordlist_sha256(),
    }


class GhostSource:
    """The candidate stream of one ghost set."""

    def __init__(self, pset: GhostSpec, seed: int):
        self._pset = pset
        self._seed = seed
        self._before, self._after = pset.carrier.split("{passphrase}")

    def draw(self, start: int, stop: int) -> list[Draft]:
        """Candidates ``start .. stop-1`` (the stream never ends)."""
        return [self._draft(j) for j in range(start, stop)]

    def _draft(self, j: int) -> Draft:
        words = wordlist()
        picks = rng.generator(self._seed, "ghost", self._pset.name, j).integers(
            0, len(words), self._pset.num_words
        )
        chosen = [words[i] for i in picks]
        spans, pos = [], len(self._before)
        for word in chosen:
            spans.append([pos, pos + len(word)])
            pos += len(word) + 1
        params = {
            "candidate": j,
            "words": chosen,
            "word_spans": spans,
            "num_words": self._pset.num_words,
            "log2_space": self._pset.num_words * math.log2(len(words)),
            **wordlist_params(),
        }
        text = self._before + " ".join(chosen) + self._after
        return Draft(text, len(self._before), params, protected=((len(self._before), pos - 1),))


def source(pset: GhostSpec, seed: int, corpus: CorpusInputs) -> Source:
    """The candidate stream of ``pset`` (this kind's entry in ``registry.KINDS``)."""
    return GhostSource(pset, seed)
