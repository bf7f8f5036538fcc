"""The manifest: the items and occurrences of a run, the contract between insertion and probing.

``items.parquet`` has one row per generated item, members and controls alike; ``token_ids`` is
empty until the tokenize stage fills it. ``occurrences.parquet`` has one row per placement of a
member item in one perturbed run: the training sample it overwrites (``sample_index``, counted in
the order the trainer consumes samples), the optimizer ``step`` that consumes that sample, and the
``token_offset`` inside the sample where it starts (-1 until the data layer fixes it at a document
boundary). At most one occurrence per sample; controls never occur. ``manifest.json`` records the
hash of the sample-order config the sample indices refer to; training refuses a mismatch.
"""

from __future__ import annotations

import pyarrow as pa

from taggant.pipeline import io

MANIFEST_VERSION = "manifest.v1"

ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),  # "<set>/<index:06d>"
        ("set", pa.string()),
        ("kind", pa.string()),  # canary | ghost | watermark | testset
        ("version", pa.string()),  # generator version, e.g. "canary.v1"
        ("text", pa.string()),  # the full inserted text
        ("prefix_chars", pa.int32()),  # text[:prefix_chars] is the prompt; the rest is the target
        ("token_ids", pa.list_(pa.int32())),
        ("dup_level", pa.int32()),  # 0 = control
        ("phase_start", pa.float64()),
        ("phase_end", pa.float64()),
        ("params", pa.string()),  # generator parameters and randomness space, JSON
    ]
)

OCCURRENCES_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("run", pa.string()),
        ("sample_index", pa.int64()),
        ("step", pa.int64()),
        ("token_offset", pa.int32()),
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
