"""Finding items that occur naturally in the corpus, with word n-gram sets (no quadratic scan).

Each candidate item gets a *signature*: the hashes of its word n-grams (``sketches.ngrams``,
version ``ngrams.v1``: NFKC, lower-case, whitespace words) with ``n`` = its set's
``decontamination.ngram_words``, or all its words as one n-gram when it is shorter. A watermark
item's signature keeps only the n-grams absent from its source document: those that carry a
substitution, which is what must not occur naturally (the unwatermarked text is the corpus's own).
A candidate with per-copy variants owns the n-grams of its text and of every variant: each is
inserted (variants) or probed (the text).

A corpus document matches a candidate when it shares a signature n-gram with it: it contains the
whole item (short items), or at least n consecutive words of it. ``find_matches`` computes the
documents' n-gram sets shard by shard, a batch of documents at a time, and looks the hashes up in
the sorted signature table; its cost is linear in corpus size.

``select_items`` ties it to the candidate pool: each round's new candidates are checked against
every shard; a set that resamples drops those found; a set that removes documents keeps them and
the documents go (``Selection.removals``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from taggant.pipeline.perturb.items import Candidate, DocRef, ItemPool, Source
from taggant.pipeline.spec import PerturbationSpec
from taggant.sketches import hashing, ngrams

VERSION = "decontaminate.v2"
"""v2: a candidate's variants are checked with its text."""
BATCH_BYTES = 16 << 20
"""Text per batch of documents whose n-gram sets are held in memory at once."""


