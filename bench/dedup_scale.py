"""How the dedup stage scales with corpus size: time and peak memory at 1x, 2x and 4x, one core.

Usage (repository root):
    .venv/bin/python bench/dedup_scale.py [--sizes 1 2 4] [--no-peers]

Corpus: a pool of real text nobody here wrote, shuffled by a hash of each document's id; size k
is the first k/K of it by bytes (K the largest size), so every size has the same mix:
* Debian /usr/share/doc/*/copyright and changelog.Debian.gz (`pipeline.corpora`, always present);
* with the Debian packages linux-doc-6.1, python3.11-doc and perl-doc installed (as root:
  `apt-get update && apt-get install -y --no-install-recommends linux-doc-6.1 python3.11-doc
  perl-doc`), their .rst/.txt/.pod sources too (linux-doc ships each .rst twice: exact dups).
Without them the pool is the Debian texts alone (36 MB) and the sizes are smaller.

For each size, on a fresh embedded local Ray with 1 CPU (fresh, so each size's memory high-water
marks are its own): ingest (untimed), a warm-up dedup on 100 documents, then the dedup stage,
timed as `bench/dedup.py` times it: wall seconds, CPU seconds of the driver and the Ray workers,
and the peak resident memory (VmHWM) of the driver and of the largest worker. Ray's object store
is shared memory and shows up in a worker's RSS only as far as the worker maps it. Then, in the
same run, rensa and datasketch (the streaming deduplicators of `bench/dedup.py`) on the same
JSONL, one process each, with their peak RSS.

The table gives per-size rates and ratios to the 1x row: linear growth keeps CPU s/MB and wall
s/MB flat, and memory that grows at most with the largest task (a shard, a key partition).
"""

import argparse
import gzip
import os
import resource
import tempfile
import time
from pathlib import Path

import dedup as bench  # bench/dedup.py: corpus, peers, timing and memory helpers
import xxhash
from rich.console import Console

from taggant.jobs import graph
from taggant.jobs.runtime import ray_session
from taggant.pipeline.spec import CorpusSpec, DedupSpec

POOL_SOURCES = {
    "linux-doc": ("/usr/share/doc/linux-doc-6.1", ("*.rst.gz", "*.rst.txt")),
    "python-doc": ("/usr/share/doc/python3.11-doc/html/_sources", ("*.txt",)),
    "perl-doc": ("/usr/share/perl", ("*.pod",)),
}


def package_docs() -> list[dict[str, str]]:
    """Documents of the optional Debian doc packages that are installed, one per file."""
    docs = []
    for name, (root, patterns) in POOL_SOURCES.items():
        for pattern in patterns:
            for path in sorted(Path(root).rglob(pattern)):
                raw = path.read_bytes()
                if path.suffix == ".gz":
                    raw = gzip.decompress(raw)
                text = raw.decode("utf-8", errors="replace")
                if text.strip():
                    docs.append({"id": f"{name}/{path.relative_to(root)}", "text": text})
    return docs


def pool() -> list[dict[str, str]]:
    docs = bench.load_docs() + package_docs()
    return sorted(docs, key=lambda d: xxhash.xxh3_64_intdigest(d["id"].encode()))


def prefix(docs: list[dict], fraction: float) -> list[dict]:
    """The shortest prefix holding ``fraction`` of the pool's bytes."""
    total = sum(len(d["text"].encode()) for d in docs)
    out, size = [], 0
    for d in docs:
        if size >= fraction * total:
            break
        out.append(d)
        size += len(d["text"].encode())
    return out


