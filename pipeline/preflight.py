"""Checks of a valid spec against the files it names, without Ray: what ``taggant validate`` adds
to the spec's own field and cross-field rules, so that a run does not fail minutes in.

* **Corpus paths** that match no file are errors (``corpus.paths[i]``).
* **Items too long for a sample** are errors, per set (``perturbations[i]``), naming its longest
  item. An occurrence takes at most ``pipeline.occurrence.max_item_tokens(seq_length_tokens)`` tokens.
  Generated sets (canary, ghost, testset) are drawn as the plan stage draws their first ``count``
  candidates (at most ``MAX_MEASURED``) and measured with the configured tokenizer when it is a
  file. A BPE is trained only at tokenize, so without a file an item counts its byte-level
  pre-tokens, a lower bound (a BPE token never spans two): an error here is certain, and an item
  that passes may still be refused at tokenize (by set too). A watermark item is a corpus
  document of up to ``max_doc_words`` whitespace words, each at least one token: a bound above the
  limit is an error, since such a document may be chosen.
* **More than one epoch** is a warning (``runs.train_tokens``): the corpus's text bytes are read
  from file sizes and headers where that is cheap (plain JSONL, gzip's and zstd's recorded sizes,
  Parquet's uncompressed column size) and turned into tokens at ``BYTES_PER_TOKEN``; a corpus
  whose size cannot be known so is not estimated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import zstandard

from taggant.pipeline import io
from taggant.pipeline.errors import TaggantError
from taggant.pipeline.occurrence import RESERVED_TOKENS, max_item_tokens
from taggant.pipeline.perturb.watermark import WatermarkSpec
from taggant.pipeline.spec import CorpusSpec, ExperimentSpec

MAX_MEASURED = 10_000
"""Candidates measured per generated set: enough for any ladder a CPU trains, and seconds."""
BYTES_PER_TOKEN = 4.0
"""UTF-8 bytes of English text per token of a BPE of a few thousand tokens and more: the epoch
estimate's conversion (smaller vocabularies take more tokens, so more epochs than estimated)."""

Problem = tuple[str, str]


