"""The manifest: the items and occurrences of a run, the contract between insertion and probing.

``items.parquet`` has one row per generated item, members and controls alike; ``token_ids`` is
empty until the tokenize stage fills it. ``occurrences.parquet`` has one row per placement of a
member item in one perturbed run: the training sample it overwrites (``sample_index``, counted in
the order the trainer consumes samples), the optimizer ``step`` that consumes that sample, and the
``token_offset`` inside the sample where it starts (-1 until the data layer fixes it at a document
boundary). At most one occurrence per sample; controls never occur. ``manifest.json`` records the
hash of the sample-order config the sample indices refer to; training refuses a mismatch.

**Variants.** An item with ``variants`` is never inserted as ``text``: each occurrence's
``variant`` names the text it inserts, ``variants[variant]``, where the ``j``-th occurrence of the
item in sample order (``j`` from 0) has ``variant = j mod len(variants)``. An item without variants
has ``variant = -1`` (its ``text``) at every occurrence. ``variant_token_ids`` holds the variants'
tokens, as ``token_ids`` holds the text's. Probes read ``text``.
"""

from __future__ import annotations

import pyarrow as pa

from taggant.pipeline import io

MANIFEST_VERSION = "manifest.v2"
"""v2: ``items.variants``, ``items.variant_token_ids`` and ``occurrences.variant``."""

ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),  # "<set>/<index:06d>"
        ("set", pa.string()),
        ("kind", pa.string()),  # a kind of pipeline.perturb.registry.PERTURBATION_KINDS
        ("version", pa.string()),  # generator version, e.g. "canary.v1"
        ("text", pa.string()),  # the full inserted text
        ("prefix_chars", pa.int32()),  # text[:prefix_chars] is the prompt; the rest is the target
        ("token_ids", pa.list_(pa.int32())),
        ("dup_level", pa.int32()),  # 0 = control
        ("phase_start", pa.float64()),
        ("phase_end", pa.float64()),
        ("params", pa.string()),  # generator parameters and randomness space, JSON
        ("variants", pa.list_(pa.string())),  # texts inserted in place of text; empty: none
        ("variant_token_ids", pa.list_(pa.list_(pa.int32()))),  # one list per variant
    ]
)

OCCURRENCES_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("run", pa.string()),
        ("sample_index", pa.int64()),
        ("step", pa.int64()),
        ("token_offset", pa.int32()),
        ("variant", pa.int32()),  # -1: the item's text; k: its variants[k]
    ]
)


def write(folder: str, items: pa.Table, occurrences: pa.Table, sample_order_hash: str) -> None:
    """Write a manifest into ``folder`` (tables sorted by item id and sample index)."""
    io.write_table(io.join(folder, "items.parquet"), items.cast(ITEMS_SCHEMA).sort_by("item_id"))
    io.write_table(
        io.join(folder, "occurrences.parquet"),
        occurrences.cast(OCCURRENCES_SCHEMA).sort_by(
            [("run", "ascending"), ("sample_index", "ascending")]
        ),
    )
    io.write_json(
        io.join(folder, "manifest.json"),
        {"version": MANIFEST_VERSION, "sample_order_hash": sample_order_hash},
    )


def read(folder: str) -> tuple[pa.Table, pa.Table, dict]:
    """``(items, occurrences, meta)`` of the manifest in ``folder``."""
    return (
        io.read_table(io.join(folder, "items.parquet")),
        io.read_table(io.join(folder, "occurrences.parquet")),
        io.read_json(io.join(folder, "manifest.json")),
    )


CANONICAL = -1
"""``occurrences.variant`` of an occurrence that inserts the item's own ``text``."""


def variant_of_copy(copy: int, num_variants: int) -> int:
    """The ``variant`` of the ``copy``-th occurrence (0-based, in sample order) of an item with
    ``num_variants`` variants."""
    return copy % num_variants if num_variants else CANONICAL


def occurrence_tokens(items: pa.Table, occurrences: pa.Table) -> list[list[int] | None]:
    """The token ids each occurrence inserts (its item's ``token_ids`` or those of its variant),
    in the occurrences' row order; ``None`` for an unknown item or variant."""
    by_item = {
        item: (ids, variants or [])
        for item, ids, variants in zip(
            items["item_id"].to_pylist(),
            items["token_ids"].to_pylist(),
            items["variant_token_ids"].to_pylist(),
        )
    }
    out: list[list[int] | None] = []
    for item, variant in zip(
        occurrences["item_id"].to_pylist(), occurrences["variant"].to_pylist()
    ):
        ids, variants = by_item.get(item, (None, []))
        if variant == CANONICAL:
            out.append(ids)
        else:
            out.append(variants[variant] if 0 <= variant < len(variants) else None)
    return out
