"""Your own texts: items read from a JSONL (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``) or Parquet
file at any fsspec URL (Hubble's passages, paraphrase pairs and dialogues are this kind).

A record (a JSON object a line, or a Parquet row) gives

* ``text_field``: the text (required, not blank);
* ``prompt_field`` (optional): a prompt put before it. The item's text is ``prompt + text`` and
  ``prefix_chars = len(prompt)``, so probes condition on the prompt; without one the item has no
  prompt and probes split it Carlini-style at ``probes.prefix_tokens``;
* ``id_field`` (optional): the record's own id (text or integer), unique in the file, recorded in
  ``params.record_id``;
* ``fields`` (optional): a mapping ``{name: [start, end)}`` of character spans of the text, for
  field-level probes; recorded in ``params.fields`` shifted into the item's text (``+ len(prompt)``)
  and kept intact by generated variants;
* ``variants_field`` (optional): a list of texts inserted in place of the item's text, copy ``j``
  taking ``variants[j mod n]`` (Hubble's paraphrased copies). The prompt is put before each.

A bad record is refused with ``<file>:<line>`` (``<file>:row <n>`` for Parquet) and the fix.

The set's candidate stream is the file's records in a random order, a permutation drawn from
``rng.generator(seed, "text", set, "order")``, so a record found in the corpus (or a repeat of an
earlier one) is replaced by the next unused record; the stream ends with the file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import zstandard
from pydantic import model_validator

from taggant.pipeline import io
from taggant.pipeline.errors import DataError
from taggant.pipeline.perturb import rng
from taggant.pipeline.perturb.items import CorpusInputs, Draft, Source
from taggant.pipeline.perturb.setspec import PerturbationSet

KIND = "text"
VERSION = "text.v1"
PROBES: tuple[str, ...] = ()
"""Probes that read what only this kind has: none yet (the generic probes read every kind)."""

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet")


class TextSpec(PerturbationSet):
    """Items read from a file of records (see ``pipeline.perturb.text``)."""

    kind: Literal["text"] = "text"
    path: str
    """fsspec URL of a ``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst`` or ``.parquet`` file of records;
    a relative path is taken from the current directory."""
    text_field: str = "text"
    """Record field holding the text that is inserted."""
    prompt_field: str | None = None
    """Record field holding a prompt put before the text (probes condition on it); ``None``: no
    prompt, probes split the item at ``probes.prefix_tokens``."""
    id_field: str | None = None
    """Record field holding the record's id (unique in the file), kept in ``params.record_id``."""
    fields: str | None = None
    """Record field holding ``{name: [start, end)}`` character spans of the text."""
    variants_field: str | None = None
    """Record field holding a list of texts inserted in place of the text, copy ``j`` taking
    ``variants[j mod n]``; not together with ``variants``."""

    @model_validator(mode="after")
    def _known_format_one_variant_source(self) -> TextSpec:
        if not self.path.endswith(SUFFIXES):
            raise ValueError(
                f"path {self.path!r} has none of the suffixes {', '.join(SUFFIXES)}; "
                "convert the file or rename it to say its format"
            )
        if self.variants_field is not None and self.variants is not None:
            raise ValueError(
                "set either `variants_field` (variants read from the file) or `variants` "
                "(variants generated), not both"
            )
        return self


SPEC = TextSpec


@dataclass(frozen=True)
class Record:
    """One checked record: where it is in the file (``where`` for messages, ``line`` its line or
    row number from 1) and what the item takes from it."""

    where: str
    line: int
    text: str
    prompt: str
    record_id: str | None
    fields: dict[str, list[int]] | None
    variants: tuple[str, ...]


@dataclass(frozen=True)
class TextFile:
    """A loaded file: its URL, the SHA-256 of its bytes (as stored) and its records in order."""

    path: str
    sha256: str
    records: tuple[Record, ...]


def load(pset: TextSpec) -> TextFile:
    """Read and check the records of ``pset.path``.

    Raises:
        DataError: the file is missing, unreadable or empty, or a record is bad; naming
            ``<file>:<line>`` (``row`` for Parquet), the field and the fix.
    """
    fs, local = io.filesystem(pset.path)
    if not fs.exists(local):
        raise DataError(f"{pset.path}: no such file; fix the text set's `path`")
    with fs.open(local, "rb") as f:
        raw = f.read()
    rows = (
        _parquet_rows(pset.path, raw) if pset.path.endswith(".parquet") else _jsonl_rows(pset, raw)
    )
    records = [_check(pset, where, line, row) for where, line, row in rows]
    if not records:
        raise DataError(f"{pset.path}: no records; one JSON object per line (or a row) is expected")
    _check_unique_ids(pset, records)
    return TextFile(pset.path, hashlib.sha256(raw).hexdigest(), tuple(records))


