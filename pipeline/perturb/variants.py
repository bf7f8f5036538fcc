"""Per-copy variants made by a generator (``VariantsSpec``): seeded word-level synonym rewrites.

Variant ``v`` of candidate ``j`` of a set is drawn from ``rng.generator(seed, "variants", set,
"<j>:<v>:<attempt>")``: each replaceable word occurrence in the rewritable region is swapped, with
probability ``rate``, for one of its synonyms chosen uniformly, in the occurrence's case pattern
(``lower``, ``Title``, ``UPPER``). Every other character is copied. The attempt counter moves on
when a draw repeats the text or an earlier variant, so variants are distinct.

* **Rewritable region**: the target ``text[prefix_chars:]`` outside the draft's ``protected``
  spans (secrets, passphrases, answers, declared fields, watermark substitutions). So the prompt a
  probe conditions on and what a kind-specific probe reads are the same in every copy.
* **Replaceable word**: an ASCII-letter word of ≥ 3 letters standing alone (``watermark.WORD``),
  not a stop word, with an entry in the shipped WordNet first-sense table
  (``pipeline/resources/wordnet_synonyms.tsv.gz``, WordNet 3.0 licence in that folder's README).
  First-sense synonyms are an offline stand-in for Hubble's paraphrase models: a variant keeps
  the item's layout and most of its words, so it is a near copy, not a paraphrase.

The variants depend only on the seed, the set, ``j``, the draft and the table, never on which
worker draws them or in which order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from taggant.pipeline.errors import DataError
from taggant.pipeline.perturb import rng
from taggant.pipeline.perturb.items import Draft, Source
from taggant.pipeline.perturb.setspec import PerturbationSet, VariantsSpec
from taggant.pipeline.perturb.watermark import (
    MIN_WORD_LETTERS,
    STOP_WORDS,
    SYNONYMS,
    WORD,
    case_like,
    synonyms,
    synonyms_sha256,
)

VERSION = "variants.synonyms.v1"
MAX_ATTEMPTS = 64
"""Draws per variant before a candidate is declared unable to give ``count`` distinct variants."""


def with_variants(source: Source, pset: PerturbationSet, seed: int) -> Source:
    """``source`` with generated variants on every draft when ``pset.variants`` asks for them."""
    if pset.variants is None:
        return source
    return SynonymVariants(source, pset.name, pset.variants, seed)


class SynonymVariants:
    """A candidate stream whose drafts carry ``spec.count`` synonym rewrites each."""

    def __init__(self, inner: Source, set_name: str, spec: VariantsSpec, seed: int):
        self._inner = inner
        self._set = set_name
        self._spec = spec
        self._seed = seed

    def draw(self, start: int, stop: int) -> list[Draft]:
        """Candidates ``start .. stop-1`` of the inner stream, each with its variants.

        Raises:
            DataError: a candidate has no replaceable word in its rewritable region, or too few
                to give ``count`` distinct variants.
        """
        return [
            self._with_variants(start + i, draft)
            for i, draft in enumerate(self._inner.draw(start, stop))
        ]

    def _with_variants(self, j: int, draft: Draft) -> Draft:
        slots = replaceable_occurrences(draft)
        if not slots:
            raise DataError(
                f"set {self._set!r}: candidate {j} ({draft.text[:80]!r}) has no word outside its "
                "prompt and protected spans that the synonym table can replace; drop `variants` "
                "from this set, or give it text with replaceable words after the prompt"
            )
        made: list[str] = []
        for v in range(self._spec.count):
            for attempt in range(MAX_ATTEMPTS):
                gen = rng.generator(self._seed, "variants", self._set, f"{j}:{v}:{attempt}")
                text = rewrite(draft.text, slots, self._spec.rate, gen)
                if text != draft.text and text not in made:
                    made.append(text)
                    break
            else:
                raise DataError(
                    f"set {self._set!r}: candidate {j} ({draft.text[:80]!r}) gave only {len(made)} "
                    f"distinct variants in {MAX_ATTEMPTS} draws ({len(slots)} replaceable words); "
                    "lower variants.count or raise variants.rate"
                )
        params = {
            **draft.params,
            "variants": {
                "version": VERSION,
                "generator": self._spec.generator,
                "count": self._spec.count,
                "rate": self._spec.rate,
                "synonyms": SYNONYMS,
                "synonyms_sha256": synonyms_sha256(),
            },
        }
        return dataclasses.replace(draft, params=params, variants=tuple(made))


def replaceable_occurrences(draft: Draft) -> list[tuple[int, int, tuple[str, ...]]]:
    """``(start, end, synonyms)`` of each word occurrence a variant may swap, in text order."""
    table = synonyms()
    out = []
    for m in WORD.finditer(draft.text):
        start, end = m.span()
        word = m.group().lower()
        if (
            start < draft.prefix_chars
            or any(start < hi and lo < end for lo, hi in draft.protected)
            or len(word) < MIN_WORD_LETTERS
            or word in STOP_WORDS
            or not table.get(word)
        ):
            continue
        out.append((start, end, table[word]))
    return out


def rewrite(
    text: str, slots: list[tuple[int, int, tuple[str, ...]]], rate: float, gen: np.random.Generator
) -> str:
    """``text`` with each slot swapped, with probability ``rate``, for a uniform synonym.

    One draw of fixed shape per slot (swap?, which synonym) keeps the generator's use independent
    of the outcomes."""
    swap = gen.random(len(slots)) < rate
    picks = gen.random(len(slots))
    pieces, pos = [], 0
    for (start, end, options), do, u in zip(slots, swap, picks):
        if not do:
            continue
        pieces += [text[pos:start], case_like(text[start:end], options[int(u * len(options))])]
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)
