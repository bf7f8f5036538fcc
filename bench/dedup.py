"""Dedup throughput on one core, taggant against its peers, measured in one run.

Usage (repository root):
    .venv/bin/python bench/dedup.py [--repeat 3] [--peer-every 8] [--datatrove-python PATH]

datatrove pins xxhash<4, so it lives in a venv of its own, which this script runs as a
subprocess (found at /tmp/dt-venv by default; without it that row is skipped, with the reason):
    python3.11 -m venv /tmp/dt-venv && /tmp/dt-venv/bin/pip install -r bench/requirements-peers.txt

Corpus: real text nobody here wrote, on every Debian machine: /usr/share/doc/*/copyright and
changelog.Debian.gz (`pipeline.corpora`), one document per file, as one JSONL file. It is used as
found, not replicated: tens of MB, with natural exact and near duplicates.

1. Signatures: raw str -> 128-slot MinHash of word 5-grams of the same normalized words
   (`sketches.hashing.words`), one thread; our numba kernel against datasketch 2.0 (scheme pinned
   to affine32; default use, and best use: copy() of a base MinHash + update_batch) and rensa.
   Peers build their shingles in Python, as their APIs require, and that time counts. The slow
   peers run on every --peer-every-th document (the "peer sample"); ours runs on that sample too,
   and ratios compare the same sample. Rates are per CPU-second of this process (on a shared
   machine wall time also counts the waits for a core), best of --repeat; numba kernels are
   compiled before timing.
2. End to end, JSONL in -> deduplicated documents out, I/O included, at Jaccard 0.8 with our
   default banding (18 bands x 7 rows) everywhere; best of --repeat runs, datatrove one run:
   * ours: `jobs.graph.data_stages` (ingest, then the dedup stage: sketch, band buckets,
     candidates screened by signature agreement at the default verify_error and exact Jaccard
     for the undecided, connected components, filter) on an embedded local Ray with 1 CPU.
     The dedup stage alone is the number to compare; ingest is shown beside it. Ray start-up and a
     warm-up run on a few documents (worker imports, numba cache loads) are timed but excluded,
     as the peers' imports are.
   * datasketch: MinHash per document (best use, hashfunc=xxh32) + MinHashLSH(params=(18, 7)),
     query then insert, keep the first document; single process.
   * rensa: RMinHash per document + RMinHashDeduplicator (LSH with 18 bands, then its own sketch
     similarity check), keep the first document; RAYON_NUM_THREADS=1.
   * datatrove: MinhashDedupSignature -> Buckets -> Cluster -> Filter, LocalPipelineExecutor with
     workers=1, English word tokenizer (spaCy), 18 buckets x 7 hashes; the time of its four
     stages, measured inside its process (interpreter start and imports excluded).
   Each tool gets wall seconds and CPU seconds (user + system) of the processes doing the work:
   for ours the driver and the Ray workers (raylet and GCS, which mostly wait, are not counted),
   for a peer its process. Ratios are ours / peer against our dedup stage, in wall and CPU time.
   "Removed" counts give the quality context: ours removes whole clusters of verified pairs; the streaming peers drop a document when it matches a kept one; datatrove
   removes all but one of each LSH cluster, unverified.
   Memory: the high-water marks (VmHWM) of our driver during the Ray runs, of the largest Ray
   worker, and of the datatrove process.
"""

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # rensa: one core, like ours

import datasketch  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import rensa  # noqa: E402
import xxhash  # noqa: E402
from rich.console import Console  # noqa: E402

from taggant.jobs import graph  # noqa: E402
from taggant.jobs.runtime import ray_session  # noqa: E402
from taggant.pipeline import corpora, io  # noqa: E402
from taggant.pipeline.spec import CorpusSpec, DedupSpec  # noqa: E402
from taggant.sketches import lsh  # noqa: E402
from taggant.sketches.hashing import normalize, pack, words  # noqa: E402
from taggant.sketches.minhash import signatures, signatures_from_hashes  # noqa: E402
from taggant.sketches.ngrams import ngram_hashes  # noqa: E402

NUM_PERM = 128
NGRAM = 5
THRESHOLD = 0.8
BANDS, ROWS = lsh.choose_bands(THRESHOLD, NUM_PERM)  # our default; given to every tool
WARMUP_DOCS = 100
DEFAULT_DATATROVE_PYTHON = "/tmp/dt-venv/bin/python"
MAX_DOC_BYTES = 8_000_000  # the largest Debian changelog is 3.4 MB; ingest must keep them all

# ---------------------------------------------------------------- corpus


