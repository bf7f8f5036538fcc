"""An experiment's members and never-inserted controls as membership-inference benchmark files.

Two layouts of the same split, both JSONL, UTF-8, one record per line, items in id order:

- ``open-unlearning/``: ``<set>_train_dup_<k>.jsonl`` (the members inserted ``k`` times) and
  ``<set>_test.jsonl`` (the controls), the layout of Hubble's MIA data in open-unlearning
  (``Hubble_Data/``). A record is ``{"prompt", "text", "item_id", "set", "kind", "dup_level"}``:
  ``prompt`` is the item's prompt (empty when it has none) without trailing whitespace, which
  moves to the start of ``text``, the rest: a tokenizer reads a space as part of the next word,
  so a prompt ending in one asks a model for a token it never saw there. They are the fields of
  open-unlearning's ``CompletionDataset`` (``prefix_key="prompt"``, ``text_key="text"``), and
  ``prompt + text`` is the item's text.
- ``mimir/<set>/``: ``dup_<k>/train_raw.jsonl`` (members) and ``test_raw.jsonl`` (non-members),
  each line one JSON string, the whole inserted text: MIMIR's ``--presampled_dataset_member`` /
  ``--presampled_dataset_nonmember`` inputs.

``README.md`` states the split (counts per set and level, which runs saw the members) and
``benchmark.json`` holds the same as data. Members and controls of a set come from one generator
and were split at random, so they differ only in whether training saw them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pyarrow as pa

from taggant.pipeline import io

BENCHMARK_VERSION = "benchmark_export.v2"
"""v2: prompts end without whitespace (it starts the text)."""
OPEN_UNLEARNING = "open-unlearning"
MIMIR = "mimir"


def open_unlearning_file(set_name: str, dup_level: int) -> str:
    """The open-unlearning file of a set's items at ``dup_level`` (0: the controls)."""
    suffix = "test" if dup_level == 0 else f"train_dup_{dup_level}"
    return os.path.join(OPEN_UNLEARNING, f"{set_name}_{suffix}.jsonl")


def mimir_file(set_name: str, dup_level: int) -> str:
    """The MIMIR file of a set's items at ``dup_level`` (0: the non-members)."""
    if dup_level == 0:
        return os.path.join(MIMIR, set_name, "test_raw.jsonl")
    return os.path.join(MIMIR, set_name, f"dup_{dup_level}", "train_raw.jsonl")


def export_benchmark(items: pa.Table, out: str, about: dict[str, Any]) -> dict[str, Any]:
    """Write ``items`` (manifest items, members and controls) as benchmark files under ``out``.

    ``about`` describes where they come from (experiment, seed, manifest hash, the runs that
    inserted the members, the twins that did not); it goes into ``benchmark.json`` and the
    README. Equal inputs give byte-identical files.

    Returns:
        the content of ``benchmark.json``: ``about``, ``version`` and ``counts``
        (set → dup level → items).
    """
    records = sorted(
        items.select(["item_id", "set", "kind", "text", "prefix_chars", "dup_level"]).to_pylist(),
        key=lambda r: r["item_id"],
    )
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        groups.setdefault((r["set"], r["dup_level"]), []).append(r)
    for (set_name, level), group in sorted(groups.items()):
        unlearning = [
            json.dumps(
                {
                    "prompt": _prompt(r),
                    "text": r["text"][len(_prompt(r)) :],
                    "item_id": r["item_id"],
                    "set": r["set"],
                    "kind": r["kind"],
                    "dup_level": r["dup_level"],
                },
                ensure_ascii=False,
            )
            for r in group
        ]
        _write_lines(os.path.join(out, open_unlearning_file(set_name, level)), unlearning)
        mimir = [json.dumps(r["text"], ensure_ascii=False) for r in group]
        _write_lines(os.path.join(out, mimir_file(set_name, level)), mimir)
    counts: dict[str, dict[str, int]] = {}
    for (set_name, level), n in sorted(
        Counter((r["set"], r["dup_level"]) for r in records).items()
    ):
        counts.setdefault(set_name, {})[str(level)] = n
    description = {"version": BENCHMARK_VERSION, **about, "counts": counts}
    io.write_json(os.path.join(out, "benchmark.json"), description)
    io.write_text(os.path.join(out, "README.md"), _readme(description))
    return description


def _prompt(record: dict[str, Any]) -> str:
    return record["text"][: record["prefix_chars"]].rstrip()


def _write_lines(path: str, lines: list[str]) -> None:
    io.write_text(path, "".join(line + "\n" for line in lines))


def _readme(d: dict[str, Any]) -> str:
    rows = []
    for set_name, levels in d["counts"].items():
        for level, n in levels.items():
            role = "non-members (controls)" if level == "0" else f"members, inserted ×{level}"
            rows.append(
                f"| {set_name} | {level} | {n} | {role} | "
                f"`{open_unlearning_file(set_name, int(level))}` | "
                f"`{mimir_file(set_name, int(level))}` |"
            )
    return "\n".join(
        [
            f"# Membership benchmark of experiment `{d['experiment']}`",
            "",
            "Every set's items were generated from one seeded generator and split at random into",
            "members, inserted into training at a duplication level, and never-inserted controls, so",
            "members and controls differ only in whether the model saw them.",
            "",
            f"- experiment seed: {d['seed']}",
            f"- manifest hash (sha256): `{d['manifest_hash']}`",
            f"- runs that inserted the members: {', '.join(d['perturbed_runs'])}",
            f"- runs that saw none of them (standard twins): {', '.join(d['standard_runs']) or 'none'}",
            "",
            "| set | dup level | items | role | open-unlearning | MIMIR |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "open-unlearning records: `prompt` (the item's prompt, empty without one), `text` (the",
            "rest), `item_id`, `set`, `kind`, `dup_level`. MIMIR lines: one JSON string each, the",
            "whole item text.",
            "",
        ]
    )
