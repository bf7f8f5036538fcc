"""LexiMark-style lexical watermarks (German et al., arXiv 2506.14474), offline and exact.

A watermark item is a corpus document in which the ``words_per_doc`` highest-surprisal words are
replaced, at every occurrence, by a rarer synonym. Choices made here, and why:

* **Surprisal without a model.** The plan stage runs before any tokenizer or model exists, so the
  surprisal of a word is its corpus unigram surprisal: −log2 of its add-one frequency among the
  lower-cased words of the deduplicated corpus (``Unigrams``). LexiMark uses wordfreq frequencies,
  the same idea from a different corpus.
* **Synonyms offline.** ``pipeline/resources/wordnet_synonyms.tsv.gz``: for each WordNet 3.0
  lemma, the lemmas of its most frequent sense (single lowercase words). LexiMark's default adds a
  BERT similarity filter on WordNet lemmas; the first-sense restriction is our offline stand-in.
* **One consistent mapping.** A word's synonym is a function of the word alone (the synonym of
  highest corpus surprisal, ties by spelling), so every set and every document maps a word the
  same way. A document skips a word whose synonym already occurs in it, or whose synonym another
  chosen word of the document already takes, so substitutions stay invertible.
* **Which words.** ASCII-letter words of ≥ 3 letters standing alone (not glued to letters, digits,
  ``_``, ``-`` or apostrophes), not on the stop list, that occur at least once in lower case in the
  document (a cheap proper-noun filter, where LexiMark skips spaCy entities), and that have a
  synonym of higher surprisal.
* **Every occurrence, layout intact** (unlike the reference code, research §9.4): each whole-word
  occurrence of a chosen word, in any case, is replaced with the synonym in the occurrence's case
  pattern (``lower``, ``Title``, ``UPPER``); every other character of the document is copied.

Which documents: the eligible ones (``min_doc_words`` ≤ words ≤ ``max_doc_words``, with at least
``words_per_doc`` replaceable words) ordered by ``rng.priorities(seed, "watermark", set, doc_ids)``;
candidate ``j`` is the ``j``-th of them whose rewrite succeeds. Chosen documents leave the base
corpus; members are inserted, controls never are.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import heapq
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from pydantic import Field, model_validator

from taggant.pipeline.perturb import rng
from taggant.pipeline.perturb.items import CorpusInputs, DocRef, Draft, Source
from taggant.pipeline.perturb.setspec import PerturbationSet

KIND = "watermark"
VERSION = "watermark.v1"
PROBES = ("watermark",)
"""Probes that read what only this kind has (the generic probes apply to every kind)."""
SYNONYMS = "wordnet-3.0-first-sense"
_SYNONYMS_FILE = "wordnet_synonyms.tsv.gz"


class WatermarkSpec(PerturbationSet):
    """LexiMark-style watermarks: corpus documents with their rarest-to-predict words swapped.

    ``count`` documents are chosen at random among the eligible ones; they leave the base corpus and
    their rewritten versions are the items (members are inserted, controls never are)."""

    kind: Literal["watermark"] = "watermark"
    words_per_doc: int = Field(default=5, ge=1, le=100)
    """Highest-surprisal words replaced by a rarer synonym in each chosen document (every
    occurrence of each); surprisal is −log2 of the word's add-one frequency in the deduplicated
    corpus."""
    min_doc_words: int = Field(default=50, ge=10)
    """Documents with fewer words are never chosen."""
    max_doc_words: int = Field(default=200, ge=10)
    """Documents with more words are never chosen: an item must fit in one training sample."""

    @model_validator(mode="after")
    def _word_bounds(self) -> WatermarkSpec:
        if self.max_doc_words < self.min_doc_words:
            raise ValueError(
                f"max_doc_words {self.max_doc_words} is below min_doc_words {self.min_doc_words}"
            )
        return self


SPEC = WatermarkSpec

WORD = re.compile(r"(?<![\w'’-])[A-Za-z]+(?![\w'’-])")
"""A word that may be replaced: ASCII letters not glued to other word characters."""

MIN_WORD_LETTERS = 3

STOP_WORDS = frozenset(
    "a about above after again against all also am an and any are as at be because been before being "
    "below between both but by can could did do does doing down during each few for from further had "
    "has have having he her here hers him his how if in into is it its just me more most my no nor not "
    "now of off on once only or other our ours out over own same she should so some such than that the "
    "their theirs them then there these they this those through to too under until up very was we were "
    "what when where which while who whom why will with would you your yours".split()
)
"""Function words never replaced (LexiMark skips a similar list)."""


@functools.cache
def synonyms() -> dict[str, tuple[str, ...]]:
    """Word → its synonyms, from the shipped WordNet-derived table."""
    raw = resources.files("taggant.pipeline.resources").joinpath(_SYNONYMS_FILE).read_bytes()
    table = {}
    for line in gzip.decompress(raw).decode("ascii").splitlines():
        word, _, syns = line.partition("\t")
        table[word] = tuple(syns.split())
    return table


@functools.cache
def synonyms_sha256() -> str:
    """SHA-256 of the synonym table file, recorded in item params."""
    return hashlib.sha256(
        resources.files("taggant.pipeline.resources").joinpath(_SYNONYMS_FILE).read_bytes()
    ).hexdigest()


def count_words(texts: Iterable[str]) -> Counter[str]:
    """Lower-cased ``WORD`` counts of ``texts`` (shard counts add up to the corpus counts)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(m.group().lower() for m in WORD.finditer(text))
    return counts


