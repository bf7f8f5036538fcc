"""Records for ``kind: text`` tests: the release entries of the pinned Debian changelogs (real
text nobody here wrote), each as ``{id, prompt, text, fields}``: the entry's header line is the
prompt, its change list and sign-off line the text, the maintainer's name and email its fields."""

from __future__ import annotations

import re

from tests.corpus import pinned_docs

_ENTRY = re.compile(
    r"^(?P<header>(?P<package>\S+) \((?P<version>[^)]+)\)[^\n]*)\n\n(?P<body>.*?)\n\n"
    r"(?P<signoff> -- (?P<name>[^<\n]+?) <(?P<email>[^>\n]+)>  [^\n]+)",
    re.S | re.M,
)


def changelog_records(
    limit: int | None = None, min_chars: int = 0, max_chars: int | None = None
) -> list[dict]:
    """Release entries in file order whose text has ``min_chars`` to ``max_chars`` characters
    (duplicates by id dropped: the first is kept)."""
    out, seen = [], set()
    for doc in pinned_docs("changelog"):
        for m in _ENTRY.finditer(doc["text"]):
            record_id = f"{m['package']}/{m['version']}"
            if record_id in seen:
                continue
            seen.add(record_id)
            text = m["body"] + "\n\n" + m["signoff"]
            if not min_chars <= len(text) <= (max_chars or len(text)):
                continue
            base = len(m["body"]) + 2 - m.start("signoff")
            out.append(
                {
                    "id": record_id,
                    "prompt": m["header"] + "\n\n",
                    "text": text,
                    "fields": {
                        "name": [m.start("name") + base, m.end("name") + base],
                        "email": [m.start("email") + base, m.end("email") + base],
                    },
                }
            )
    return out[:limit]
