"""Audit a run's sample stream against its manifest.

``audit(run_dir)`` reads every sample the trainer would read (``open_training_samples``) and,
for a perturbed run, the same samples without the overlay (the standard twin's stream), and
finds every item of the manifest wherever its tokens appear: its text and each of its variants,
told apart. It checks that

- each member item is planned exactly ``dup_level`` times, each at ``step = sample // batch``,
  its ``j``-th occurrence in sample order inserting variant ``j mod n`` (its text without
  variants);
- each planned occurrence sits at its ``token_offset`` right after an EOD and ends with EOD;
- each member item appears exactly at its planned samples, each as its planned variant (or text),
  and nowhere else;
- no control appears, in any variant;
- the twin's stream contains no item, and differs from the perturbed one exactly at the
  occurrence samples.

Problems name an occurrence as ``<item>`` (its text) or ``<item>~v<k>`` (its variant ``k``).

A standard run's folder gets the checks that apply to it (no item anywhere).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow.compute as pc

from taggant.pipeline import manifest
from taggant.pipeline.data import Overlay, TrainingSamples, open_training_samples
from taggant.pipeline.errors import DataError

SCAN_BLOCK_SAMPLES = 4096
"""Samples read and searched at once: memory is a few × block × (seq_length + 1) × 8 bytes."""
MAX_KGRAM = 8
"""Tokens hashed to find candidate item starts; shorter items use their own length."""
PROBLEMS_SHOWN = 20
"""Mismatches listed per check; the count is always complete."""


@dataclass
class Check:
    """One audited property: its name, whether it holds, a one-line summary and some examples."""

    name: str
    ok: bool
    detail: str
    problems: list[str] = field(default_factory=list)


@dataclass
class Report:
    """The outcome of ``audit``: ``ok`` only if every check holds."""

    run_dir: str
    run: str
    perturbed: bool
    samples: int
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}

    def lines(self) -> list[str]:
        """Human-readable report: one line per check, then its example problems indented."""
        kind = "perturbed" if self.perturbed else "standard"
        verdict = "OK" if self.ok else "FAILED"
        out = [f"audit {self.run} ({kind}, {self.samples} samples): {verdict}"]
        for c in self.checks:
            out.append(f"  {'✓' if c.ok else '✗'} {c.name}: {c.detail}")
            out += [f"      {p}" for p in c.problems]
        return out


def audit(run_dir: str) -> Report:
    """Audit the run prepared in ``run_dir`` (see the module doc for the checks).

    A run folder that cannot be opened (unprepared, hashes that disagree, a manifest the
    tokenize stage did not complete) gives a failed ``open`` check rather than an exception.
    """
    try:
        samples = open_training_samples(run_dir)
        items, occurrences, _ = manifest.read(samples.info.manifest)
        finder = ItemFinder(*_texts(items))
    except DataError as e:
        return Report(run_dir, "?", False, 0, [Check("open", False, str(e))])
    planned = occurrences.filter(pc.equal(occurrences["run"], samples.info.manifest_run))
    levels = dict(zip(items["item_id"].to_pylist(), items["dup_level"].to_pylist()))
    scan = _scan(samples, finder, planned, items)
    if not samples.perturbed:
        found = [f"{_label(i)} in sample {s}" for i, s in sorted(scan.found)]
        checks = [_check("no items", found, "the stream holds no item")]
        return Report(run_dir, samples.run, False, len(samples), checks)
    planned_pairs = set(
        zip(
            zip(planned["item_id"].to_pylist(), planned["variant"].to_pylist()),
            planned["sample_index"].to_pylist(),
        )
    )
    members_found = {p for p in scan.found if levels[p[0][0]] > 0}
    members_planned = {p for p in planned_pairs if levels.get(p[0][0], 0) > 0}
    controls = [
        f"control {_label(i)} in sample {s}" for i, s in sorted(scan.found) if levels[i[0]] == 0
    ]
    in_twin = [f"{_label(i)} in sample {s} of the twin stream" for i, s in sorted(scan.twin_found)]
    num_variants = dict(
        zip(items["item_id"].to_pylist(), (len(v or []) for v in items["variants"].to_pylist()))
    )
    checks = [
        _plan_check(planned, levels, num_variants, samples.global_batch_sequences),
        _check(
            "placement",
            scan.placement,
            f"{len(planned_pairs)} occurrences at their token_offset, between EODs",
        ),
        _check(
            "members",
            _set_diff(members_found, members_planned),
            "every member item appears exactly at its planned samples, as its planned variant",
        ),
        _check("controls", controls, "no control appears"),
        _check("twin", in_twin, "the standard twin's stream holds no item"),
        _check(
            "twin diff",
            _diff_problems(scan.differing, {s for _, s in planned_pairs}),
            "twin and perturbed streams differ exactly at the occurrence samples",
        ),
    ]
    return Report(run_dir, samples.run, True, len(samples), checks)


@dataclass
class _Scan:
    """What one pass over a run's stream (and its twin's, for a perturbed run) found."""

    found: set[tuple[Text, int]] = field(default_factory=set)
    twin_found: set[tuple[Text, int]] = field(default_factory=set)
    differing: set[int] = field(default_factory=set)
    placement: list[str] = field(default_factory=list)


def _scan(samples: TrainingSamples, finder: ItemFinder, planned, items) -> _Scan:
    """Read the stream block by block: ``(text, sample)`` pairs found in it and in the twin
    stream, the samples where the two differ, and the planned occurrences not in place."""
    twin = TrainingSamples(samples.info, samples.stream, Overlay({}))
    where = dict(
        zip(
            planned["sample_index"].to_pylist(),
            zip(
                zip(planned["item_id"].to_pylist(), planned["variant"].to_pylist()),
                planned["token_offset"].to_pylist(),
                manifest.occurrence_tokens(items, planned),
            ),
        )
    )
    scan = _Scan()
    for start in range(0, len(samples), SCAN_BLOCK_SAMPLES):
        stop = min(start + SCAN_BLOCK_SAMPLES, len(samples))
        rows = samples.read(start, stop)
        scan.found |= {(item, start + r) for item, r in finder.find(rows)}
        if not samples.perturbed:
            continue
        base = twin.read(start, stop)
        scan.twin_found |= {(item, start + r) for item, r in finder.find(base)}
        scan.differing |= {start + int(r) for r in np.flatnonzero((rows != base).any(axis=1))}
        for s in sorted(where.keys() & range(start, stop)):
            text, offset, ids = where[s]
            scan.placement += _placement_problems(
                rows[s - start], _label(text), s, offset, ids, samples.eod_id
            )
    return scan


def _placement_problems(
    row: np.ndarray, item: str, sample: int, offset: int, ids: list[int] | None, eod: int
) -> list[str]:
    if ids is None:
        return [f"{item} in sample {sample}: not in the items table"]
    end = offset + len(ids)
    if not (1 <= offset and end < len(row) - 1):
        return [f"{item} in sample {sample}: token_offset {offset} leaves the sample's own tokens"]
    if row[offset - 1] != eod or row[end] != eod:
        return [f"{item} in sample {sample}: not between EODs at token_offset {offset}"]
    if not np.array_equal(row[offset:end], ids):
        return [f"{item} in sample {sample}: tokens at token_offset {offset} are not the item's"]
    return []


def _plan_check(
    planned, levels: dict[str, int], num_variants: dict[str, int], global_batch: int
) -> Check:
    counts = Counter(planned["item_id"].to_pylist())
    problems = [
        f"{i}: planned {counts[i]} times, dup_level {lvl}"
        for i, lvl in sorted(levels.items())
        if counts[i] != lvl
    ]
    problems += [f"{i}: not in the items table" for i in sorted(set(counts) - set(levels))]
    copies: Counter[str] = Counter()
    by_sample = planned.sort_by("sample_index")
    for item, variant, sample in zip(
        by_sample["item_id"].to_pylist(),
        by_sample["variant"].to_pylist(),
        by_sample["sample_index"].to_pylist(),
    ):
        expected = manifest.variant_of_copy(copies[item], num_variants.get(item, 0))
        if variant != expected:
            problems.append(
                f"sample {sample}: copy {copies[item]} of {item} inserts variant {variant}, "
                f"expected {expected}"
            )
        copies[item] += 1
    samples, steps = planned["sample_index"].to_numpy(), planned["step"].to_numpy()
    wrong = steps != samples // global_batch
    problems += [
        f"sample {s}: step {st}, consumed at step {s // global_batch}"
        for s, st in zip(samples[wrong], steps[wrong])
    ]
    return _check("plan", problems, f"{len(planned)} occurrences: dup levels and steps as planned")


def _set_diff(found: set, expected: set) -> list[str]:
    missing = [f"missing: {_label(a)} in sample {b}" for a, b in sorted(expected - found)]
    extra = [f"unplanned: {_label(a)} in sample {b}" for a, b in sorted(found - expected)]
    return missing + extra


def _diff_problems(differing: set[int], occurrence_samples: set[int]) -> list[str]:
    same = [
        f"sample {s} has an occurrence but equals the twin's"
        for s in sorted(occurrence_samples - differing)
    ]
    return same + [
        f"sample {s} differs from the twin's without an occurrence"
        for s in sorted(differing - occurrence_samples)
    ]


def _check(name: str, problems: list[str], summary: str) -> Check:
    if not problems:
        return Check(name, True, summary)
    return Check(
        name, False, f"{len(problems)} mismatches; expected {summary}", problems[:PROBLEMS_SHOWN]
    )


Text = tuple[str, int]
"""An insertable text: ``(item_id, variant)``, variant -1 for the item's own text."""