def load_docs() -> list[dict[str, str]]:
    """Debian copyright files, then changelogs: [{"id", "text"}] in corpus order."""
    return corpora.debian_docs("copyright") + corpora.debian_docs("changelog")


def write_jsonl(docs: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    return path


def read_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """(line, record) of each line of a JSONL file."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            yield line, json.loads(line)


def megabytes(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


# ---------------------------------------------------------------- peers' shingles and signatures


def shingles(text: str) -> list[bytes]:
    """Word 5-grams of our normalized words, as bytes (datasketch hashes bytes)."""
    ws = words(text)
    return [b" ".join(ws[i : i + NGRAM]) for i in range(len(ws) - NGRAM + 1)] or [b" ".join(ws)]


def str_shingles(text: str) -> list[str]:
    """The same shingles as str, for rensa's fast path (str.split also splits at the few Unicode
    spaces that NFKC keeps, a negligible difference)."""
    ws = normalize(text).decode("utf-8").split()
    return [" ".join(ws[i : i + NGRAM]) for i in range(len(ws) - NGRAM + 1)] or [" ".join(ws)]


def datasketch_default(texts: list[str], **kwargs) -> None:
    """The documented pattern: a new MinHash per document, update() per shingle."""
    for text in texts:
        m = datasketch.MinHash(num_perm=NUM_PERM, scheme="affine32", **kwargs)
        for shingle in shingles(text):
            m.update(shingle)
        m.digest()


def datasketch_best(texts: list[str], **kwargs) -> None:
    """Permutations built once: copy() a base MinHash per document, one update_batch()."""
    base = datasketch.MinHash(num_perm=NUM_PERM, scheme="affine32", **kwargs)
    for text in texts:
        m = base.copy()
        m.update_batch(shingles(text))
        m.digest()


def rensa_rminhash(texts: list[str]) -> None:
    for text in texts:
        m = rensa.RMinHash(num_perm=NUM_PERM, seed=0)
        m.update(str_shingles(text))
        m.digest()


def ours(texts: list[str]) -> None:
    signatures(texts, num_perm=NUM_PERM, ngram=NGRAM)


# ---------------------------------------------------------------- timing and memory


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds, and CPU seconds (user + system) of the processes doing the work."""

    wall_s: float
    cpu_s: float


def measure(cpu_clock: Callable[[], float], fn: Callable, *args) -> tuple[Timing, Any]:
    """The timing of one call of fn(*args), and its result."""
    wall, cpu = time.perf_counter(), cpu_clock()
    result = fn(*args)
    return Timing(time.perf_counter() - wall, cpu_clock() - cpu), result


def fastest(timings: list[Timing]) -> Timing:
    return Timing(min(t.wall_s for t in timings), min(t.cpu_s for t in timings))


def best_of(repeat: int, fn: Callable, *args) -> tuple[Timing, Any]:
    """The fastest of `repeat` in-process calls (CPU time of this process), and the last result."""
    runs = [measure(time.process_time, fn, *args) for _ in range(repeat)]
    return fastest([t for t, _ in runs]), runs[-1][1]


def ray_workers() -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if p.cmdline()[:1] and p.cmdline()[0].startswith("ray::")
    ]


def ray_cpu_seconds() -> float:
    """CPU seconds used so far by this process and its live Ray workers (not raylet or GCS)."""
    return time.process_time() + sum(
        p.cpu_times().user + p.cpu_times().system for p in ray_workers()
    )


def reset_peak_rss() -> None:
    """Restart this process's VmHWM from its current RSS (Linux: 5 > /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb(pid: int | None = None) -> float:
    """A process's resident-memory high-water mark (VmHWM), in MB."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        return next(
            (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
            platform.machine(),
        )


# ---------------------------------------------------------------- 1. signatures


def signature_row(name: str, seconds: float, docs: int, mb: float, suffix: str = "") -> None:
    print(f"{name:64s} {mb / seconds:7.1f} MB/s {docs / seconds:8.0f} sig/s{suffix}")


