"""The dedup stage on a real local Ray and real text with natural duplicates: quality against exact
Jaccard ground truth, accounting, and byte-identical output after a worker dies mid-stage."""

import glob
import hashlib
import os

import numpy as np
import pyarrow as pa
import pytest

from taggant.jobs import dedup as dedup_job
from taggant.jobs import graph
from taggant.pipeline import io
from taggant.pipeline.dedup import DedupParams
from taggant.pipeline.spec import CorpusSpec, DedupSpec
from taggant.sketches import ngrams

pytestmark = pytest.mark.ray
THRESHOLD = 0.8


DEFAULT_DEDUP = DedupSpec()


def run_stages(corpus_dir, work, dedup=DEFAULT_DEDUP):
    corpus = CorpusSpec(paths=[str(corpus_dir / "debian-copyright.jsonl.zst")], max_shard_docs=120)
    stages = graph.data_stages(corpus, dedup, str(work))
    from rich.console import Console

    graph.run({}, stages, Console(quiet=True))
    return [s.folder for s in stages]


def read_docs(folder) -> pa.Table:
    return pa.concat_tables(io.read_table(u) for u in io.glob(io.join(folder, "shard-*.parquet")))


@pytest.fixture(scope="module")
def deduped(debian_corpus, tmp_path_factory, local_ray):
    ingest_folder, dedup_folder = run_stages(debian_corpus, tmp_path_factory.mktemp("work"))
    return read_docs(ingest_folder), dedup_folder


def test_near_duplicate_recall_and_precision_against_exact_jaccard(deduped):
    docs, folder = deduped
    texts, ids = docs.column("text").to_pylist(), docs.column("doc_id").to_pylist()
    sets = ngrams.ngram_sets(texts, 5)
    left, right = np.triu_indices(len(texts), k=1)
    similar = ngrams.jaccard(sets, left, right) >= THRESHOLD
    truth = set(zip(left[similar].tolist(), right[similar].tolist()))
    assert len(truth) > 1000  # the Debian copyright files really are full of near-duplicates

    dups = io.read_table(io.join(folder, "duplicates.parquet")).to_pylist()
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    cluster = np.arange(len(ids))
    for row in dups:
        cluster[position[row["doc_id"]]] = position[row["kept_doc_id"]]
    found = {(u, v) for u, v in truth if cluster[u] == cluster[v]}
    recall = len(found) / len(truth)
    # Precision over what dedup decided: each removed document against the one kept for it.
    removed = np.array([position[r["doc_id"]] for r in dups])
    kept_for = np.array([position[r["kept_doc_id"]] for r in dups])
    precision = float(np.mean(ngrams.jaccard(sets, removed, kept_for) >= THRESHOLD))
    print(f"pairs at J>={THRESHOLD}: {len(truth)}, recall {recall:.4f}, precision {precision:.4f}")
    assert recall >= 0.95
    assert precision >= 0.98


def test_counts_add_up_and_kept_documents_are_unique(deduped):
    docs, folder = deduped
    stats = io.read_json(io.join(folder, "stats.json"))["counts"]
    kept = read_docs(folder)
    dups = io.read_table(io.join(folder, "duplicates.parquet"))
    assert stats["input"] == docs.num_rows
    assert stats["input"] == stats["kept"] + sum(stats["removed"].values()) + sum(
        stats["quarantined"].values()
    )
    assert kept.num_rows == stats["kept"] and dups.num_rows == sum(stats["removed"].values())
    kept_ids = set(kept.column("doc_id").to_pylist())
    assert kept_ids.isdisjoint(dups.column("doc_id").to_pylist())
    assert set(dups.column("kept_doc_id").to_pylist()) <= kept_ids
    exact = dups.filter(pa.compute.equal(dups.column("reason"), "exact"))
    assert exact.num_rows == stats["removed"]["exact_dup"] > 0
    # Kept documents stay in corpus order, and each cluster keeps its first document.
    order = {doc_id: i for i, doc_id in enumerate(docs.column("doc_id").to_pylist())}
    kept_order = [order[i] for i in kept.column("doc_id").to_pylist()]
    assert kept_order == sorted(kept_order)
    assert all(order[r["kept_doc_id"]] < order[r["doc_id"]] for r in dups.to_pylist())


