"""Ingest: raw corpus files → normalized Parquet shards ``(doc_id, text, source)`` + a quarantine.

One input file is one unit of work (``ingest_file``); it writes ``shard-<file>-<part>.parquet``
files of at most ``max_shard_docs`` documents, in input order, and ``quarantine-<file>.parquet``
holding every record that could not be read, byte for byte, with its reason. File names depend only
on the file's position in the sorted input list, so a retried or re-run task overwrites its own
files and never adds rows.

Quarantine reasons: ``bad_utf8`` (undecodable bytes or unpaired surrogates), ``bad_json``,
``not_an_object``, ``missing_text``, ``not_a_string``, ``empty_text``, ``too_large``, ``bad_id``.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from io import BufferedReader
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from taggant.pipeline import io
from taggant.pipeline.errors import DataError
from taggant.pipeline.spec import CorpusSpec
from taggant.pipeline.stage import Counts

DOCS_SCHEMA = pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("source", pa.string())])
QUARANTINE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("record", pa.binary()),
    ]
)
PARQUET_ROWS_PER_BATCH = 4096
INGEST_VERSION = "ingest.v1"


@dataclass(frozen=True)
class InputFile:
    """One corpus file: its position in the sorted input list, URL, and path relative to the corpus
    root (used as ``source`` and in default doc ids)."""

    index: int
    url: str
    rel: str


def input_fingerprint(inputs: list[InputFile]) -> list[tuple[str, int]]:
    """``(relative path, size in bytes)`` of each input: part of the ingest stage's hash, so a corpus
    file that grows or shrinks makes a new ingest folder."""
    sizes = []
    for f in inputs:
        fs, path = io.filesystem(f.url)
        sizes.append((f.rel, fs.size(path)))
    return sizes


def list_inputs(corpus: CorpusSpec) -> list[InputFile]:
    """Expand the corpus paths and globs into a sorted, de-duplicated list of files.

    Raises:
        DataError: when a path matches no file.
    """
    urls: list[str] = []
    for pattern in corpus.paths:
        matches = io.glob(pattern)
        if not matches:
            raise DataError(f"corpus.paths: {pattern!r} matches no file; check the path or glob")
        urls += matches
    urls = sorted(set(urls))
    root = posixpath.commonpath([u.split("://")[-1].rsplit("/", 1)[0] for u in urls])
    return [
        InputFile(i, u, posixpath.relpath(u.split("://")[-1], root)) for i, u in enumerate(urls)
    ]


def file_format(corpus: CorpusSpec, url: str) -> str:
    """``jsonl`` or ``parquet`` for ``url``, from the spec or the file extension."""
    if corpus.format != "auto":
        return corpus.format
    name = url.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if any(name.endswith(ext) for ext in (".jsonl", ".jsonl.zst", ".jsonl.gz", ".json", ".ndjson")):
        return "jsonl"
    raise DataError(f"{url}: cannot tell the format from the extension; set corpus.format")


@dataclass(frozen=True)
class Rejected:
    """A record that goes to the quarantine."""

    line: int
    reason: str
    record: bytes


def _check(obj: Any, corpus: CorpusSpec, rel: str, line: int, raw: bytes) -> dict | Rejected:
    """Validate one decoded record; the one rule set for every input format."""
    if not isinstance(obj, dict):
        return Rejected(line, "not_an_object", raw)
    if corpus.text_field not in obj or obj[corpus.text_field] is None:
        return Rejected(line, "missing_text", raw)
    text = obj[corpus.text_field]
    if not isinstance(text, str):
        return Rejected(line, "not_a_string", raw)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # JSON "\ud800" escapes decode to unpaired surrogates
        return Rejected(line, "bad_utf8", raw)
    if not text.strip():
        return Rejected(line, "empty_text", raw)
    if size > corpus.max_doc_bytes:
        return Rejected(line, "too_large", raw)
    doc_id = obj.get(corpus.id_field)
    if doc_id is None:
        doc_id = f"{rel}:{line}"
    elif isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    elif not isinstance(doc_id, str) or not doc_id:
        return Rejected(line, "bad_id", raw)
    return {"doc_id": doc_id, "text": text, "source": rel}


def _jsonl_records(f: InputFile, corpus: CorpusSpec) -> Iterator[dict | Rejected]:
    fs, path = io.filesystem(f.url)
    # zstd's reader has no line iteration of its own; the buffered wrapper gives it to every codec.
    with (
        fs.open(path, "rb", compression="infer") as compressed,
        BufferedReader(compressed) as stream,
    ):
        for line, raw in enumerate(stream, start=1):
            raw = raw.rstrip(b"\r\n")
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield Rejected(line, "bad_utf8", raw)
                continue
            except json.JSONDecodeError:
                yield Rejected(line, "bad_json", raw)
                continue
            yield _check(obj, corpus, f.rel, line, raw)


def _parquet_records(f: InputFile, corpus: CorpusSpec) -> Iterator[dict | Rejected]:
    fs, path = io.filesystem(f.url)
    try:
        parquet = pq.ParquetFile(fs.open(path, "rb"))
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{f.url}: not a readable Parquet file ({e}); fix or remove it") from e
    line = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_ROWS_PER_BATCH):
        for row in batch.to_pylist():
            line += 1
            raw = json.dumps(row, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass")
            yield _check(row, corpus, f.rel, line, raw)


def read_records(f: InputFile, corpus: CorpusSpec) -> Iterator[dict | Rejected]:
    """Records of one file in order: a normalized document dict or a ``Rejected``."""
    reader = _parquet_records if file_format(corpus, f.url) == "parquet" else _jsonl_records
    return reader(f, corpus)


def shard_name(file_index: int, part: int) -> str:
    return f"shard-{file_index:05d}-{part:04d}.parquet"


def ingest_file(f: InputFile, corpus: CorpusSpec, out_dir: str) -> dict[str, Any]:
    """Ingest one file into ``out_dir``; returns its counts and the shard files written."""
    counts = Counts()
    docs: list[dict] = []
    rejected: list[Rejected] = []
    shards: list[str] = []

    def flush() -> None:
        name = shard_name(f.index, len(shards))
        io.write_table(io.join(out_dir, name), pa.Table.from_pylist(docs, schema=DOCS_SCHEMA))
        shards.append(name)
        docs.clear()

    for record in read_records(f, corpus):
        counts.input += 1
        if isinstance(record, Rejected):
            counts.quarantined[record.reason] += 1
            rejected.append(record)
            continue
        counts.kept += 1
        docs.append(record)
        if len(docs) == corpus.max_shard_docs:
            flush()
    if docs:
        flush()
    if rejected:
        quarantine = pa.table(
            {
                "source": [f.rel] * len(rejected),
                "line": [r.line for r in rejected],
                "reason": [r.reason for r in rejected],
                "record": [r.record for r in rejected],
            },
            schema=QUARANTINE_SCHEMA,
        )
        io.write_table(io.join(out_dir, f"quarantine-{f.index:05d}.parquet"), quarantine)
    return {"file": f.rel, "shards": shards, "counts": counts.to_dict()}