@dataclass(frozen=True)
class Signatures:
    """Candidates' signature n-grams, grouped by n.

    Attributes:
        by_n: n → (hashes, owners): uint64 hashes sorted ascending and the int64 candidate id that
            owns each (a hash shared by several candidates appears once per owner).
    """

    by_n: dict[int, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def build(
        cls, owners: list[int], texts: list[str], ngram_words: list[int], sources: list[str | None]
    ) -> Signatures:
        """Signatures of candidates ``owners[k]`` with text ``texts[k]``, configured n
        ``ngram_words[k]`` and source document ``sources[k]`` (watermarks) or ``None``."""
        n_of = np.array(
            [min(n, max(len(hashing.words(t)), 1)) for n, t in zip(ngram_words, texts)],
            dtype=np.int64,
        )
        owner_of = np.asarray(owners, dtype=np.int64)
        by_n = {}
        for n in np.unique(n_of).tolist():
            rows = np.flatnonzero(n_of == n)
            sets = ngrams.ngram_sets([texts[k] for k in rows], n)
            values, owner_ids = sets.values, np.repeat(owner_of[rows], sets.sizes())
            keep = np.ones(len(values), dtype=bool)
            for i, k in enumerate(rows.tolist()):
                if sources[k] is not None:
                    own = slice(sets.offsets[i], sets.offsets[i + 1])
                    keep[own] = ~np.isin(values[own], ngrams.ngram_sets([sources[k]], n).doc(0))
            values, owner_ids = values[keep], owner_ids[keep]
            order = np.lexsort((owner_ids, values))
            by_n[n] = (values[order], owner_ids[order])
        return cls(by_n)


def find_matches(signatures: Signatures, texts: list[str]) -> np.ndarray:
    """Every ``(row, candidate)`` pair where document ``texts[row]`` shares a signature n-gram
    with the candidate; int64 (k, 2), sorted, without repeats."""
    found = [np.empty((0, 2), dtype=np.int64)]
    for lo, hi in _batches(texts):
        for n, (hashes, owners) in signatures.by_n.items():
            if len(hashes) == 0:
                continue
            sets = ngrams.ngram_sets(texts[lo:hi], n)
            left = np.searchsorted(hashes, sets.values, side="left")
            right = np.searchsorted(hashes, sets.values, side="right")
            hit = right > left
            if not hit.any():
                continue
            rows = np.repeat(np.arange(lo, hi, dtype=np.int64), sets.sizes())[hit]
            left, right = left[hit], right[hit]
            # Expand each hit into one pair per owner of its hash.
            per_hit = right - left
            starts = np.repeat(left - np.cumsum(per_hit) + per_hit, per_hit)
            owner_at = starts + np.arange(per_hit.sum())
            found.append(np.stack([np.repeat(rows, per_hit), owners[owner_at]], axis=1))
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def _batches(texts: list[str]) -> list[tuple[int, int]]:
    """Consecutive ``[lo, hi)`` row ranges of about ``BATCH_BYTES`` of text each."""
    out, lo, size = [], 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= BATCH_BYTES:
            out.append((lo, i + 1))
            lo, size = i + 1, 0
    if lo < len(texts):
        out.append((lo, len(texts)))
    return out


MatchShards = Callable[[Signatures], list[np.ndarray]]
"""Runs ``find_matches`` on every corpus shard (in order) and returns each shard's pairs."""

REASON_OVERLAP = "item_overlap"
REASON_WATERMARK = "watermark_source"


@dataclass
class Selection:
    """The items chosen for every set, and what the corpus checks found.

    Attributes:
        pool: the candidate pool (every candidate drawn, with its status).
        sets: the perturbation sets, in spec order.
        matches: int64 (k, 3) ``(shard, row, candidate id)``: every document found to contain a
            checked candidate.
    """

    pool: ItemPool
    sets: Sequence[PerturbationSpec]
    matches: np.ndarray

    @property
    def items(self) -> list[list[Candidate]]:
        """Each set's items, in item order."""
        return self.pool.items()

    def removals(self) -> dict[DocRef, str]:
        """Documents that leave the base corpus, with their reason: the sources of watermark items
        (``watermark_source``) and documents containing an item of a ``remove_docs`` set
        (``item_overlap``)."""
        removing = {
            c.global_id
            for pset, items in zip(self.sets, self.items)
            if pset.decontamination.on_collision == "remove_docs"
            for c in items
        }
        out = {
            DocRef(int(shard), int(row)): REASON_OVERLAP
            for shard, row, cand in self.matches.tolist()
            if cand in removing
        }
        for items in self.items:
            for c in items:
                if c.draft.source is not None:
                    out[c.draft.source] = REASON_WATERMARK
        return dict(sorted(out.items(), key=lambda kv: (kv[0].shard, kv[0].row)))

    def stats(self) -> dict[str, dict[str, int]]:
        """Per set: candidates drawn, rejected as duplicates or as found in the corpus, and
        documents its items made leave the corpus."""
        matched_docs: dict[int, set[tuple[int, int]]] = {}
        for shard, row, cand in self.matches.tolist():
            matched_docs.setdefault(cand, set()).add((shard, row))
        out = {}
        for set_index, (pset, items) in enumerate(zip(self.sets, self.items)):
            drawn = [c for c in self.pool.candidates if c.set_index == set_index]
            docs = set().union(*(matched_docs.get(c.global_id, set()) for c in items))
            out[pset.name] = {
                "candidates": len(drawn),
                "duplicates": sum(c.duplicate for c in drawn),
                "found_in_corpus": sum(c.contaminated for c in drawn),
                "items_found_in_corpus": sum(c.contaminated for c in items),
                "docs_containing_items": len(docs),
            }
        return out


def select_items(
    sets: Sequence[PerturbationSpec], sources: Sequence[Source], match_shards: MatchShards
) -> Selection:
    """Draw candidates until every set has ``count`` distinct items, checking each round's new
    candidates against the corpus with ``match_shards`` (one pass over the shards per round)."""
    pool = ItemPool(
        [
            (pset.name, pset.count, pset.decontamination.on_collision == "resample", source)
            for pset, source in zip(sets, sources)
        ]
    )
    found = [np.empty((0, 3), dtype=np.int64)]
    while ids := pool.draw_round():
        texts = [
            (i, text, pool.candidates[i].draft)
            for i in ids
            for text in (pool.candidates[i].draft.text, *pool.candidates[i].draft.variants)
        ]
        signatures = Signatures.build(
            [i for i, _, _ in texts],
            [text for _, text, _ in texts],
            [sets[pool.candidates[i].set_index].decontamination.ngram_words for i, _, _ in texts],
            [d.source_text for _, _, d in texts],
        )
        for shard, pairs in enumerate(match_shards(signatures)):
            found.append(np.column_stack([np.full(len(pairs), shard, dtype=np.int64), pairs]))
        matches = np.concatenate(found)
        pool.mark_checked(ids, set(matches[:, 2].tolist()))
    return Selection(pool, sets, np.concatenate(found))
