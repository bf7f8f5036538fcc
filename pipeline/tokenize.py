"""Tokenize: corpus shards → one Megatron ``IndexedDataset`` (``.bin``/``.idx``), the base corpus.

The tokenizer is a byte-level BPE trained with Hugging Face ``tokenizers`` on the first
``train_bytes`` of the corpus in doc-id order, or any ``tokenizer.json`` loaded from a path. Each
corpus shard is tokenized on its own into a shard dataset (``tokenize_shard``, the unit of parallel
work); ``merge_shards`` concatenates them in shard order into one prefix with megatron-core's own
``IndexedDatasetBuilder.add_index``, so the result loads as is with megatron-core's
``IndexedDataset`` and with Megatron-LM's ``--data-path <folder>/base``.

Every document is its tokens followed by one EOD token. The EOD token never occurs inside a
document: corpus text is encoded with ``encode_special_tokens`` on, so a literal ``<|endoftext|>``
in the text becomes ordinary tokens. That makes "a position right after an EOD" exactly "a document
boundary", which the overlay (``pipeline.data``) and the audit rely on.

A tokenize stage folder holds (names in ``TokenizeFolder``)::

    base.bin, base.idx     the base corpus, documents in corpus-shard order then row order
    documents.parquet      doc_id and num_tokens (EOD included) per document index of ``base``
    tokenizer.json         the tokenizer (Hugging Face format)
    tokenizer_info.json    vocab_size, eod_id, pad_id, token dtype (``TokenizerInfo``)
    manifests/<run>/       each perturbed run's completed manifest: items with token_ids,
                           occurrences with token_offset
    orders.json            per sample order (by hash): its config, the runs that read it, its
                           epochs and a digest of megatron's index arrays
    stats/shard-NNNNN.json per-shard counts: docs, tokens, bytes
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from taggant.pipeline import io
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.spec import TokenizerSpec

TOKENIZE_VERSION = "tokenize.v1"
EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
EOD_CANDIDATES = (EOD_TOKEN, "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "[SEP]")
"""Special tokens taken as end-of-document in a loaded ``tokenizer.json``, by preference."""
PAD_CANDIDATES = (PAD_TOKEN, "<pad>", "[PAD]", "<|padding|>")
ENCODE_BATCH_DOCS = 256
"""Documents per ``encode_batch`` call: large enough to amortise the call, small enough to bound
the memory of one shard's worker."""
CORPUS_SHARD_GLOB = "shard-*.parquet"
TOKENIZERS_PARALLELISM = "TOKENIZERS_PARALLELISM"


@dataclass(frozen=True)
class TokenizeFolder:
    """The paths inside one tokenize stage folder.

    Raises:
        ConfigError: when ``root`` is a URL: megatron-core memory-maps ``.bin``/``.idx`` files,
            so the folder must be local or on a filesystem mounted on every node.
    """

    root: str

    def __post_init__(self) -> None:
        if "://" in self.root:
            raise ConfigError(
                [
                    (
                        "work_dir",
                        f"{self.root!r} is a URL, but megatron-core memory-maps the tokenized corpus "
                        "by path; use a local path or a filesystem mounted on every node",
                    )
                ]
            )

    @property
    def base_prefix(self) -> str:
        """Megatron dataset prefix of the base corpus (``<prefix>.bin`` / ``<prefix>.idx``)."""
        return io.join(self.root, "base")

    @property
    def tokenizer_json(self) -> str:
        return io.join(self.root, "tokenizer.json")

    @property
    def tokenizer_info(self) -> str:
        return io.join(self.root, "tokenizer_info.json")

    @property
    def documents(self) -> str:
        return io.join(self.root, "documents.parquet")

    @property
    def manifests(self) -> str:
        """The completed manifests, one ``<run name>/`` folder per perturbed run."""
        return io.join(self.root, "manifests")

    def manifest(self, run: str) -> str:
        """The completed manifest of perturbed run ``run`` (``pipeline.manifest`` layout)."""
        return io.join(self.manifests, run)

    @property
    def orders(self) -> str:
        return io.join(self.root, "orders.json")

    def load_tokenizer(self):
        """The stage's tokenizer, set up for encoding (``tokenizer_from_str``)."""
        fs, path = io.filesystem(self.tokenizer_json)
        return tokenizer_from_str(fs.cat_file(path).decode())

    def shard_prefix(self, index: int) -> str:
        """Prefix of one shard's dataset; these are merged into ``base`` and then removed."""
        return io.join(self.root, "shards", f"shard-{index:05d}")

    def shard_stats(self, index: int) -> str:
        return io.join(self.root, "stats", f"shard-{index:05d}.json")