def bench_signatures(texts: list[str], peer_every: int, repeat: int) -> None:
    sample = texts[::peer_every]
    mb, sample_mb = megabytes(texts), megabytes(sample)
    print(
        f"\n== 1. MinHash signatures, one thread: {NUM_PERM} perms, word {NGRAM}-grams; "
        f"per CPU-second of this process, best of {repeat} =="
    )
    print(f"peer sample: every {peer_every}th doc, {len(sample)} docs, {sample_mb:.1f} MB\n")

    def cpu_s(fn: Callable, *args) -> float:
        return best_of(repeat, fn, *args)[0].cpu_s

    ours(texts[:50])  # compile or load the numba kernels before timing
    signature_row(
        "ours: sketches.minhash.signatures, full corpus", cpu_s(ours, texts), len(texts), mb
    )
    t_ours = cpu_s(ours, sample)
    signature_row("ours: sketches.minhash.signatures, peer sample", t_ours, len(sample), sample_mb)

    values, offsets = ngram_hashes(sample, NGRAM)
    t_pack, t_hash = cpu_s(pack, sample), cpu_s(ngram_hashes, sample, NGRAM)
    t_perm = cpu_s(signatures_from_hashes, values, offsets, NUM_PERM)
    print(
        f"  stages on the sample: normalize {sample_mb / t_pack:.0f} MB/s, n-gram hashing "
        f"{sample_mb / (t_hash - t_pack):.0f} MB/s, {NUM_PERM} permutations "
        f"{sample_mb / t_perm:.0f} MB/s ({len(values) / len(sample):.0f} shingles/doc)"
    )

    peers = [
        ("datasketch affine32, default use (new MinHash, update/shingle)", datasketch_default),
        ("datasketch affine32, best use (copy() + update_batch)", datasketch_best),
        (
            "datasketch affine32, best use + hashfunc=xxh32_intdigest",
            lambda ts: datasketch_best(ts, hashfunc=xxhash.xxh32_intdigest),
        ),
        ("rensa RMinHash (update(list of str shingles))", rensa_rminhash),
    ]
    for name, fn in peers:
        t = cpu_s(fn, sample)
        signature_row(name, t, len(sample), sample_mb, f"   ours/peer {t / t_ours:5.1f}x")


# ---------------------------------------------------------------- 2. end to end: ours


def run_stages(corpus_path: Path, work_dir: Path) -> dict[str, tuple[Timing, dict]]:
    """Ingest, then dedup, of one JSONL file on the current Ray: each stage's timing and
    summary, by stage name. CPU time counts this process and the Ray workers."""
    corpus = CorpusSpec(paths=[str(corpus_path)], max_doc_bytes=MAX_DOC_BYTES)
    dedup = DedupSpec(
        threshold=THRESHOLD, num_perm=NUM_PERM, ngram_words=NGRAM, bands=BANDS, rows=ROWS
    )
    results = {}
    for stage in graph.data_stages(corpus, dedup, str(work_dir)):
        timing, (summary,) = measure(ray_cpu_seconds, graph.run, {}, [stage], Console(quiet=True))
        results[stage.key.name] = (timing, summary)
    return results


def run_ours(corpus_path: Path, warmup_path: Path, work_dir: Path, repeat: int) -> dict:
    """Ray start-up, a warm-up run, then `repeat` runs into fresh folders (a finished stage would
    be skipped): each stage's fastest timing, what dedup removed, and memory high-water marks."""
    reset_peak_rss()
    start = time.perf_counter()
    with ray_session(num_cpus=1):
        ray_start_s = time.perf_counter() - start
        warmup, _ = measure(time.process_time, run_stages, warmup_path, work_dir / "warmup")
        runs = [run_stages(corpus_path, work_dir / f"run-{i}") for i in range(repeat)]
        worker_mb = max(peak_rss_mb(p.pid) for p in ray_workers())
    dedup = runs[-1]["dedup"][1]
    duplicates = io.read_table(io.join(dedup["folder"], "duplicates.parquet"))
    return {
        "ray_start_s": ray_start_s,
        "warmup_s": warmup.wall_s,
        "ingest": fastest([run["ingest"][0] for run in runs]),
        "dedup": fastest([run["dedup"][0] for run in runs]),
        "removed": set(duplicates.column("doc_id").to_pylist()),
        "stats": dedup["stats"],
        "driver_mb": peak_rss_mb(),
        "worker_mb": worker_mb,
    }


# ---------------------------------------------------------------- 2. end to end: peers


def datasketch_dedup(corpus_path: Path, out_path: Path) -> set[str]:
    """Streams the corpus: drops a document whose MinHash hits the LSH index, else indexes it."""
    index = datasketch.MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, params=(BANDS, ROWS))
    base = datasketch.MinHash(num_perm=NUM_PERM, scheme="affine32", hashfunc=xxhash.xxh32_intdigest)
    removed = set()
    with out_path.open("w", encoding="utf-8") as out:
        for line, doc in read_jsonl(corpus_path):
            m = base.copy()
            m.update_batch(shingles(doc["text"]))
            if index.query(m):
                removed.add(doc["id"])
            else:
                index.insert(doc["id"], m)
                out.write(line)
    return removed


