"""The tests' real text: a pinned snapshot shipped with the tests (``tests/data/README.md``).

The demo builds its corpus from the machine's ``/usr/share/doc`` (``pipeline.corpora``), which
changes whenever a Debian package is installed or removed. The tests read these files instead, so
they see the same documents, in the same order, on every machine.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import zstandard

DATA = Path(__file__).parent / "data"
SNAPSHOTS = {
    "copyright": DATA / "debian-copyright.jsonl.zst",
    "changelog": DATA / "debian-changelog.jsonl.zst",
}
"""``kind`` → snapshot of ``pipeline.corpora.debian_docs(kind)``: every copyright file of the
machine it was taken on; the changelogs of its first 15 packages only (by name)."""


@functools.cache
def _read(path: Path) -> tuple[dict[str, str], ...]:
    raw = zstandard.ZstdDecompressor().decompress(path.read_bytes())
    return tuple(json.loads(line) for line in raw.splitlines())


def pinned_docs(kind: str) -> list[dict[str, str]]:
    """The snapshot's documents of ``kind`` (``copyright`` or ``changelog``) as ``{"id", "text"}``
    records, sorted by package name, as ``pipeline.corpora.debian_docs`` gave them (a new list of
    new records: callers may edit it)."""
    return [dict(doc) for doc in _read(SNAPSHOTS[kind])]