@dataclass(frozen=True)
class Findings:
    """What ``check`` found: errors stop a run, warnings do not; both ``(field.path, message)``."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def check(spec: ExperimentSpec) -> Findings:
    """Every problem of ``spec`` that its files show; see the module docstring."""
    return Findings(corpus_paths(spec.corpus) + item_lengths(spec), epochs(spec))


def corpus_paths(corpus: CorpusSpec) -> list[Problem]:
    """One error per corpus path or glob that matches no file (or cannot be listed)."""
    problems = []
    for i, pattern in enumerate(corpus.paths):
        try:
            found = io.glob(pattern)
        except OSError as e:
            problems.append((f"corpus.paths[{i}]", f"{pattern!r} cannot be listed: {e}"))
            continue
        if not found:
            problems.append(
                (f"corpus.paths[{i}]", f"{pattern!r} matches no file; check the path or glob")
            )
    return problems


def item_lengths(spec: ExperimentSpec) -> list[Problem]:
    """The sets whose items cannot fit a sample: one error each, naming its longest item."""
    limit = max_item_tokens(spec.runs.seq_length_tokens)
    budget = (
        f"the {limit} tokens an occurrence can take in a sample (runs.seq_length_tokens "
        f"{spec.runs.seq_length_tokens} − {RESERVED_TOKENS})"
    )
    measure = _measure(spec)
    if isinstance(measure, tuple):
        return [measure]
    errors = []
    for i, pset in enumerate(spec.perturbations):
        where = f"perturbations[{i}]"
        if isinstance(pset, WatermarkSpec):
            if pset.max_doc_words > limit:
                errors.append(
                    (
                        f"{where}.max_doc_words",
                        f"set {pset.name!r} may choose documents of up to {pset.max_doc_words} "
                        f"words, at least one token each, over {budget}; lower max_doc_words to "
                        f"{limit} or raise runs.seq_length_tokens to "
                        f"{pset.max_doc_words + RESERVED_TOKENS}",
                    )
                )
            continue
        try:
            texts = _drafts(spec, i)
        except TaggantError as e:
            errors.append((where, f"set {pset.name!r}: its items cannot be drawn: {e}"))
            continue
        lengths, exact = measure(texts)
        over = [j for j, n in enumerate(lengths) if n > limit]
        if not over:
            continue
        worst = max(over, key=lambda j: lengths[j])
        errors.append(
            (
                where,
                f"set {pset.name!r}: {len(over)} of its first {len(texts)} items take more than "
                f"{budget}; the longest, candidate {worst} ({_excerpt(texts[worst])}), takes "
                f"{'' if exact else 'at least '}{lengths[worst]} tokens; shorten the set's "
                "items (its template or source) or raise runs.seq_length_tokens to "
                f"{lengths[worst] + RESERVED_TOKENS}",
            )
        )
    return errors


def _drafts(spec: ExperimentSpec, index: int) -> list[str]:
    """Texts of the first candidates of generated set ``index``, as the plan stage draws them."""
    from taggant.pipeline.perturb import registry

    pset = spec.perturbations[index]
    source = registry.make_source(pset, spec.seed, registry.CorpusInputs())
    return [d.text for d in source.draw(0, min(pset.count, MAX_MEASURED))]


def _measure(spec: ExperimentSpec):
    """``texts → (their tokens, whether exact)`` (else a lower bound), or the problem of a
    tokenizer file that cannot be read."""
    from tokenizers import pre_tokenizers

    if spec.tokenizer.kind == "file":
        from taggant.pipeline.tokenize import load_tokenizer, tokenizer_from_str

        try:
            tokenizer = tokenizer_from_str(load_tokenizer(spec.tokenizer.path).to_str())
        except TaggantError as e:
            return ("tokenizer.path", str(e))

        def exact(texts: list[str]) -> tuple[list[int], bool]:
            encoded = tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
            return [len(e.ids) for e in encoded], True

        return exact
    pieces = pre_tokenizers.ByteLevel(add_prefix_space=False)

    def lower_bounds(texts: list[str]) -> tuple[list[int], bool]:
        return [len(pieces.pre_tokenize_str(t)) for t in texts], False

    return lower_bounds


def _excerpt(text: str, chars: int = 48) -> str:
    return repr(text if len(text) <= chars else text[:chars] + "…")


def epochs(spec: ExperimentSpec) -> list[Problem]:
    """A warning per token budget above the corpus's estimated tokens (see the module
    docstring); none when a corpus file's text size cannot be read cheaply."""
    total = 0
    for pattern in spec.corpus.paths:
        for url in _glob_quietly(pattern):
            try:
                size = text_bytes(url, spec.corpus)
            except (OSError, ValueError, zstandard.ZstdError):
                size = None  # a corrupt file: ingest names it; no estimate here
            if size is None:
                return []
            total += size
    if total == 0:
        return []
    tokens = total / BYTES_PER_TOKEN
    return [
        (
            "runs.train_tokens",
            f"{budget} tokens is about {budget / tokens:.1f} epochs of the corpus ({total:,} bytes "
            f"of text before dedup ≈ {tokens:,.0f} tokens at ~{BYTES_PER_TOKEN:g} bytes a token): "
            "documents repeat in training, which memorization results then include; lower "
            "runs.train_tokens or add text",
        )
        for budget in spec.runs.train_tokens
        if budget > tokens
    ]


def _glob_quietly(pattern: str) -> list[str]:
    try:
        return io.glob(pattern)
    except OSError:  # reported by corpus_paths
        return []


def text_bytes(url: str, corpus: CorpusSpec) -> int | None:
    """About the uncompressed bytes of a corpus file's text (JSON files count their syntax too),
    from its size or header; ``None`` when that is not recorded (a zstd frame without its content
    size, a Parquet file without the text column) or the format is not one of these.

    Raises:
        OSError, ValueError, zstandard.ZstdError: the file cannot be read or is not in its format
            (an unreadable Parquet footer is a ValueError)."""
    fs, path = io.filesystem(url)
    name = path.lower()
    if name.endswith((".jsonl", ".json")):
        return fs.size(path)
    if name.endswith(".gz"):  # ISIZE: the last member's length mod 2**32; one member is usual
        if fs.size(path) >= 2**32:
            return None
        with fs.open(path, "rb") as f:
            f.seek(-4, 2)
            return int.from_bytes(f.read(4), "little")
    if name.endswith(".zst"):
        with fs.open(path, "rb") as f:
            size = zstandard.frame_content_size(f.read(18))
        return size if size >= 0 else None
    if name.endswith(".parquet") or corpus.format == "parquet":
        # pyarrow only for a Parquet corpus: validating a JSONL one loads none (tests/test_startup.py)
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with fs.open(path, "rb") as f:
                meta = pq.ParquetFile(f).metadata
        except pa.ArrowException as e:
            raise ValueError(f"{url}: unreadable Parquet footer ({e})") from e
        column = meta.schema.to_arrow_schema().get_field_index(corpus.text_field)
        if column < 0:
            return None
        return sum(
            meta.row_group(g).column(column).total_uncompressed_size
            for g in range(meta.num_row_groups)
        )
    return None
