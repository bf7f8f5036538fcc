"""Tokenization throughput and overlay read overhead, taggant against its peers, in one run.

Usage (repository root):
    .venv/bin/python bench/tokenization.py [--mb 8] [--vocab 4096] [--workers 2] [--samples 20000]
        [--repeat 2]

Corpus: real text nobody here wrote, on every Debian machine (``pipeline.corpora``): the
copyright files, then the changelogs, one document per file, the first ``--mb`` MB.

1. Tokenization, Debian text in -> token ids out, one byte-level BPE (``--vocab``) trained on
   the first 2 MB:
   * peer: plain ``tokenizers`` ``encode_batch`` on the list of texts, ids taken out, one thread
     (TOKENIZERS_PARALLELISM=false) and every thread; no I/O.
   * ours, one core: ``pipeline.tokenize.tokenize_shard`` over the corpus as one Parquet shard:
     read Parquet, encode, append EOD, write Megatron ``.bin``/``.idx`` with megatron-core's
     ``IndexedDatasetBuilder``.
   * ours on Ray: the same function as one task per shard (``--workers`` shards of equal bytes,
     local Ray with ``--workers`` CPUs), then ``merge_shards`` into one prefix; Ray start-up and
     a first untimed pass (worker imports) excluded.
   MB/s are UTF-8 text MB per wall second, best of ``--repeat``; "per core" divides by the cores
   used; MB/CPU-s divide by CPU seconds (the driver's and the tasks'), which a busy shared machine
   does not inflate; "vs peer" compares MB/CPU-s with the peer on one thread.
2. Reading samples (seq 128 + 1 tokens) in training order, CPU µs per sample, best of 5, from run
   folders prepared as the trainer's are (the planner places one canary copy in 1 sample of 8,
   the tokenize steps fix the offsets, ``prepare_run_dir``, ``open_training_samples``):
   * megatron-core: ``GPTDataset._query_document_sample_shuffle_indices`` (what its
     ``__getitem__`` reads), and ``GPTDataset.__getitem__`` (adds masks and position ids);
   * ours: ``TrainingSamples.read`` one sample at a time for the standard twin (no overlay) and
     for the perturbed run, its samples timed apart with and without an occurrence; and one
     ``read(0, N)`` call. Overhead = ours - megatron-core's query.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pyarrow as pa

from taggant.pipeline import corpora, data, io, stage, tokenize
from taggant.pipeline.data import TrainingSamples
from taggant.pipeline.ingest import DOCS_SCHEMA
from taggant.pipeline.perturb import canary, plan
from taggant.pipeline.spec import ExperimentSpec, parse_spec
from taggant.pipeline.stage import StageKey
from taggant.pipeline.tokenize import TokenizeFolder

SEQ = 128
OCCURRENCE_EVERY = 8
TRAIN_BYTES = 2_000_000
READ_REPEAT = 5


def corpus_texts(megabytes: float) -> list[str]:
    texts, total = [], 0
    for kind in ("copyright", "changelog"):
        for doc in corpora.debian_docs(kind):
            if total >= megabytes * 1e6:
                return texts
            texts.append(doc["text"])
            total += len(doc["text"].encode())
    return texts


def write_shards(folder: Path, texts: list[str], num_shards: int) -> list[str]:
    """Contiguous shards of about equal bytes (Debian documents range from 1 kB to 3 MB)."""
    ends = np.cumsum([len(t.encode()) for t in texts])
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, num_shards) / num_shards)
    urls = []
    for s, part in enumerate(np.split(np.arange(len(texts)), cuts)):
        url = str(folder / f"shard-{s:05d}.parquet")
        table = {
            "doc_id": [f"d{i:06d}" for i in part],
            "text": [texts[i] for i in part],
            "source": ["debian"] * len(part),
        }
        io.write_table(url, pa.table(table, schema=DOCS_SCHEMA))
        urls.append(url)
    return urls


def measure(fn, repeat: int) -> list[tuple[float, float]]:
    """``(wall s, CPU s)`` of each of ``repeat`` runs. CPU seconds are this process's, all
    threads, plus what ``fn`` returns (its Ray tasks'): unlike wall time, they do not grow when
    other work shares the cores."""
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        remote_cpu = fn() or 0.0
        runs.append((time.perf_counter() - wall, time.process_time() - cpu + remote_cpu))
    return runs


def _cpu_timed_shard(tokenizer_json: str, url: str, prefix: str) -> float:
    """``tokenize_shard`` in a Ray task; returns the task's CPU seconds."""
    start = time.process_time()
    tokenize.tokenize_shard(tokenizer_json, url, prefix)
    return time.process_time() - start


def bench_tokenization(
    texts: list[str], spec: ExperimentSpec, workers: int, repeat: int, out: TokenizeFolder
) -> None:
    """Print part 1; leaves the single-core output assembled as the base dataset of ``out``."""
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    tmp = Path(out.root).parent
    bpe = tokenize.train_bpe(texts_up_to(texts, TRAIN_BYTES), spec.tokenizer.vocab_size)
    tokenizer_json = bpe.to_str()
    info = tokenize.save_tokenizer(out, tokenizer_json)
    encoder = out.load_tokenizer()

    def peer() -> None:
        [e.ids for e in encoder.encode_batch(texts, add_special_tokens=False)]

    with tokenize.one_thread():
        peer_one = measure(peer, repeat)
    peer_all = measure(peer, repeat)
    shards = write_shards(tmp / "corpus", texts, 1)

    def ours() -> None:
        tokenize.tokenize_shard(tokenizer_json, shards[0], out.shard_prefix(0))

    ours_one = measure(ours, repeat)
    tokenize.assemble(out, shards, info.dtype)

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    parts = write_shards(tmp / "parts", texts, workers)
    prefixes = [str(tmp / "parts" / f"part-{i}") for i in range(workers)]
    task = ray.remote(num_cpus=1)(_cpu_timed_shard)

    def on_ray() -> float:
        cpu = ray.get([task.remote(tokenizer_json, url, p) for url, p in zip(parts, prefixes)])
        tokenize.merge_shards(prefixes, str(tmp / "parts" / "base"), info.dtype)
        return sum(cpu)

    on_ray()  # worker start-up and imports, not timed
    ours_ray = measure(on_ray, repeat)
    ray.shutdown()
    cores = os.cpu_count()
    print(
        f"\n1. tokenization of {megabytes:.1f} MB ({len(texts)} docs), "
        f"byte-level BPE vocab {info.vocab_size}, best of {repeat}"
    )
    print(f"{'':48}{'MB/s':>7}{'MB/s/core':>11}{'MB/CPU-s':>10}{'vs peer':>9}")
    peer_rate = megabytes / min(c for _, c in peer_one)
    for label, runs, used in [
        ("tokenizers encode_batch -> ids, 1 thread", peer_one, 1),
        (f"tokenizers encode_batch -> ids, {cores} threads", peer_all, cores),
        ("ours tokenize_shard, 1 core (+ I/O)", ours_one, 1),
        (f"ours on Ray, {workers} workers (+ I/O, merge)", ours_ray, workers),
    ]:
        rate = megabytes / min(w for w, _ in runs)
        per_cpu = megabytes / min(c for _, c in runs)
        print(f"{label:48}{rate:7.2f}{rate / used:11.2f}{per_cpu:10.2f}{per_cpu / peer_rate:8.2f}x")


def texts_up_to(texts: list[str], nbytes: float) -> list[str]:
    out, total = [], 0
    for t in texts:
        if total >= nbytes:
            break
        out.append(t)
        total += len(t.encode())
    return out


def bench_spec(tmp: Path, num_samples: int, vocab: int) -> ExperimentSpec:
    """One run of ``num_samples`` samples and its twin; one canary copy in 1 sample of 8."""
    return parse_spec(
        {
            "name": "bench",
            "seed": 1,
            "work_dir": str(tmp),
            "corpus": {"paths": [str(tmp)]},
            "perturbations": [
                {
                    "kind": "canary",
                    "name": "canary",
                    "count": num_samples // OCCURRENCE_EVERY,
                    "dup_levels": [1],
                    "control_frac": 0.0,
                }
            ],
            "tokenizer": {"kind": "bpe", "vocab_size": vocab},
            "runs": {
                "model_sizes": ["tiny-2m"],
                "train_tokens": [num_samples * SEQ],
                "seq_length_tokens": SEQ,
                "global_batch_sequences": 8,
                "micro_batch_sequences": 4,
            },
            "store": {"url": str(tmp / "store")},
        }
    )


def prepare_runs(spec: ExperimentSpec, out: TokenizeFolder) -> dict[bool, TrainingSamples]:
    """Plan the canaries (the planner's placement), complete the manifest, prepare both runs."""
    tmp = Path(out.root).parent
    drafts = [canary.CanarySource(p, spec.seed).draw(0, p.count) for p in spec.perturbations]
    plan.write_manifests(
        str(tmp / "plan"), spec, plan.items_table(spec.perturbations, drafts, spec.seed)
    )
    data.complete_manifests(spec, out, str(tmp / "plan" / "manifests"))
    stage.commit(out.root, StageKey("tokenize", tokenize.TOKENIZE_VERSION, {}), {}, {})
    runs = {}
    for run_id in spec.runs.grid():
        data.prepare_run_dir(str(tmp / run_id.name), spec, run_id, out.root)
        runs[run_id.perturbed] = data.open_training_samples(str(tmp / run_id.name))
    return runs


def bench_reads(runs: dict[bool, TrainingSamples]) -> None:
    perturbed, twin = runs[True], runs[False]
    dataset = twin.stream.dataset
    n = len(twin)
    with_occurrence = sorted(perturbed.overlay.patches)
    without = sorted(set(range(n)) - set(with_occurrence))

    def per_sample(read, indices) -> float:
        """Best CPU µs per sample of ``read(i)`` over ``indices``."""

        def loop() -> None:
            for i in indices:
                read(i)

        return min(cpu for _, cpu in measure(loop, READ_REPEAT)) / len(indices) * 1e6

    def one_call() -> None:
        perturbed.read(0, n)

    def ours(samples: TrainingSamples):
        return lambda i: samples.read(i, i + 1)

    query = dataset._query_document_sample_shuffle_indices
    rows = [
        ("megatron-core GPTDataset query", query, range(n)),
        ("megatron-core GPTDataset __getitem__", dataset.__getitem__, range(min(n, 2000))),
        ("ours, standard twin (no overlay)", ours(twin), range(n)),
        ("ours, perturbed, samples without occurrence", ours(perturbed), without),
        ("ours, perturbed, samples with occurrence", ours(perturbed), with_occurrence),
    ]
    timings = [(label, per_sample(read, indices)) for label, read, indices in rows]
    timings.append(
        (
            "ours, perturbed, read(0, N) in one call",
            min(cpu for _, cpu in measure(one_call, READ_REPEAT)) / n * 1e6,
        )
    )
    base = timings[0][1]
    print(
        f"\n2. reading {n} samples of {SEQ}+1 tokens in training order, "
        f"{len(with_occurrence)} with an occurrence, best of {READ_REPEAT}"
    )
    print(f"{'':46}{'CPU µs/sample':>14}{'vs query':>10}")
    for label, us in timings:
        print(f"{label:46}{us:14.2f}{us - base:+10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=8.0)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"tokenizers {version('tokenizers')}, megatron-core {version('megatron-core')}, "
        f"ray {version('ray')}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-tokenize-") as tmp:
        spec = bench_spec(Path(tmp), args.samples, args.vocab)
        out = TokenizeFolder(str(Path(tmp) / "tokenize"))
        bench_tokenization(corpus_texts(args.mb), spec, args.workers, args.repeat, out)
        bench_reads(prepare_runs(spec, out))


if __name__ == "__main__":
    main()
