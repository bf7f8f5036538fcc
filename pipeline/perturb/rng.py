"""The one way perturbations draw randomness: a PCG64 generator per (seed, purpose, set, key).

Every random choice of the perturb package comes from ``generator(seed, purpose, set_name, key)``:
a ``numpy.random.Generator(PCG64(s))`` where ``s`` is the xxh64 of the UTF-8 bytes of
``"<seed>\\x1f<purpose>\\x1f<set name>\\x1f<key>"``. The key is an item or candidate index, or a
fixed tag for set-wide choices. A result therefore depends only on these four values, never on
which worker computes it, how work is chunked, or in which order.

``priorities`` is the same idea for choosing among many named things (corpus documents): each
name gets an independent uniform 64-bit priority, and "the k lowest priorities" is a uniform random
k-subset that any partition of the names can compute shard by shard and merge.
"""

from __future__ import annotations

import numpy as np
import xxhash

_SEP = "\x1f"  # ASCII unit separator: cannot occur in set names (NAME_PATTERN) or purposes


def derive_seed(seed: int, purpose: str, set_name: str, key: int | str) -> int:
    """The 64-bit seed of one generator; see the module docstring for the exact bytes hashed."""
    return xxhash.xxh64_intdigest(_SEP.join((str(seed), purpose, set_name, str(key))).encode())


def generator(seed: int, purpose: str, set_name: str, key: int | str) -> np.random.Generator:
    """A fresh PCG64 generator for one (seed, purpose, set, key)."""
    return np.random.Generator(np.random.PCG64(derive_seed(seed, purpose, set_name, key)))


def priorities(seed: int, purpose: str, set_name: str, names: list[str]) -> np.ndarray:
    """A uniform random uint64 priority per name (xxh64 of the name under a derived seed)."""
    salt = derive_seed(seed, purpose, set_name, "priority")
    return np.fromiter(
        (xxhash.xxh64_intdigest(name.encode(), seed=salt) for name in names),
        dtype=np.uint64,
        count=len(names),
    )