@dataclass(frozen=True)
class TokenizerInfo:
    """What the data layer and the trainer need to know about the tokenizer.

    ``vocab_size`` is the highest id + 1, special tokens included; ``pad_id`` is -1 when the
    tokenizer has no pad token;
    ``dtype`` is the numpy dtype name of the ``.bin`` tokens (``uint16`` below 65,500 ids, else
    ``int32``, megatron-core's ``DType.optimal_dtype``).
    """

    vocab_size: int
    eod_id: int
    pad_id: int
    dtype: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def read(cls, folder: TokenizeFolder) -> TokenizerInfo:
        return cls(**io.read_json(folder.tokenizer_info))


def tokenizer_info(tokenizer) -> TokenizerInfo:
    """Find the EOD and pad ids of ``tokenizer`` and the ``.bin`` dtype its vocabulary needs.

    Raises:
        ConfigError: when no known end-of-document token is in the vocabulary.
    """
    from megatron.core.datasets.indexed_dataset import DType

    vocab = tokenizer.get_vocab(with_added_tokens=True)
    eod = next((vocab[t] for t in EOD_CANDIDATES if t in vocab), None)
    if eod is None:
        raise ConfigError(
            [
                (
                    "tokenizer.path",
                    f"the tokenizer has none of the end-of-document tokens {list(EOD_CANDIDATES)}; add "
                    f"{EOD_TOKEN!r} as a special token to the tokenizer.json",
                )
            ]
        )
    pad = next((vocab[t] for t in PAD_CANDIDATES if t in vocab), -1)
    size = max(vocab.values()) + 1  # ids may be sparse in a hand-made tokenizer.json
    return TokenizerInfo(size, eod, pad, np.dtype(DType.optimal_dtype(size)).name)


def train_bpe(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE trained on ``texts`` with ``<|endoftext|>`` (id 0) and ``<|pad|>`` (id 1).

    Deterministic: the same texts in the same order give a byte-identical ``to_str()``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOD_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str):
    """Load a ``tokenizer.json`` (Hugging Face ``tokenizers`` format) from a local path or URL.

    Raises:
        ConfigError: when the file is missing or not a tokenizer.
    """
    from tokenizers import Tokenizer

    if not io.exists(path):
        raise ConfigError(
            [("tokenizer.path", f"{path!r} does not exist; point it at a tokenizer.json")]
        )
    fs, local = io.filesystem(path)
    try:
        with fs.open(local, "r") as f:
            return Tokenizer.from_str(f.read())
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        problem = f"{path!r} is not a tokenizers tokenizer.json: {e}"
        raise ConfigError([("tokenizer.path", problem)]) from e


