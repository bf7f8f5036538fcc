"""Candidates and the choice of a set's items among them.

Every kind yields an ordered, deterministic stream of candidate items (``Source.draw``): candidate
``j`` of a set depends only on the experiment seed, the set and ``j``. A set's items are the first
``count`` *viable* candidates of its stream, where a candidate is not viable when

* its normalized text (``sketches.hashing.exact_hash``: case, compatibility forms and whitespace
  runs ignored) equals that of a candidate drawn before it, in this set or any other; or
* its set resamples on collision and the candidate occurs in the corpus (``decontaminate``).

``ItemPool`` draws candidates in rounds: a round draws what each set lacks, the caller checks the
new ones against the corpus and reports which matched; a resampling set that lost some draws again
in the next round. Because viability of
a candidate depends only on the candidates drawn before it and on the corpus, the items chosen do
not depend on how the corpus is sharded or on how many workers check it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from taggant.pipeline.errors import DataError

if TYPE_CHECKING:
    from taggant.pipeline.perturb.watermark import DocCandidate, Unigrams

MAX_ROUNDS = 16
"""Corpus passes after which a set still incomplete is reported instead of drawn further."""


@dataclass(frozen=True)
class DocRef:
    """A corpus document by position: shard index (sorted shard list) and row inside it."""

    shard: int
    row: int


@dataclass(frozen=True)
class Draft:
    """One candidate item.

    Attributes:
        text: the full text that is inserted.
        prefix_chars: ``text[:prefix_chars]`` is the prompt, the rest the target of probes.
        params: generator parameters and randomness space (JSON-able), stored in the manifest.
        source_text: the corpus document this item rewrites (watermarks), else ``None``. Only
            n-grams of ``text`` absent from it identify the item during decontamination.
        source: where that document is, so the plan stage can take it out of the base corpus.
        protected: ``[start, end)`` character spans of ``text`` that per-copy variants keep as
            they are (secrets, passphrases, declared fields, watermark substitutions); the prompt
            ``text[:prefix_chars]`` is always kept.
        variants: the texts inserted in place of ``text``, copy ``j`` taking ``variants[j mod n]``;
            empty: every copy is ``text``.
    """

    text: str
    prefix_chars: int
    params: dict[str, Any]
    source_text: str | None = None
    source: DocRef | None = None
    protected: tuple[tuple[int, int], ...] = ()
    variants: tuple[str, ...] = ()


@dataclass(frozen=True)
class CorpusInputs:
    """What generators that rewrite corpus documents need from the corpus scan.

    Attributes:
        watermark_docs: set name → its candidate documents in priority order.
        unigrams: corpus word counts (``None`` when no set needs them).
    """

    watermark_docs: dict[str, list[DocCandidate]] = field(default_factory=dict)
    unigrams: Unigrams | None = None


class Source(Protocol):
    """A set's candidate stream."""

    def draw(self, start: int, stop: int) -> list[Draft]:
        """Candidates ``start .. stop-1``; fewer (possibly none) where the stream ends."""


@dataclass
class Candidate:
    """A drawn candidate and what is known about it."""

    global_id: int
    set_index: int
    index: int
    draft: Draft
    duplicate: bool
    checked: bool = False
    contaminated: bool = False


@dataclass
class _SetState:
    name: str
    count: int
    resample: bool
    source: Source
    candidates: list[Candidate] = field(default_factory=list)
    exhausted: bool = False

    def viable(self) -> list[Candidate]:
        return [
            c for c in self.candidates if not c.duplicate and not (self.resample and c.contaminated)
        ]

    def complete(self) -> bool:
        first = self.viable()[: self.count]
        return len(first) == self.count and all(c.checked for c in first)


class ItemPool:
    """Draws candidates for every set and keeps their status until each set has its items.

    Args:
        sets: ``(name, count, resample, source)`` per set, in spec order (the order in which
            duplicates across sets are resolved: the earlier draw wins).
    """

    def __init__(self, sets: list[tuple[str, int, bool, Source]]):
        self._sets = [
            _SetState(name, count, resample, source) for name, count, resample, source in sets
        ]
        self._seen: set[bytes] = set()
        self._candidates: list[Candidate] = []
        self.rounds = 0

    @property
    def candidates(self) -> list[Candidate]:
        """Every candidate drawn so far; a candidate's position here is its global id."""
        return self._candidates

    def draw_round(self) -> list[int]:
        """Draw what every incomplete set needs; returns the global ids to check against the corpus
        (empty when every set is complete).

        Raises:
            DataError: a set's stream ended, or ``MAX_ROUNDS`` passes did not complete it.
        """
        if all(s.complete() for s in self._sets):
            return []
        if self.rounds == MAX_ROUNDS:
            late = [s.name for s in self._sets if not s.complete()]
            raise DataError(
                f"sets {late} still lack clean items after {MAX_ROUNDS} corpus passes: their "
                "candidates keep occurring in the corpus; set decontamination.on_collision: "
                "remove_docs or change the generator options"
            )
        self.rounds += 1
        start = len(self._candidates)
        for set_index, s in enumerate(self._sets):
            # Draw exactly the deficit: every viable candidate becomes an item, so no text is
            # held by a candidate that is never used (it would count as a duplicate elsewhere).
            while not s.exhausted and len(s.viable()) < s.count:
                deficit = s.count - len(s.viable())
                drafts = s.source.draw(len(s.candidates), len(s.candidates) + deficit)
                s.exhausted = len(drafts) < deficit
                for draft in drafts:
                    self._add(set_index, s, draft)
            if len(s.viable()) < s.count:
                raise DataError(
                    f"perturbation set {s.name!r} needs {s.count} distinct items that do not occur "
                    f"in the corpus but its generator offers only {len(s.candidates)} candidates, "
                    f"{len(s.viable())} of them usable; lower its `count`, or set "
                    "decontamination.on_collision: remove_docs"
                )
        return [
            c_id
            for c_id in range(start, len(self._candidates))
            if not self._candidates[c_id].duplicate
        ]

    def mark_checked(self, ids: list[int], contaminated: set[int]) -> None:
        """Record the corpus check of ``ids``: those in ``contaminated`` occur in some document."""
        for c_id in ids:
            c = self._candidates[c_id]
            c.checked = True
            c.contaminated = c_id in contaminated

    def items(self) -> list[list[Candidate]]:
        """Each set's items (its first ``count`` viable candidates), in set order."""
        assert all(s.complete() for s in self._sets), "items() before every set is complete"
        return [s.viable()[: s.count] for s in self._sets]

    def _add(self, set_index: int, s: _SetState, draft: Draft) -> None:
        # sketches.hashing loads numba: only the plan stage pools items, while the spec (and
        # `taggant validate`) imports this module for its types (tests/test_startup.py).
        from taggant.sketches.hashing import exact_hash

        key = exact_hash(draft.text)
        c = Candidate(
            len(self._candidates), set_index, len(s.candidates), draft, duplicate=key in self._seen
        )
        self._seen.add(key)
        s.candidates.append(c)
        self._candidates.append(c)
