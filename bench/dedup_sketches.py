"""MinHash signature throughput on one core: taggant's sketches against datasketch 2.0 and rensa.

Usage (repository root, taggant installed or PYTHONPATH=.):
    python bench/dedup_sketches.py [--target-mb 40] [--peer-every 8] [--repeat 3]

Corpus: real text nobody here wrote, read from this machine: Debian's
/usr/share/doc/*/copyright files, then the Python standard library's .py files (sorted paths)
until the corpus reaches --target-mb; one file = one document.

Every variant goes from the raw str to a 128-slot signature of word 5-gram shingles of the same
normalized words (`sketches.hashing.words`), in one thread. Peers build their shingles in Python,
as their APIs require, and that time counts. The slow peers run on every --peer-every-th document
(the "peer sample"); ours runs on that sample too, and the printed ratios compare docs/s on the
same sample. Timings are the best of --repeat runs; numba kernels are compiled before timing.
"""

import argparse
import glob
import os
import platform
import sysconfig
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # rensa: one core, like ours

import datasketch  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
import rensa  # noqa: E402
import xxhash  # noqa: E402

from sketches.hashing import normalize, words  # noqa: E402
from sketches.minhash import signatures, signatures_from_hashes  # noqa: E402
from sketches.ngrams import ngram_hashes, pack  # noqa: E402

NUM_PERM = 128
NGRAM = 5


def load_corpus(target_mb: float) -> list[str]:
    paths, seen = [], set()
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")):
        real = os.path.realpath(path)
        if real not in seen and os.path.isfile(real):
            seen.add(real)
            paths.append(real)
    stdlib = sysconfig.get_paths()["stdlib"]
    paths += [
        p
        for p in sorted(glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True))
        if "site-packages" not in p
    ]
    texts, size = [], 0
    for path in paths:
        if size >= target_mb * 1e6:
            break
        with open(path, "rb") as f:
            data = f.read()
        texts.append(data.decode("utf-8", errors="ignore"))
        size += len(data)
    return texts


def _shingles(ws: list) -> list:
    return [b" ".join(ws[i : i + NGRAM]) for i in range(len(ws) - NGRAM + 1)] or [b" ".join(ws)]


def _str_shingles(text: str) -> list[str]:
    ws = normalize(text).decode("utf-8").split()
    return [" ".join(ws[i : i + NGRAM]) for i in range(len(ws) - NGRAM + 1)] or [" ".join(ws)]


def datasketch_default(texts: list[str], **kwargs) -> None:
    """The documented pattern: a new MinHash per document, update() per shingle."""
    for text in texts:
        m = datasketch.MinHash(num_perm=NUM_PERM, scheme="affine32", **kwargs)
        for shingle in _shingles(words(text)):
            m.update(shingle)
        m.digest()


def datasketch_best(texts: list[str], **kwargs) -> None:
    """Permutations built once: copy() a base MinHash per document, one update_batch()."""
    base = datasketch.MinHash(num_perm=NUM_PERM, scheme="affine32", **kwargs)
    for text in texts:
        m = base.copy()
        m.update_batch(_shingles(words(text)))
        m.digest()


def rensa_rminhash(texts: list[str]) -> None:
    for text in texts:
        m = rensa.RMinHash(num_perm=NUM_PERM, seed=0)
        m.update(_str_shingles(text))
        m.digest()


def ours(texts: list[str]) -> None:
    signatures(texts, num_perm=NUM_PERM, ngram=NGRAM)


def best_time(fn, texts, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(texts)
        times.append(time.perf_counter() - start)
    return min(times)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.machine()


def row(name: str, seconds: float, texts: list[str], megabytes: float, suffix: str = "") -> None:
    print(f"{name:62s} {megabytes / seconds:7.1f} MB/s {len(texts) / seconds:8.0f} docs/s{suffix}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-mb", type=float, default=40.0)
    parser.add_argument("--peer-every", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    texts = load_corpus(args.target_mb)
    sample = texts[:: args.peer_every]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    sample_mb = sum(len(t.encode("utf-8")) for t in sample) / 1e6
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
        f"xxhash {xxhash.VERSION}, datasketch {datasketch.__version__}, rensa; "
        f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}; {cpu_name()}"
    )
    print(
        f"corpus: {len(texts)} docs, {mb:.1f} MB (Debian copyright + Python stdlib .py), "
        f"mean {mb / len(texts) * 1e3:.1f} kB/doc; peer sample (every {args.peer_every}th doc): "
        f"{len(sample)} docs, {sample_mb:.1f} MB"
    )
    print(f"num_perm={NUM_PERM}, word {NGRAM}-grams, one thread, best of {args.repeat}\n")

    ours(texts[:50])  # compile or load the numba kernels before timing
    row(
        "ours: sketches.minhash.signatures, full corpus",
        best_time(ours, texts, args.repeat),
        texts,
        mb,
    )
    t_ours = best_time(ours, sample, args.repeat)
    row("ours: sketches.minhash.signatures, peer sample", t_ours, sample, sample_mb)

    t_pack = best_time(pack, sample, args.repeat)
    t_hash = best_time(lambda ts: ngram_hashes(ts, NGRAM), sample, args.repeat)
    values, offsets = ngram_hashes(sample, NGRAM)
    t_perm = best_time(
        lambda _: signatures_from_hashes(values, offsets, NUM_PERM), None, args.repeat
    )
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
        t = best_time(fn, sample, args.repeat)
        row(name, t, sample, sample_mb, f"   ours/peer {t / t_ours:5.1f}x")


if __name__ == "__main__":
    main()