def tokenizer_from_str(text: str):
    """Rebuild a tokenizer from its JSON text, set up for corpus encoding: special-token strings
    in the text are encoded as ordinary text, so EOD only ever comes from ``encode_documents``."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(text)
    tokenizer.encode_special_tokens = True
    return tokenizer


def build_tokenizer(spec: TokenizerSpec, corpus_shards: list[str]):
    """The tokenizer the spec asks for: trained on the corpus (``bpe``) or loaded (``file``)."""
    if spec.kind == "file":
        return load_tokenizer(spec.path)
    return train_bpe(training_texts(corpus_shards, spec.train_bytes), spec.vocab_size)


def list_corpus_shards(corpus_folder: str) -> list[str]:
    """Sorted URLs of the corpus shards (``shard-*.parquet``, columns ``doc_id, text, source``).

    Raises:
        DataError: when the folder holds no shard.
    """
    shards = io.glob(io.join(corpus_folder, CORPUS_SHARD_GLOB))
    if not shards:
        raise DataError(
            f"{corpus_folder} holds no {CORPUS_SHARD_GLOB}; run the stage that writes the corpus "
            "(ingest, dedup, plan) first"
        )
    return shards


def training_texts(corpus_shards: list[str], train_bytes: int) -> list[str]:
    """The first documents in doc-id order whose UTF-8 sizes add up to at least ``train_bytes``
    (all of them if the corpus is smaller). Independent of how documents are sharded."""
    keys = []
    for shard, url in enumerate(corpus_shards):
        table = io.read_table(url, columns=["doc_id", "text"])
        sizes = pc.binary_length(table["text"]).to_pylist()
        keys += [
            (doc_id, shard, row, size)
            for row, (doc_id, size) in enumerate(zip(table["doc_id"].to_pylist(), sizes))
        ]
    keys.sort()
    # The shortest prefix whose sizes reach train_bytes.
    chosen = keys[: int(np.searchsorted(np.cumsum([k[3] for k in keys]), train_bytes)) + 1]
    rows_of: dict[int, list[int]] = {}
    for _, shard, row, _ in chosen:
        rows_of.setdefault(shard, []).append(row)
    texts: dict[tuple[int, int], str] = {}
    for shard, rows in rows_of.items():
        column = io.read_table(corpus_shards[shard], columns=["text"])["text"].take(rows)
        texts.update({(shard, row): text for row, text in zip(rows, column.to_pylist())})
    return [texts[(shard, row)] for _, shard, row, _ in chosen]


@contextmanager
def one_thread() -> Iterator[None]:
    """Make ``tokenizers`` encode on the calling thread only (it reads ``TOKENIZERS_PARALLELISM``
    on every batch call): shard tasks are the unit of parallelism, one core each."""
    before = os.environ.get(TOKENIZERS_PARALLELISM)
    os.environ[TOKENIZERS_PARALLELISM] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ[TOKENIZERS_PARALLELISM]
        else:
            os.environ[TOKENIZERS_PARALLELISM] = before


def encode_documents(tokenizer, texts: list[str], eod_id: int) -> list[np.ndarray]:
    """Token ids of each text followed by ``eod_id`` (int64 arrays, the order of ``texts``)."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    return [np.array([*e.ids, eod_id], dtype=np.int64) for e in encodings]


def tokenize_shard(tokenizer_json: str, shard_url: str, out_prefix: str) -> dict:
    """Tokenize one corpus shard into the Megatron dataset ``out_prefix`` (one document per row,
    in row order, each ending with EOD), on one core.

    Both files are written under temporary names and renamed, so a retried task overwrites its
    own output (with the same bytes) and no file is ever seen half-written.

    Returns:
        ``{"docs", "tokens", "bytes", "encode_s"}``: documents, tokens written (EOD included),
        UTF-8 text bytes read, and seconds spent encoding.
    """
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    tokenizer = tokenizer_from_str(tokenizer_json)
    info = tokenizer_info(tokenizer)
    os.makedirs(os.path.dirname(out_prefix), exist_ok=True)
    tmp = f"{out_prefix}.tmp-{os.getpid()}"
    builder = IndexedDatasetBuilder(tmp + ".bin", dtype=np.dtype(info.dtype).type)
    docs = tokens = nbytes = 0
    encode_s = 0.0
    for texts in _text_batches(shard_url):
        start = time.perf_counter()
        with one_thread():
            encoded = encode_documents(tokenizer, texts, info.eod_id)
        encode_s += time.perf_counter() - start
        for ids in encoded:
            builder.add_document(ids, [len(ids)])
        docs += len(texts)
        tokens += sum(len(ids) for ids in encoded)
        nbytes += sum(len(t.encode()) for t in texts)
    builder.finalize(tmp + ".idx")
    os.replace(tmp + ".bin", out_prefix + ".bin")
    os.replace(tmp + ".idx", out_prefix + ".idx")
    return {"docs": docs, "tokens": tokens, "bytes": nbytes, "encode_s": encode_s}


def _text_batches(shard_url: str) -> Iterator[list[str]]:
    fs, path = io.filesystem(shard_url)
    with fs.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=ENCODE_BATCH_DOCS, columns=["text"]):
            yield batch.column("text").to_pylist()


