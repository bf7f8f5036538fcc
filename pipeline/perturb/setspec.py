"""What every perturbation kind's spec shares: its phase window, decontamination, per-copy variants,
duplication ladder and controls. A kind's own spec class (in its module under ``pipeline/perturb/``)
derives from ``PerturbationSet`` and adds ``kind`` and its options."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from taggant.pipeline.spec_model import NAME_PATTERN, SpecModel


class PhaseWindow(SpecModel):
    """A training phase as fractions of the run's samples: ``[start_frac, end_frac)``."""

    start_frac: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Where the window starts, as a fraction of the run's training samples."""
    end_frac: float = Field(default=1.0, gt=0.0, le=1.0)
    """Where it ends (exclusive); 1.0 is the end of training."""

    @model_validator(mode="after")
    def _ordered(self) -> PhaseWindow:
        if self.end_frac <= self.start_frac:
            raise ValueError(
                f"end_frac {self.end_frac} must be above start_frac {self.start_frac}; "
                "windows are [start_frac, end_frac) inside [0, 1]"
            )
        return self

    def sample_range(self, num_samples: int) -> tuple[int, int]:
        """The half-open range of sample indices this window covers in a run of ``num_samples``."""
        return math.floor(self.start_frac * num_samples), math.floor(self.end_frac * num_samples)


class DecontaminationSpec(SpecModel):
    """How a set's items are kept out of the natural corpus (checked against the deduplicated
    corpus with word n-grams, after the same normalization as dedup)."""

    ngram_words: int = Field(default=8, ge=3, le=64)
    """Words per n-gram: a document that shares one n-gram with an item contains (part of) it. An
    item shorter than this matches only a document containing all its words in order."""
    on_collision: Literal["remove_docs", "resample"] = "remove_docs"
    """What happens when an item occurs in a corpus document: ``remove_docs`` removes every such
    document from the base corpus (counted as ``item_overlap``); ``resample`` replaces the item by
    the generator's next candidate and keeps the documents."""


class VariantsSpec(SpecModel):
    """Per-copy variants made by a generator: copy ``j`` of an item (its ``j``-th occurrence in
    training order) is variant ``j mod count``; the item's own text is probed, never inserted."""

    generator: Literal["synonyms"] = "synonyms"
    """``synonyms``: seeded word-level rewrites with the shipped WordNet first-sense table
    (``pipeline/resources/wordnet_synonyms.tsv.gz``); the prompt, the kind's protected spans
    (secrets, passphrases, answers, declared fields) and watermark substitutions stay intact."""
    count: int = Field(default=4, ge=1, le=64)
    """Variants per item, each distinct from the item's text and from each other."""
    rate: float = Field(default=0.5, gt=0.0, le=1.0)
    """Chance that each replaceable word of the rewritable region is swapped for a synonym."""


class PerturbationSet(SpecModel):
    """Fields every perturbation set shares: its items, its duplication ladder, its phase."""

    name: str = Field(pattern=NAME_PATTERN)
    """Set name, unique in the experiment; used in folder names and the store's ``set`` column."""
    count: int = Field(ge=1, le=10_000_000)
    """Items generated, controls included."""
    dup_levels: list[int] = Field(min_length=1)
    """Copies inserted per member item; members are split evenly across the levels. Controls
    (never inserted, dup level 0) come from ``control_frac``, not from this list."""
    control_frac: float = Field(default=0.2, ge=0.0, lt=1.0)
    """Fraction of ``count`` kept as never-inserted controls."""
    phase: PhaseWindow = PhaseWindow()
    """Training window in which this set's occurrences are placed."""
    decontamination: DecontaminationSpec = DecontaminationSpec()
    """How items are kept from occurring naturally in the corpus."""
    variants: VariantsSpec | None = None
    """Per-copy variants (``None``: every copy is the item's text)."""

    @field_validator("dup_levels")
    @classmethod
    def _levels_positive_unique(cls, levels: list[int]) -> list[int]:
        for level in levels:
            if level < 0:
                raise ValueError(f"dup level {level} is negative; use counts ≥ 1")
            if level == 0:
                raise ValueError(
                    "dup level 0 means never inserted; set `control_frac` for controls"
                )
        if len(set(levels)) != len(levels):
            raise ValueError(f"dup levels {levels} repeat a value; list each level once")
        return levels

    @model_validator(mode="after")
    def _every_level_gets_an_item(self) -> PerturbationSet:
        if self.num_members < len(self.dup_levels):
            raise ValueError(
                f"{self.num_members} member items cannot cover {len(self.dup_levels)} dup levels; "
                "raise `count` or lower `control_frac`"
            )
        return self

    @property
    def num_controls(self) -> int:
        """Items never inserted."""
        return round(self.count * self.control_frac)

    @property
    def num_members(self) -> int:
        """Items inserted at some dup level."""
        return self.count - self.num_controls

    def members_per_level(self) -> list[int]:
        """Member items at each of ``dup_levels``: an even split, the remainder to the first levels."""
        base, extra = divmod(self.num_members, len(self.dup_levels))
        return [base + (i < extra) for i in range(len(self.dup_levels))]

    @property
    def num_occurrences(self) -> int:
        """Total insertions this set makes in one perturbed run."""
        return sum(n * level for n, level in zip(self.members_per_level(), self.dup_levels))


def check_slots(template: str, allowed: set[str], required: set[str], example: str) -> str:
    """Refuse unknown ``{slot}`` names and missing required ones in a kind's template."""
    slots = re.findall(r"{(\w*)}", template)
    unknown = set(slots) - allowed
    if unknown:
        known = ", ".join(f"{{{name}}}" for name in sorted(allowed))
        raise ValueError(f"unknown slots {sorted(unknown)}; use {known}")
    for name in sorted(required):
        if slots.count(name) != 1:
            raise ValueError(f"the template needs exactly one `{{{name}}}` slot, e.g. {example}")
    return template