def run_ours(corpus_path: Path, warmup_path: Path, work_dir: Path) -> dict:
    bench.reset_peak_rss()
    with ray_session(num_cpus=1):
        bench.run_stages(warmup_path, work_dir / "warmup")
        corpus = CorpusSpec(paths=[str(corpus_path)], max_doc_bytes=bench.MAX_DOC_BYTES)
        dedup = DedupSpec(
            threshold=bench.THRESHOLD,
            num_perm=bench.NUM_PERM,
            ngram_words=bench.NGRAM,
            bands=bench.BANDS,
            rows=bench.ROWS,
        )
        stages = graph.data_stages(corpus, dedup, str(work_dir / "run"))
        graph.run({}, stages[:1], Console(quiet=True))
        bench.reset_peak_rss()  # the driver's peak from here on is the dedup stage's
        timing, (summary,) = bench.measure(
            bench.ray_cpu_seconds, graph.run, {}, stages[1:], Console(quiet=True)
        )
        worker_mb = max(bench.peak_rss_mb(p.pid) for p in bench.ray_workers())
    return {
        "timing": timing,
        "stats": summary["stats"],
        "driver_mb": bench.peak_rss_mb(),
        "worker_mb": worker_mb,
    }


def run_peer(fn, corpus_path: Path, out_path: Path) -> tuple[bench.Timing, float]:
    """A peer's timing and its process's peak RSS in MB, in a forked child (a fresh high-water
    mark per peer and size)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        timing, _ = bench.measure(time.process_time, fn, corpus_path, out_path)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        os.write(write, f"{timing.wall_s} {timing.cpu_s} {peak}".encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        wall, cpu, peak = map(float, f.read().split())
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"peer {fn.__name__} failed with status {status}")
    return bench.Timing(wall, cpu), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()

    docs = pool()
    sources = sorted({d["id"].split("/", 1)[0] for d in docs})
    print(
        f"pool: {len(docs)} docs, {bench.megabytes([d['text'] for d in docs]):.1f} MB "
        f"({', '.join(sources)}); load average {os.getloadavg()[0]:.1f}"
    )
    peers = (
        []
        if args.no_peers
        else [("rensa", bench.rensa_dedup), ("datasketch", bench.datasketch_dedup)]
    )
    print(
        f"{'size':>4s} {'docs':>6s} {'MB':>6s} {'wall s':>7s} {'CPU s':>7s} {'MB/CPU-s':>8s} "
        f"{'CPU s/MB':>8s} {'vs 1x':>6s} {'driver MB':>9s} {'worker MB':>9s} "
        f"{'removed':>7s} {'rounds':>6s}"
        + "".join(
            f" {name + ' MB/CPU-s':>20s} {'ours/' + name:>15s} {name + ' MB':>14s}"
            for name, _ in peers
        )
    )
    first = None
    with tempfile.TemporaryDirectory(prefix="taggant-scale-") as tmp:
        for size in args.sizes:
            subset = prefix(docs, size / max(args.sizes))
            mb = bench.megabytes([d["text"] for d in subset])
            folder = Path(tmp) / f"x{size}"
            corpus_path = bench.write_jsonl(subset, folder / "corpus.jsonl")
            warmup_path = bench.write_jsonl(subset[: bench.WARMUP_DOCS], folder / "warmup.jsonl")
            ours = run_ours(corpus_path, warmup_path, folder)
            t = ours["timing"]
            first = first or t.cpu_s / mb
            removed = sum(ours["stats"]["counts"]["removed"].values())
            line = (
                f"{size:>3d}x {len(subset):6d} {mb:6.1f} {t.wall_s:7.2f} {t.cpu_s:7.2f} "
                f"{mb / t.cpu_s:8.2f} {t.cpu_s / mb:8.4f} {t.cpu_s / mb / first:5.2f}x "
                f"{ours['driver_mb']:9.0f} {ours['worker_mb']:9.0f} {removed:7d} "
                f"{ours['stats']['components_rounds']:6d}"
            )
            for name, fn in peers:
                timing, peak = run_peer(fn, corpus_path, folder / f"{name}.jsonl")
                line += f" {mb / timing.cpu_s:20.2f} {timing.cpu_s / t.cpu_s:14.1f}x {peak:14.0f}"
            print(line, flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f} (2 cores shared: timings are noisy)")


if __name__ == "__main__":
    main()