def merge_shards(shard_prefixes: list[str], out_prefix: str, dtype: str) -> None:
    """Concatenate shard datasets, in the given order, into ``out_prefix`` (megatron-core's
    ``IndexedDatasetBuilder.add_index``, the same routine as Megatron-LM's merge tool)."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    tmp = f"{out_prefix}.tmp-{os.getpid()}"
    builder = IndexedDatasetBuilder(tmp + ".bin", dtype=np.dtype(dtype).type)
    for prefix in shard_prefixes:
        builder.add_index(prefix)
    builder.finalize(tmp + ".idx")
    os.replace(tmp + ".bin", out_prefix + ".bin")
    os.replace(tmp + ".idx", out_prefix + ".idx")


def save_tokenizer(folder: TokenizeFolder, tokenizer_json: str) -> TokenizerInfo:
    """Write the tokenizer and its ``TokenizerInfo`` into the stage folder."""
    info = tokenizer_info(tokenizer_from_str(tokenizer_json))
    io.write_text(folder.tokenizer_json, tokenizer_json)
    io.write_json(folder.tokenizer_info, info.to_dict())
    return info


def assemble(folder: TokenizeFolder, corpus_shards: list[str], dtype: str) -> None:
    """Merge the shard datasets (``tokenize_shard`` outputs) in shard order into ``base``,
    remove them, and write ``documents.parquet``."""
    prefixes = [folder.shard_prefix(i) for i in range(len(corpus_shards))]
    merge_shards(prefixes, folder.base_prefix, dtype)
    io.remove(io.join(folder.root, "shards"))
    io.write_table(folder.documents, documents_table(corpus_shards, folder.base_prefix))


def documents_table(corpus_shards: list[str], prefix: str) -> pa.Table:
    """``doc_id`` and ``num_tokens`` (EOD included) for each document index of dataset ``prefix``
    built from ``corpus_shards`` in order.

    Raises:
        DataError: when the dataset and the shards disagree on the number of documents.
    """
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    doc_ids = pa.chunked_array(
        [io.read_table(url, columns=["doc_id"])["doc_id"] for url in corpus_shards], pa.string()
    )
    dataset = IndexedDataset(prefix)
    # A copy: the array maps the .idx file, which is unmapped when the dataset is deleted.
    lengths = dataset.sequence_lengths.copy()
    del dataset
    if len(lengths) != len(doc_ids):
        raise DataError(
            f"{prefix}.idx has {len(lengths)} documents but the corpus shards have {len(doc_ids)}; "
            "the tokenize folder is stale: delete it and re-run the stage"
        )
    return pa.table(
        {"doc_id": doc_ids.combine_chunks(), "num_tokens": pa.array(lengths, pa.int32())}
    )


def tokenize_items(tokenizer, items: pa.Table, max_tokens: int) -> pa.Table:
    """``items`` with ``token_ids`` set to each text's tokens and ``variant_token_ids`` to its
    variants' (no EOD; the overlay adds it), by a tokenizer from ``tokenizer_from_str``, which
    encodes the corpus the same way.

    Raises:
        DataError: items (text or a variant) longer than ``max_tokens``: how many in each set,
            and its longest.
    """
    texts = items["text"].to_pylist()
    variants = [v or [] for v in items["variants"].to_pylist()]
    flat = texts + [v for vs in variants for v in vs]
    encoded = (
        [e.ids for e in tokenizer.encode_batch(flat, add_special_tokens=False)] if flat else []
    )
    ids, rest = encoded[: len(texts)], iter(encoded[len(texts) :])
    variant_ids = [[next(rest) for _ in vs] for vs in variants]
    by_set: dict[str, list[tuple[int, str]]] = {}
    for item, set_name, t, vs in zip(
        items["item_id"].to_pylist(), items["set"].to_pylist(), ids, variant_ids
    ):
        longest = max(len(x) for x in [t, *vs])
        if longest > max_tokens:
            by_set.setdefault(set_name, []).append((longest, item))
    if by_set:
        shown = "; ".join(
            f"set {name!r}: {len(over)} (the longest {max(over)[1]}, {max(over)[0]} tokens)"
            for name, over in sorted(by_set.items(), key=lambda kv: -len(kv[1]))
        )
        raise DataError(
            f"{sum(map(len, by_set.values()))} items are longer than the {max_tokens} tokens an "
            f"occurrence can take in a sample: {shown}; shorten those sets' items (a template, "
            "a testset's path, a watermark set's max_doc_words) or raise "
            "runs.seq_length_tokens (taggant validate checks this before a run)"
        )
    column = pa.array(ids, pa.list_(pa.int32()))
    items = items.set_column(items.schema.get_field_index("token_ids"), "token_ids", column)
    column = pa.array(variant_ids, pa.list_(pa.list_(pa.int32())))
    index = items.schema.get_field_index("variant_token_ids")
    return items.set_column(index, "variant_token_ids", column)
