"""Byte-level comparison of stage outputs, on any filesystem."""

from __future__ import annotations

import hashlib

from taggant.pipeline import io


def folder_digests(url: str, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    """``{path relative to url: sha256 of its bytes}`` for every file under ``url``, hidden ones
    (a killed writer's temp file) included; names in ``exclude`` are left out."""
    fs, root = io.filesystem(url)
    return {
        path[len(root) + 1 :]: hashlib.sha256(fs.cat_file(path)).hexdigest()
        for path in fs.find(root)
        if path.rsplit("/", 1)[-1] not in exclude
    }
