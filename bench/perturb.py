"""Perturbation generation and occurrence planning at scale, against naive Python loops.

Usage (repository root, taggant installed or PYTHONPATH=.):
    python bench/perturb.py [--items 100000] [--repeat 3]

1. Generation: ``--items`` canaries (random pseudo-name + 6 diceware words) and as many ghost
   passphrases (10 words). Drafting (candidate streams, one PCG64 generator per item, params
   included) is compared with a naive loop that seeds ``random.Random`` per item and formats the
   same kind of text; the whole path (drafting, distinctness in ``ItemPool``, decontamination
   signatures, the manifest's items table) is timed too.
2. Planning: a ladder of 50,000 items × dup levels {1, 4, 16, 64} over the whole run plus two
   10,000-item ×16 sets in the first and last quarter (1,106,000 occurrences, 4M samples):
   ``plan.occurrences_table`` (split, placement, occurrence table). The peer is a naive loop that
   rejection-samples a free sample inside each set's window, one occurrence at a time.

Timings are the best of ``--repeat`` runs in this process, on one core.
"""

import argparse
import platform
import random
import time

import numpy as np

from taggant.pipeline.perturb import ghost, plan, registry
from taggant.pipeline.perturb.canary import CanarySpec
from taggant.pipeline.perturb.decontaminate import select_items
from taggant.pipeline.perturb.ghost import GhostSpec
from taggant.pipeline.perturb.setspec import PhaseWindow
from taggant.pipeline.spec import RunsSpec

SEED = 20261122
RUNS = RunsSpec(
    model_sizes=["tiny-2m"],
    train_tokens=[128 * 4_000_000],
    seq_length_tokens=128,
    global_batch_sequences=8,
)


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def draft(sets) -> int:
    return sum(
        len(registry.make_source(p, SEED, registry.CorpusInputs()).draw(0, p.count)) for p in sets
    )


def generate(sets) -> int:
    sources = [registry.make_source(p, SEED, registry.CorpusInputs()) for p in sets]
    selection = select_items(sets, sources, lambda signatures: [])
    return len(
        plan.items_table(sets, [[c.draft for c in items] for items in selection.items], SEED)
    )


def naive_generate(count: int) -> int:
    words = ghost.wordlist()
    texts = set()
    for i in range(count):
        r = random.Random(f"{SEED}/canary/{i}")
        name = "".join(
            r.choice("bdfgklmnprstvz") + r.choice("aeiou") for _ in range(3)
        ).capitalize()
        texts.add(f"{name}'s passphrase is {' '.join(r.choice(words) for _ in range(6))}.")
    for i in range(count):
        r = random.Random(f"{SEED}/ghost/{i}")
        texts.add(" ".join(r.choice(words) for _ in range(10)))
    return len(texts)


def planning_sets():
    return [
        CanarySpec(name="ladder", count=50_000, dup_levels=[1, 4, 16, 64], num_references=1),
        CanarySpec(
            name="early",
            count=10_000,
            dup_levels=[16],
            num_references=1,
            phase=PhaseWindow(end_frac=0.25),
        ),
        CanarySpec(
            name="late",
            count=10_000,
            dup_levels=[16],
            num_references=1,
            phase=PhaseWindow(start_frac=0.75),
        ),
    ]


def naive_place(sets, num_samples: int) -> int:
    r = random.Random(SEED)
    taken: set[int] = set()
    placed = 0
    for pset in sets:
        lo, hi = pset.phase.sample_range(num_samples)
        for n, level in zip(pset.members_per_level(), pset.dup_levels):
            for _ in range(n * level):
                while (s := r.randrange(lo, hi)) in taken:
                    pass
                taken.add(s)
                placed += 1
    return placed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}"
    )

    gen_sets = [
        CanarySpec(name="canaries", count=args.items, dup_levels=[1], num_references=1),
        GhostSpec(name="ghosts", count=args.items, dup_levels=[1]),
    ]
    drafting, n_items = best(lambda: draft(gen_sets), args.repeat)
    full, _ = best(lambda: generate(gen_sets), args.repeat)
    peer, n_peer = best(lambda: naive_generate(args.items), args.repeat)
    print(
        f"generation: {n_items:,} items drafted in {drafting:.2f} s ({n_items / drafting:,.0f} items/s); "
        f"naive loop {n_peer:,} texts in {peer:.2f} s; ours / naive time = {drafting / peer:.2f}"
    )
    print(
        f"generation + distinctness + signatures + items table: {full:.2f} s ({n_items / full:,.0f} items/s)"
    )

    sets = planning_sets()
    tokens = RUNS.train_tokens[0]
    ours, occ = best(lambda: plan.occurrences_table(sets, RUNS, tokens, SEED), args.repeat)
    peer, n_peer = best(lambda: naive_place(sets, RUNS.num_samples(tokens)), args.repeat)
    print(
        f"planning: {len(occ):,} occurrences over {RUNS.num_samples(tokens):,} samples in {ours:.2f} s "
        f"({len(occ) / ours:,.0f}/s); naive loop {n_peer:,} in {peer:.2f} s; naive / ours = {peer / ours:.1f}×"
    )


if __name__ == "__main__":
    main()