def _jsonl_rows(pset: TextSpec, raw: bytes) -> list[tuple[str, int, Any]]:
    try:
        if pset.path.endswith(".gz"):
            raw = gzip.decompress(raw)
        elif pset.path.endswith(".zst"):
            raw = zstandard.ZstdDecompressor().stream_reader(raw).read()
    except (OSError, zstandard.ZstdError) as e:
        raise DataError(
            f"{pset.path}: cannot decompress ({e}); fix or re-compress the file"
        ) from None
    rows = []
    for number, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        where = f"{pset.path}:{number}"
        fix = f'each line must be one JSON object such as {{"{pset.text_field}": "..."}}'
        try:
            rows.append((where, number, json.loads(line.decode("utf-8"))))
        except UnicodeDecodeError:
            raise DataError(f"{where}: not UTF-8; re-encode the file as UTF-8") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e}); {fix}") from None
    return rows


def _parquet_rows(path: str, raw: bytes) -> list[tuple[str, int, Any]]:
    # pyarrow only for a Parquet file: the spec imports this module (tests/test_startup.py).
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(raw))
    except pa.ArrowException as e:
        raise DataError(f"{path}: not a readable Parquet file ({e}); fix or rewrite it") from None
    return [(f"{path}:row {i}", i, row) for i, row in enumerate(table.to_pylist(), 1)]


def _check(pset: TextSpec, where: str, line: int, row: Any) -> Record:
    if not isinstance(row, dict):
        raise DataError(f"{where}: not a JSON object; each record must be an object of fields")
    text = row.get(pset.text_field)
    if not isinstance(text, str) or not text.strip():
        raise DataError(
            f"{where}: `{pset.text_field}` is missing, blank or not text; give every record its "
            "text, or set the set's `text_field` to the field that holds it"
        )
    prompt = ""
    if pset.prompt_field is not None:
        prompt = row.get(pset.prompt_field)
        if not isinstance(prompt, str):
            raise DataError(
                f"{where}: `{pset.prompt_field}` is missing or not text; give every record a "
                "prompt (it may be empty), or drop the set's `prompt_field`"
            )
    record_id = None
    if pset.id_field is not None:
        value = row.get(pset.id_field)
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise DataError(
                f"{where}: `{pset.id_field}` is {value!r}, not a text or integer id; give every "
                "record an id, or drop the set's `id_field`"
            )
        record_id = str(value)
    fields = None
    if pset.fields is not None:
        fields = _check_fields(where, pset.fields, row.get(pset.fields), text)
    variants: tuple[str, ...] = ()
    if pset.variants_field is not None:
        value = row.get(pset.variants_field)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            raise DataError(
                f"{where}: `{pset.variants_field}` must be a non-empty list of non-blank texts "
                f"(got {value!r}); give every record its variants, or drop `variants_field`"
            )
        variants = tuple(prompt + v for v in value)
    return Record(where, line, prompt + text, prompt, record_id, fields, variants)


def _check_fields(where: str, name: str, value: Any, text: str) -> dict[str, list[int]]:
    fix = (
        f"`{name}` must map each field name to [start, end), character offsets into the text "
        f'with 0 <= start < end <= {len(text)}, e.g. {{"email": [10, 28]}}'
    )
    # Parquet map columns read back as lists of (key, value) pairs.
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)
    if not isinstance(value, dict):
        raise DataError(f"{where}: `{name}` is {value!r}; {fix}")
    out = {}
    for key, span in value.items():
        if span is None:
            # A Parquet struct column gives every row every key, null where the row has none.
            continue
        if (
            not isinstance(key, str)
            or not isinstance(span, list | tuple)
            or len(span) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)
            or not 0 <= span[0] < span[1] <= len(text)
        ):
            raise DataError(f"{where}: field {key!r} has span {span!r}; {fix}")
        out[key] = [int(span[0]), int(span[1])]
    return out


def _check_unique_ids(pset: TextSpec, records: list[Record]) -> None:
    first: dict[str, str] = {}
    for r in records:
        if r.record_id is None:
            continue
        if r.record_id in first:
            raise DataError(
                f"{r.where}: `{pset.id_field}` {r.record_id!r} is also the id of {first[r.record_id]}; "
                "ids must be unique in the file"
            )
        first[r.record_id] = r.where


class TextSource:
    """The candidate stream of one text set: the file's records in a seeded order."""

    def __init__(self, pset: TextSpec, seed: int):
        self._pset = pset
        self._file = load(pset)
        order = rng.generator(seed, "text", pset.name, "order").permutation(len(self._file.records))
        self._order = [int(i) for i in order]

    def draw(self, start: int, stop: int) -> list[Draft]:
        """Candidates ``start .. stop-1``; the stream ends with the file."""
        return [self._draft(j) for j in range(start, min(stop, len(self._order)))]

    def _draft(self, j: int) -> Draft:
        record = self._file.records[self._order[j]]
        shift = len(record.prompt)
        fields = (
            None
            if record.fields is None
            else {k: [a + shift, b + shift] for k, (a, b) in record.fields.items()}
        )
        params = {
            "candidate": j,
            "path": self._file.path,
            "sha256": self._file.sha256,
            "record": record.line,
            "record_id": record.record_id,
            "fields": fields,
        }
        return Draft(
            record.text,
            shift,
            params,
            protected=tuple((a, b) for a, b in (fields or {}).values()),
            variants=record.variants,
        )


def source(pset: TextSpec, seed: int, corpus: CorpusInputs) -> Source:
    """The candidate stream of ``pset`` (this kind's entry in ``registry.KINDS``)."""
    return TextSource(pset, seed)
