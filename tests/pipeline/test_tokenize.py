"""Tokenize: a real byte-level BPE trained on real Debian text, real megatron-core datasets.

The builders here (corpus shards, the planner's manifests, the tokenize stage's steps run without
Ray) are shared with ``test_data.py`` and ``tests/jobs/test_tokenize_job.py``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from taggant.pipeline import data, io, manifest, occurrence, stage, tokenize
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.ingest import DOCS_SCHEMA
from taggant.pipeline.perturb import canary, plan
from taggant.pipeline.spec import ExperimentSpec, TokenizerSpec, parse_spec
from taggant.pipeline.stage import StageKey
from taggant.pipeline.tokenize import TokenizeFolder
from tests.corpus import pinned_docs

CORPUS_BYTES = 1_200_000
VOCAB_SIZE = 512
SEQ = 128
SAMPLES = 800


@cache
def _copyright_docs() -> tuple[dict[str, str], ...]:
    return tuple(pinned_docs("copyright"))


def debian_texts(max_bytes: int = CORPUS_BYTES) -> list[dict[str, str]]:
    """The first Debian copyright documents, in package order, up to ``max_bytes`` of text."""
    docs, total = [], 0
    for doc in _copyright_docs():
        if total >= max_bytes:
            break
        docs.append(doc)
        total += len(doc["text"].encode())
    return docs


def debian_paragraphs(max_bytes: int = CORPUS_BYTES) -> list[dict[str, str]]:
    """The same text cut at blank lines into short documents, so that samples hold many
    document boundaries."""
    return [
        {"id": f"{d['id']}#{k:04d}", "text": para}
        for d in debian_texts(max_bytes)
        for k, para in enumerate(d["text"].split("\n\n"))
        if para.strip()
    ]


def write_corpus_shards(folder: Path, docs: list[dict[str, str]], num_shards: int = 3) -> str:
    """Write ``docs`` as contiguous ``shard-NNNNN.parquet`` files (the corpus stage layout)."""
    bounds = np.linspace(0, len(docs), num_shards + 1).astype(int)
    for s, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        part = docs[lo:hi]
        table = pa.table(
            {
                "doc_id": [d["id"] for d in part],
                "text": [d["text"] for d in part],
                "source": ["debian"] * len(part),
            },
            schema=DOCS_SCHEMA,
        )
        io.write_table(str(folder / f"shard-{s:05d}.parquet"), table)
    return str(folder)


def make_spec(
    tmp: Path,
    train_tokens: int = SEQ * SAMPLES,
    dup_levels: tuple[int, ...] = (1, 4, 8),
    canaries: int = 16,
) -> ExperimentSpec:
    """``SAMPLES`` samples of ``SEQ`` tokens (steps of 8) and one canary set on ``dup_levels``."""
    return parse_spec(
        {
            "name": "tok-test",
            "seed": 7,
            "work_dir": str(tmp / "work"),
            "corpus": {"paths": [str(tmp / "unused.jsonl")]},
            "perturbations": [
                {
                    "kind": "canary",
                    "name": "canary",
                    "count": canaries,
                    "dup_levels": list(dup_levels),
                    "control_frac": 0.25,
                }
            ],
            "tokenizer": {"kind": "bpe", "vocab_size": VOCAB_SIZE, "train_bytes": 600_000},
            "runs": {
                "model_sizes": ["tiny-2m"],
                "train_tokens": [train_tokens],
                "seq_length_tokens": SEQ,
                "global_batch_sequences": 8,
                "micro_batch_sequences": 4,
            },
            "store": {"url": str(tmp / "store")},
        }
    )


def plan_manifests(folder: Path, spec: ExperimentSpec) -> str:
    """The planner's per-run manifests for ``spec``; returns their ``manifests`` folder. Items
    come straight from the canary generator (the plan stage also decontaminates the corpus)."""
    drafts = [
        canary.CanarySource(pset, spec.seed).draw(0, pset.count) for pset in spec.perturbations
    ]
    plan.write_manifests(str(folder), spec, plan.items_table(spec.perturbations, drafts, spec.seed))
    return str(folder / "manifests")


def perturbed_run(spec: ExperimentSpec) -> str:
    (run_id,) = [r for r in spec.runs.grid() if r.perturbed]
    return run_id.name


def tokenize_locally(
    spec: ExperimentSpec, folder: str, corpus_folder: str, manifests_folder: str
) -> TokenizeFolder:
    """The tokenize stage's steps in one process, in order (what ``jobs.tokenize.run`` runs on
    Ray), committed like a stage."""
    out = TokenizeFolder(folder)
    shards = tokenize.list_corpus_shards(corpus_folder)
    tokenizer_json = tokenize.build_tokenizer(spec.tokenizer, shards).to_str()
    info = tokenize.save_tokenizer(out, tokenizer_json)
    for i, url in enumerate(shards):
        tokenize.tokenize_shard(tokenizer_json, url, out.shard_prefix(i))
    tokenize.assemble(out, shards, info.dtype)
    data.complete_manifests(spec, out, manifests_folder)
    stage.commit(folder, StageKey("tokenize", tokenize.TOKENIZE_VERSION, {}), {}, {})
    return out


@pytest.fixture(scope="module")
def docs() -> list[dict[str, str]]:
    return debian_texts()


@pytest.fixture(scope="module")
def bpe(docs):
    return tokenize.train_bpe([d["text"] for d in docs[:60]], VOCAB_SIZE)


def test_bpe_training_is_deterministic_and_decodes_back(docs, bpe):
    again = tokenize.train_bpe([d["text"] for d in docs[:60]], VOCAB_SIZE)
    assert again.to_str() == bpe.to_str()
    info = tokenize.tokenizer_info(bpe)
    assert (info.vocab_size, info.eod_id, info.pad_id, info.dtype) == (VOCAB_SIZE, 0, 1, "uint16")
    text = docs[-1]["text"]
    assert bpe.decode(bpe.encode(text).ids) == text


def test_tokens_round_trip_through_the_indexed_dataset(tmp_path, docs, bpe):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    corpus = write_corpus_shards(tmp_path / "corpus", docs[:90])
    out = TokenizeFolder(str(tmp_path / "tok"))
    shards = tokenize.list_corpus_shards(corpus)
    info = tokenize.save_tokenizer(out, bpe.to_str())
    stats = [
        tokenize.tokenize_shard(bpe.to_str(), url, out.shard_prefix(i))
        for i, url in enumerate(shards)
    ]
    tokenize.assemble(out, shards, info.dtype)

    dataset = IndexedDataset(out.base_prefix)
    assert len(dataset) == 90 == sum(s["docs"] for s in stats)
    assert int(dataset.sequence_lengths.sum()) == sum(s["tokens"] for s in stats)
    encoder = out.load_tokenizer()
    for k, doc in enumerate(docs[:90]):
        tokens = dataset[k]
        assert tokens.dtype == np.uint16
        assert tokens.tolist() == encoder.encode(doc["text"]).ids + [info.eod_id]
        assert encoder.decode(tokens[:-1].tolist()) == doc["text"]
    documents = io.read_table(out.documents)
    assert documents["doc_id"].to_pylist() == [d["id"] for d in docs[:90]]
    assert documents["num_tokens"].to_pylist() == dataset.sequence_lengths.tolist()
    assert not io.exists(io.join(out.root, "shards"))


def test_literal_eod_text_stays_inside_its_document(tmp_path, bpe):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    corpus = tmp_path / "corpus"
    io.write_table(
        str(corpus / "shard-00000.parquet"),
        pa.table(
            {"doc_id": ["a"], "text": ["before <|endoftext|> after"], "source": ["x"]},
            schema=DOCS_SCHEMA,
        ),
    )
    prefix = str(tmp_path / "one")
    tokenize.tokenize_shard(bpe.to_str(), str(corpus / "shard-00000.parquet"), prefix)
    dataset = IndexedDataset(prefix)  # kept alive: its items are views of the mapped .bin
    tokens = dataset[0]
    assert np.flatnonzero(tokens == 0).tolist() == [len(tokens) - 1]


def test_training_texts_follow_doc_id_order_whatever_the_sharding(tmp_path, docs):
    shuffled = [docs[i] for i in np.random.default_rng(0).permutation(40)]
    two = tokenize.list_corpus_shards(write_corpus_shards(tmp_path / "two", shuffled, 2))
    five = tokenize.list_corpus_shards(write_corpus_shards(tmp_path / "five", shuffled[::-1], 5))
    texts = tokenize.training_texts(two, 100_000)
    assert texts == tokenize.training_texts(five, 100_000)
    by_id = sorted(docs[:40], key=lambda d: d["id"])
    assert texts == [d["text"] for d in by_id[: len(texts)]]
    assert sum(len(t.encode()) for t in texts[:-1]) < 100_000 <= sum(len(t.encode()) for t in texts)


def test_a_tokenizer_json_from_a_path(tmp_path, bpe):
    path = tmp_path / "tokenizer.json"
    path.write_text(bpe.to_str())
    loaded = tokenize.build_tokenizer(TokenizerSpec(kind="file", path=str(path)), [])
    assert loaded.to_str() == bpe.to_str()
    with pytest.raises(ConfigError, match="does not exist"):
        tokenize.load_tokenizer(str(tmp_path / "missing.json"))
    from tokenizers import Tokenizer, models

    no_eod = tmp_path / "no_eod.json"
    no_eod.write_text(Tokenizer(models.BPE()).to_str())
    with pytest.raises(ConfigError, match="end-of-document"):
        tokenize.tokenizer_info(tokenize.load_tokenizer(str(no_eod)))


def test_items_get_token_ids_and_too_long_ones_are_refused(tmp_path, bpe):
    spec = make_spec(tmp_path)
    items, _, _ = manifest.read(
        io.join(plan_manifests(tmp_path / "plan", spec), perturbed_run(spec))
    )
    encoder = tokenize.tokenizer_from_str(bpe.to_str())
    filled = tokenize.tokenize_items(encoder, items, occurrence.max_item_tokens(SEQ))
    for text, ids in zip(filled["text"].to_pylist(), filled["token_ids"].to_pylist()):
        assert ids == encoder.encode(text).ids and 0 < len(ids) <= SEQ - 3
    longest = max(len(ids) for ids in filled["token_ids"].to_pylist())
    with pytest.raises(DataError, match="raise runs.seq_length_tokens"):
        tokenize.tokenize_items(encoder, items, longest - 1)
    # Every set over the limit is named with its count and its own longest item: the items split
    # into two sets, every third one in the second.
    sets = ["other" if i % 3 == 0 else "canary" for i in range(items.num_rows)]
    items = items.set_column(items.schema.get_field_index("set"), "set", pa.array(sets))
    filled = filled.set_column(filled.schema.get_field_index("set"), "set", pa.array(sets))
    limit = sorted(len(ids) for ids in filled["token_ids"].to_pylist())[filled.num_rows // 2]
    over: dict[str, list[tuple[int, str]]] = {}
    for row in filled.to_pylist():
        if len(row["token_ids"]) > limit:
            over.setdefault(row["set"], []).append((len(row["token_ids"]), row["item_id"]))
    assert len(over) > 1, over  # the check below must tell sets apart
    with pytest.raises(DataError) as info:
        tokenize.tokenize_items(encoder, items, limit)
    message = str(info.value)
    assert message.startswith(f"{sum(map(len, over.values()))} items are longer than the {limit}")
    for name, rows in over.items():
        n, item = max(rows)
        assert f"set {name!r}: {len(rows)} (the longest {item}, {n} tokens)" in message


def test_corpus_folder_without_shards_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no shard-"):
        tokenize.list_corpus_shards(str(tmp_path))


def test_a_tokenize_folder_must_be_a_path_megatron_can_map():
    with pytest.raises(ConfigError, match="memory-maps"):
        TokenizeFolder("s3://bucket/work/tokenize-0123abcd")