class Unigrams:
    """Corpus unigram counts and the add-one surprisal they give."""

    def __init__(self, counts: Counter[str]):
        self.counts = dict(counts)
        self.total = sum(self.counts.values())
        self._best: dict[str, str | None] = {}

    def surprisal_bits(self, word: str) -> float:
        """−log2 of the add-one frequency of ``word`` (one extra type for unseen words)."""
        return math.log2((self.total + len(self.counts) + 1) / (self.counts.get(word, 0) + 1))

    def synonym(self, word: str) -> str | None:
        """The synonym of ``word`` with the highest surprisal if above the word's own, else None."""
        if word not in self._best:
            options = synonyms().get(word, ())
            best = max(options, key=lambda s: (self.surprisal_bits(s), s), default=None)
            self._best[word] = (
                best if best and self.surprisal_bits(best) > self.surprisal_bits(word) else None
            )
        return self._best[word]


def replaceable_words(text: str) -> set[str]:
    """Lower-case words of ``text`` that could be replaced (see the module docstring)."""
    found = {m.group() for m in WORD.finditer(text)}
    table = synonyms()
    return {
        w
        for w in found
        if w.islower() and len(w) >= MIN_WORD_LETTERS and w not in STOP_WORDS and w in table
    }


def is_eligible(text: str, pset: WatermarkSpec) -> bool:
    """Whether a document may be chosen: its length and enough replaceable words."""
    return (
        pset.min_doc_words <= len(text.split()) <= pset.max_doc_words
        and len(replaceable_words(text)) >= pset.words_per_doc
    )


def case_like(occurrence: str, synonym: str) -> str:
    if len(occurrence) > 1 and occurrence.isupper():
        return synonym.upper()
    if occurrence[0].isupper():
        return synonym[0].upper() + synonym[1:]
    return synonym


@dataclass(frozen=True)
class Rewrite:
    """A watermarked document: its text, the mapping applied and where each replacement sits."""

    text: str
    mapping: dict[str, str]
    spans: list[tuple[int, int]]
    occurrences: dict[str, int]


def rewrite(text: str, words_per_doc: int, unigrams: Unigrams) -> Rewrite | None:
    """Swap the ``words_per_doc`` highest-surprisal replaceable words of ``text`` for their
    synonyms at every occurrence; ``None`` when fewer than that many can be swapped."""
    present = {m.group().lower() for m in WORD.finditer(text)}
    ranked = sorted(replaceable_words(text), key=lambda w: (-unigrams.surprisal_bits(w), w))
    mapping: dict[str, str] = {}
    for word in ranked:
        synonym = unigrams.synonym(word)
        if synonym is None or synonym in present or synonym in mapping.values():
            continue
        mapping[word] = synonym
        if len(mapping) == words_per_doc:
            break
    if len(mapping) < words_per_doc:
        return None
    pieces, spans, occurrences, pos, out_len = [], [], Counter(), 0, 0
    for m in WORD.finditer(text):
        word = m.group()
        synonym = mapping.get(word.lower())
        if synonym is None:
            continue
        pieces.append(text[pos : m.start()])
        out_len += m.start() - pos
        replacement = case_like(word, synonym)
        pieces.append(replacement)
        spans.append((out_len, out_len + len(replacement)))
        out_len += len(replacement)
        occurrences[word.lower()] += 1
        pos = m.end()
    pieces.append(text[pos:])
    return Rewrite("".join(pieces), mapping, spans, dict(occurrences))