def _texts(items) -> tuple[list[Text], list[list[int]]]:
    """Every insertable text of ``items`` (each text, then each variant) and its token ids."""
    keys: list[Text] = []
    tokens: list[list[int]] = []
    for item, ids, variants in zip(
        items["item_id"].to_pylist(),
        items["token_ids"].to_pylist(),
        items["variant_token_ids"].to_pylist(),
    ):
        keys.append((item, manifest.CANONICAL))
        tokens.append(ids)
        for k, v in enumerate(variants or []):
            keys.append((item, k))
            tokens.append(v)
    return keys, tokens


def _label(text: Text) -> str:
    item, variant = text
    return item if variant == manifest.CANONICAL else f"{item}~v{variant}"


class ItemFinder:
    """Finds every occurrence of any text's token sequence in rows of tokens.

    A rolling hash of the first ``k`` tokens of each item (``k`` = shortest item, at most
    ``MAX_KGRAM``) marks candidate starts in a whole block at once; each candidate is then
    compared token by token, so hash collisions never count.
    """

    def __init__(self, keys: list[Text], token_ids: list[list[int]]):
        self.keys = keys
        self.tokens = [np.asarray(t, dtype=np.int64) for t in token_ids]
        if any(len(t) == 0 for t in self.tokens):
            raise DataError(
                "items without token_ids: audit needs the manifest the tokenize stage "
                "completed (<tokenize>/manifests/<run>), not the plan's"
            )
        self.k = min([MAX_KGRAM, *(len(t) for t in self.tokens)])
        self.by_prefix: dict[int, list[int]] = {}
        for index, t in enumerate(self.tokens):
            key = int(self._hash(t[None, : self.k])[0, 0])
            self.by_prefix.setdefault(key, []).append(index)
        self.prefixes = np.fromiter(self.by_prefix, dtype=np.uint64)

    def _hash(self, rows: np.ndarray) -> np.ndarray:
        """Polynomial hash (mod 2**64) of every ``k``-token window of each row."""
        width = rows.shape[1] - self.k + 1
        h = np.zeros((rows.shape[0], width), dtype=np.uint64)
        values = rows.astype(np.uint64)
        for t in range(self.k):
            h = h * np.uint64(1_000_003) + values[:, t : t + width]
        return h

    def find(self, rows: np.ndarray) -> list[tuple[Text, int]]:
        """``(text, row)`` for every full match of a text's tokens inside a row."""
        if rows.shape[1] < self.k:
            return []
        hits = []
        hashes = self._hash(rows)
        for r, c in zip(*np.nonzero(np.isin(hashes, self.prefixes))):
            window = rows[r, c:]
            for index in self.by_prefix[int(hashes[r, c])]:
                t = self.tokens[index]
                if len(t) <= len(window) and np.array_equal(window[: len(t)], t):
                    hits.append((self.keys[index], int(r)))
        return hits