def digests(folder, skip=("spec.yaml",)) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path, but those whose path starts or
    ends with one of ``skip``."""
    fs, path = io.filesystem(folder)
    files = {f[len(path.rstrip("/")) + 1 :]: f for f in sorted(fs.find(path))}
    return {
        name: hashlib.sha256(fs.cat_file(f)).hexdigest()
        for name, f in files.items()
        if not any(name.startswith(s) or name.endswith(s) for s in skip)
    }


def test_a_worker_killed_mid_stage_is_retried_and_the_output_is_byte_identical(
    deduped, debian_corpus, tmp_path, monkeypatch
):
    real_sketch = dedup_job._sketch
    marker = tmp_path / "crashed-once"

    def sketch_but_die_once(shard_url, *args):
        if shard_url.endswith("shard-00000-0002.parquet") and not marker.exists():
            marker.touch()
            os._exit(1)  # the worker process dies, as an OOM kill would
        real_sketch(shard_url, *args)

    monkeypatch.setattr(dedup_job, "_sketch", sketch_but_die_once)
    _, folder = run_stages(debian_corpus, tmp_path / "work")
    assert marker.exists()
    assert digests(folder) == digests(deduped[1])


def test_output_does_not_depend_on_the_partition_count(deduped, tmp_path):
    _, folder = deduped
    (ingest_folder,) = glob.glob(os.path.join(os.path.dirname(folder), "ingest-*"))
    # Shards of 120 documents and partitions of 50: a node partition per shard.
    stats = dedup_job.run(DedupParams.from_spec(DedupSpec()), str(tmp_path), ingest_folder, 50)
    shards = len(io.glob(io.join(ingest_folder, "shard-*.parquet")))
    assert shards >= 5
    assert stats["key_partitions"] == -(-stats["counts"]["input"] // 50)
    assert stats["node_partitions"] == shards
    one = io.read_json(io.join(folder, "stats.json"))
    assert (one["key_partitions"], one["node_partitions"]) == (1, 1)
    same = [
        "counts",
        "candidate_edges",
        "exact_edges",
        "signature_accepted",
        "jaccard_checked",
        "verified_near_edges",
        "clusters_with_duplicates",
    ]
    figures = {k: v for k, v in stats.items() if k != "params"}
    print(
        f"{figures}\noutput sha256 {hashlib.sha256(repr(digests(tmp_path)).encode()).hexdigest()}"
    )
    assert {k: stats[k] for k in same} == {k: one[k] for k in same}
    # Candidates across partitions exchanged signatures, and n-gram sets where still undecided.
    assert stats["signatures_sent"] > 0 and stats["sets_sent"] > 0
    assert one["signatures_sent"] == one["sets_sent"] == 0
    # The key files differ (their row groups are the partitions); nothing else does.
    skip = ("spec.yaml", "stats.json", "_SUCCESS", "keys/")
    assert digests(tmp_path, skip) == digests(folder, skip)


def test_exact_only_removes_only_exact_duplicates(debian_corpus, tmp_path, local_ray):
    _, folder = run_stages(debian_corpus, tmp_path / "work", DedupSpec(near=False))
    stats = io.read_json(io.join(folder, "stats.json"))["counts"]
    assert stats["removed"]["near_dup"] == 0 and stats["removed"]["exact_dup"] > 0


def test_params_choose_bands_that_catch_95_percent_at_the_threshold():
    params = DedupParams.from_spec(DedupSpec())
    assert params.bands * params.rows <= 128
    from taggant.sketches.lsh import candidate_probability

    assert candidate_probability(0.8, params.bands, params.rows) >= 0.95