@dataclass(frozen=True)
class DocCandidate:
    """An eligible corpus document, with its random priority for one set (lower is chosen first)."""

    priority: int
    doc_id: str
    ref: DocRef
    text: str

    @property
    def order(self) -> tuple[int, str, int, int]:
        return self.priority, self.doc_id, self.ref.shard, self.ref.row


def scan_shard(
    shard: int, doc_ids: list[str], texts: list[str], sets: list[WatermarkSpec], seed: int
) -> tuple[Counter[str], list[list[DocCandidate]]]:
    """One shard's word counts and, per watermark set, its eligible documents of lowest priority.

    A set keeps ``candidate_limit`` of them, plus those of the sets before it, so that the global
    lists merged from shards are the same whatever the sharding (see ``merge_candidates``).
    """
    counts = count_words(texts)
    kept = []
    for i, pset in enumerate(sets):
        limit = sum(candidate_limit(p) for p in sets[: i + 1])
        prio = rng.priorities(seed, "watermark", pset.name, doc_ids)
        eligible = (
            DocCandidate(int(prio[row]), doc_ids[row], DocRef(shard, row), texts[row])
            for row in range(len(texts))
            if is_eligible(texts[row], pset)
        )
        kept.append(heapq.nsmallest(limit, eligible, key=lambda c: c.order))
    return counts, kept


def candidate_limit(pset: WatermarkSpec) -> int:
    """Documents a set may draw from: its count, room for resampling, and a margin."""
    return 2 * pset.count + 64


def merge_candidates(
    per_shard: list[list[list[DocCandidate]]], sets: list[WatermarkSpec]
) -> list[list[DocCandidate]]:
    """Each set's candidate documents in priority order; a document goes to the first set (in spec
    order) whose list holds it, so no document is watermarked twice."""
    taken: set[DocRef] = set()
    merged = []
    for i, pset in enumerate(sets):
        pool = sorted(
            (c for shard in per_shard for c in shard[i] if c.ref not in taken),
            key=lambda c: c.order,
        )
        chosen = pool[: candidate_limit(pset)]
        taken.update(c.ref for c in chosen)
        merged.append(chosen)
    return merged


class WatermarkSource:
    """The candidate stream of one watermark set: its documents in priority order, rewritten; a
    document whose rewrite fails is skipped. The stream ends with the set's candidate documents."""

    def __init__(self, pset: WatermarkSpec, docs: list[DocCandidate], unigrams: Unigrams):
        self._pset = pset
        self._docs = docs
        self._unigrams = unigrams
        self._drafts: list[Draft] = []
        self._next_doc = 0

    def draw(self, start: int, stop: int) -> list[Draft]:
        """Candidates ``start .. stop-1``; fewer where the documents run out."""
        while len(self._drafts) < stop and self._next_doc < len(self._docs):
            doc = self._docs[self._next_doc]
            self._next_doc += 1
            done = rewrite(doc.text, self._pset.words_per_doc, self._unigrams)
            if done is not None:
                self._drafts.append(self._draft(len(self._drafts), doc, done))
        return self._drafts[start:stop]

    def _draft(self, j: int, doc: DocCandidate, done: Rewrite) -> Draft:
        substitutions = [
            {
                "word": word,
                "synonym": synonym,
                "occurrences": done.occurrences[word],
                "word_surprisal_bits": self._unigrams.surprisal_bits(word),
                "synonym_surprisal_bits": self._unigrams.surprisal_bits(synonym),
            }
            for word, synonym in done.mapping.items()
        ]
        params = {
            "candidate": j,
            "source_doc_id": doc.doc_id,
            "substitutions": substitutions,
            "spans": [list(s) for s in done.spans],
            "surprisal": "corpus-unigram-add-one-log2",
            "synonyms": SYNONYMS,
            "synonyms_sha256": synonyms_sha256(),
        }
        return Draft(
            done.text,
            0,
            params,
            source_text=doc.text,
            source=doc.ref,
            protected=tuple(done.spans),
        )


def source(pset: WatermarkSpec, seed: int, corpus: CorpusInputs) -> Source:
    """The candidate stream of ``pset`` (this kind's entry in ``registry.KINDS``)."""
    assert corpus.unigrams is not None, "watermark sets need the corpus scan"
    return WatermarkSource(pset, corpus.watermark_docs[pset.name], corpus.unigrams)
