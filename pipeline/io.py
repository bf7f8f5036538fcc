"""File access through fsspec, with atomic writes.

Every stage writes through these helpers so that a reader never sees half a file: on a local (or
any rename-capable) filesystem a file is written under a temporary name and renamed; on object
stores a single put is already atomic.
"""

from __future__ import annotations

import io
import json
import uuid
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.core import url_to_fs

if TYPE_CHECKING:
    import pyarrow as pa

# The Parquet helpers import pyarrow themselves: `taggant validate` lists and sizes files through
# this module and loads no pyarrow for a JSONL corpus (tests/test_startup.py).

PARQUET_COMPRESSION = "zstd"


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of ``url`` and the path inside it.

    Listings are never cached: s3fs (and gcsfs) would otherwise answer ``exists``, ``glob`` and
    ``find`` from a listing taken before another process (a Ray task on another node) wrote or
    removed a file, so a driver could miss shards its tasks just wrote, or see a deleted marker.
    """
    return url_to_fs(url, use_listings_cache=False)


def is_local(url: str) -> bool:
    """Whether ``url`` is a local path (or ``file://``) rather than an object store or other
    remote filesystem."""
    return fsspec.utils.get_protocol(url) in ("file", "local")


def join(url: str, *parts: str) -> str:
    """Join path parts onto a URL or local path with ``/``."""
    return "/".join([url.rstrip("/"), *parts])


def _renames(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in fs.protocol or "local" in fs.protocol


def temp_path(path: str) -> str:
    """Where ``write_bytes`` writes ``path`` before renaming it: a hidden name beside it that
    ends in ``.tmp-<random>``. A writer killed before its rename leaves this file behind, so its
    name must match no reader's glob (``**/*.parquet`` in DuckDB and polars, which, unlike
    pyarrow, do not skip hidden files)."""
    parent, name = path.rsplit("/", 1)
    return f"{parent}/.{name}.tmp-{uuid.uuid4().hex}"


def write_bytes(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` so that readers see either the old file or the whole new one."""
    fs, path = filesystem(url)
    if not _renames(fs):
        # Object stores have no folders to make (s3fs's makedirs would create a missing bucket
        # instead of failing on a mistyped one). One PutObject (a multipart upload from 100 MB
        # in s3fs) makes the whole object appear at once: no temp object to rename.
        fs.pipe_file(path, data)
        return
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = temp_path(path)
    try:
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, path)
    except BaseException:
        if fs.exists(tmp):  # a failed write leaves nothing; only a killed one leaves its temp
            fs.rm(tmp)
        raise


def write_text(url: str, text: str) -> None:
    """Atomically write UTF-8 text."""
    write_bytes(url, text.encode())


def write_json(url: str, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON with sorted keys (stable bytes for equal objects)."""
    write_text(url, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(url: str) -> Any:
    """Read a JSON file."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        return json.load(f)


def write_table(url: str, table: pa.Table) -> None:
    """Atomically write a Parquet file; equal tables give byte-identical files."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression=PARQUET_COMPRESSION, write_statistics=True)
    write_bytes(url, sink.getvalue())


def read_table(url: str, columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet file or a folder of them."""
    import pyarrow.parquet as pq

    fs, path = filesystem(url)
    return pq.read_table(path, columns=columns, filesystem=fs)


def parquet_rows(url: str) -> int:
    """Rows of a Parquet file, from its footer alone."""
    import pyarrow.parquet as pq

    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def write_row_groups(url: str, tables: list[pa.Table]) -> None:
    """Atomically write tables of one schema as one Parquet file, table i as row group i (empty
    ones included), so a reader can fetch any one with `read_row_group`."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    with pq.ParquetWriter(sink, tables[0].schema, compression=PARQUET_COMPRESSION) as writer:
        for table in tables:
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
    write_bytes(url, sink.getvalue())


def read_row_group(url: str, index: int) -> pa.Table:
    """Row group ``index`` of a Parquet file: reads the footer and that group's bytes only."""
    import pyarrow.parquet as pq

    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).read_row_group(index)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def remove(url: str) -> None:
    """Remove a file or folder tree if it exists."""
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def glob(url: str) -> list[str]:
    """Sorted URLs of the files matching ``url``: a file, a folder (searched recursively) or a glob."""
    fs, path = filesystem(url)
    if any(c in path for c in "*?["):
        matches = fs.glob(path)
    elif fs.isdir(path):
        matches = fs.find(path)
    else:
        matches = [path] if fs.exists(path) else []
    files = [m for m in matches if not fs.isdir(m)]
    return sorted(fs.unstrip_protocol(m) if "://" in url else m for m in files)