def rensa_dedup(corpus_path: Path, out_path: Path) -> set[str]:
    """rensa's streaming deduplicator: add() keeps a document unless it duplicates a kept one.

    rensa wants num_bands to divide num_perm, so it gets exactly BANDS * ROWS permutations.
    """
    seed = 42
    dedup = rensa.RMinHashDeduplicator(
        threshold=THRESHOLD, num_perm=BANDS * ROWS, use_lsh=True, num_bands=BANDS, seed=seed
    )
    removed = set()
    with out_path.open("w", encoding="utf-8") as out:
        for line, doc in read_jsonl(corpus_path):
            m = rensa.RMinHash(num_perm=BANDS * ROWS, seed=seed)
            m.update(str_shingles(doc["text"]))
            if dedup.add(doc["id"], m):
                out.write(line)
            else:
                removed.add(doc["id"])
    return removed


# Runs in the datatrove venv: argv = corpus.jsonl, work dir, bands, rows, ngram; writes
# <work dir>/result.json with each stage's wall and CPU seconds, the removed ids and the process's
# memory high-water mark.
DATATROVE_DRIVER = """
import json, resource, sys, time
from importlib.metadata import version
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
    MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

corpus, work = Path(sys.argv[1]), Path(sys.argv[2])
bands, rows, ngram = map(int, sys.argv[3:6])
config = MinhashConfig(n_grams=ngram, num_buckets=bands, hashes_per_bucket=rows)


def reader():
    return JsonlReader(str(corpus.parent), glob_pattern=corpus.name)


def executor(name, pipeline, tasks=1):
    return LocalPipelineExecutor(pipeline, tasks=tasks, workers=1,
                                 logging_dir=str(work / "logs" / name))


stages = {
    "signature": executor("signature", [
        reader(), MinhashDedupSignature(str(work / "sigs"), config=config)]),
    "buckets": executor("buckets", [
        MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)], bands),
    "cluster": executor("cluster", [
        MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config)]),
    "filter": executor("filter", [
        reader(),
        MinhashDedupFilter(str(work / "remove"),
                           exclusion_writer=JsonlWriter(str(work / "removed"), compression=None)),
        JsonlWriter(str(work / "kept"), compression=None)]),
}
wall_s, cpu_s = {}, {}
for name, stage in stages.items():
    wall, cpu = time.perf_counter(), time.process_time()
    stage.run()
    wall_s[name], cpu_s[name] = time.perf_counter() - wall, time.process_time() - cpu
removed = [json.loads(line)["id"]
           for path in sorted((work / "removed").glob("*.jsonl")) for line in path.open()]
(work / "result.json").write_text(json.dumps({
    "version": version("datatrove"),
    "wall_s": wall_s,
    "cpu_s": cpu_s,
    "removed": removed,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def run_datatrove(python: str, corpus_path: Path, work_dir: Path) -> dict | str:
    """datatrove's result dict, or why it did not run."""
    if not Path(python).exists():
        return (
            f"no interpreter at {python}; create it with: python3.11 -m venv /tmp/dt-venv && "
            "/tmp/dt-venv/bin/pip install -r bench/requirements-peers.txt"
        )
    args = [
        python,
        "-c",
        DATATROVE_DRIVER,
        str(corpus_path),
        str(work_dir),
        str(BANDS),
        str(ROWS),
        str(NGRAM),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last_line = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed (exit {proc.returncode}): {last_line}"
    return json.loads((work_dir / "result.json").read_text())


# ---------------------------------------------------------------- 2. end to end: report


def e2e_header(repeat: int) -> None:
    print(
        f"{'':52s} {'wall s':>8s} {'MB/s':>8s} {'CPU s':>8s} {'MB/CPU-s':>8s} {'removed':>8s} "
        f"{'removed by':>10s} {'ours/peer':>9s} {'ours/peer':>9s}"
    )
    print(
        f"{f'(best of {repeat}; datatrove: one run)':52s} {'':>8s} {'':>8s} {'':>8s} {'':>8s} "
        f"{'':>8s} {'ours too':>10s} {'wall':>9s} {'CPU':>9s}"
    )


def e2e_row(
    name: str, timing: Timing, mb: float, removed: set[str] | None = None, ours: dict | None = None
) -> None:
    """One row; a peer's (`ours` given) ends with ours/peer against our dedup stage."""
    line = (
        f"{name:52s} {timing.wall_s:8.2f} {mb / timing.wall_s:8.2f} {timing.cpu_s:8.2f} "
        f"{mb / timing.cpu_s:8.2f}"
    )
    if removed is not None:
        line += f" {len(removed):8d}"
    if ours:
        line += (
            f" {len(removed & ours['removed']):10d} "
            f"{timing.wall_s / ours['dedup'].wall_s:8.1f}x "
            f"{timing.cpu_s / ours['dedup'].cpu_s:8.1f}x"
        )
    print(line)


def bench_end_to_end(docs: list[dict], work_dir: Path, repeat: int, datatrove_python: str) -> None:
    corpus_path = write_jsonl(docs, work_dir / "corpus" / "debian.jsonl")
    warmup_path = write_jsonl(docs[:WARMUP_DOCS], work_dir / "warmup" / "warmup.jsonl")
    mb = megabytes([d["text"] for d in docs])
    print(
        f"\n== 2. End-to-end dedup on one core: JSONL in -> deduplicated documents out, "
        f"threshold {THRESHOLD}, {BANDS} bands x {ROWS} rows, word {NGRAM}-grams =="
    )

    ours = run_ours(corpus_path, warmup_path, work_dir / "ours", repeat)
    removed = ours["stats"]["counts"]["removed"]
    print(
        f"ours: embedded local Ray, ray_session(num_cpus=1); Ray start-up "
        f"{ours['ray_start_s']:.1f} s and a warm-up run on {WARMUP_DOCS} docs "
        f"{ours['warmup_s']:.1f} s are excluded; CPU s = driver + Ray worker"
    )
    print(
        f"ours: {removed['exact_dup']} exact + {removed['near_dup']} near duplicates removed; "
        f"{ours['stats']['candidate_edges']} candidate edges "
        f"({ours['stats']['exact_edges']} of them exact), "
        f"{ours['stats']['signature_accepted']} accepted by their signatures, "
        f"{ours['stats']['jaccard_checked']} checked by exact Jaccard, "
        f"{ours['stats']['verified_near_edges']} near edges verified at J >= {THRESHOLD}\n"
    )
    e2e_header(repeat)
    e2e_row("ours: ingest stage (JSONL -> Parquet shards)", ours["ingest"], mb)
    e2e_row("ours: dedup stage", ours["dedup"], mb, ours["removed"])
    timing, removed = best_of(repeat, datasketch_dedup, corpus_path, work_dir / "datasketch.jsonl")
    e2e_row("datasketch MinHash (copy+update_batch, xxh32) + LSH", timing, mb, removed, ours)
    timing, removed = best_of(repeat, rensa_dedup, corpus_path, work_dir / "rensa.jsonl")
    e2e_row("rensa RMinHash + RMinHashDeduplicator", timing, mb, removed, ours)

    datatrove = run_datatrove(datatrove_python, corpus_path, work_dir / "datatrove")
    if isinstance(datatrove, str):
        print(f"datatrove: skipped, {datatrove}")
    else:
        timing = Timing(sum(datatrove["wall_s"].values()), sum(datatrove["cpu_s"].values()))
        e2e_row(
            f"datatrove {datatrove['version']} MinHash, workers=1",
            timing,
            mb,
            set(datatrove["removed"]),
            ours,
        )
        print(
            "  datatrove stages (wall): "
            + ", ".join(f"{name} {s:.1f} s" for name, s in datatrove["wall_s"].items())
        )

    print(
        f"\nmemory high-water marks: our driver {ours['driver_mb']:.0f} MB during the Ray runs "
        f"(corpus held in memory), largest Ray worker {ours['worker_mb']:.0f} MB"
        + (
            ""
            if isinstance(datatrove, str)
            else f", datatrove process {datatrove['peak_rss_mb']:.0f} MB"
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-every", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--datatrove-python",
        default=DEFAULT_DATATROVE_PYTHON,
        help="python of a venv with datatrove (bench/requirements-peers.txt)",
    )
    args = parser.parse_args()

    docs = load_docs()
    texts = [d["text"] for d in docs]
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
        f"xxhash {xxhash.VERSION}, datasketch {datasketch.__version__}, "
        f"rensa {version('rensa')}, ray {version('ray')}; "
        f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}; {cpu_name()}, "
        f"{os.cpu_count()} cores"
    )
    print(
        f"corpus: {len(docs)} docs, {megabytes(texts):.1f} MB of text (Debian copyright + "
        f"changelog.Debian.gz), mean {megabytes(texts) / len(docs) * 1e3:.1f} kB/doc"
    )
    bench_signatures(texts, args.peer_every, args.repeat)
    with tempfile.TemporaryDirectory(prefix="taggant-bench-") as tmp:
        bench_end_to_end(docs, Path(tmp), args.repeat, args.datatrove_python)


if __name__ == "__main__":
    main()
