"""Real text that nobody here wrote, available offline on every Debian machine.

``/usr/share/doc/<package>/copyright`` files (license texts with many natural near-duplicates) and
``changelog.Debian.gz`` files (maintainers' prose) become a JSONL corpus, one document per file,
with ids ``<kind>/<package>``. The demo reads it like any user corpus. It changes with the
packages installed, so the tests read a pinned snapshot of it instead (``tests/data``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import zstandard

DEBIAN_DOC_ROOT = Path("/usr/share/doc")
KINDS = {"copyright": "copyright", "changelog": "changelog.Debian.gz"}


def debian_docs(kind: str, root: Path = DEBIAN_DOC_ROOT) -> list[dict[str, str]]:
    """Documents of one ``kind`` (``copyright`` or ``changelog``), sorted by package name.

    Bytes that are not UTF-8 are replaced (U+FFFD): the files are real, not curated. Every file
    becomes a document, an empty one too: ingest, not this reader, decides what is quarantined.
    """
    docs = []
    for path in sorted(root.glob(f"*/{KINDS[kind]}")):
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        docs.append(
            {"id": f"{kind}/{path.parent.name}", "text": raw.decode("utf-8", errors="replace")}
        )
    return docs


def write_jsonl_zst(docs: list[dict], path: Path) -> Path:
    """Write records as zstd-compressed JSONL (deterministic bytes for equal input)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = b"".join(json.dumps(d, ensure_ascii=False).encode() + b"\n" for d in docs)
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(payload))
    return path
