"""Pure numerical core of taggant's dedup and decontamination: normalization and exact hashes,
word n-gram shingles and n-gram sets, MinHash signatures, LSH banding and connected components.

Depends on numpy, numba and xxhash only. No I/O, no Ray, no imports from `pipeline` or `jobs`.
Every function is deterministic: same inputs and seed give the same outputs on any machine.

Modules: `hashing` (normalization, exact document hash), `ngrams` (word n-gram hashes and sets),
`minhash` (signatures, versioned), `lsh` (band choice, band keys, candidate edges),
`components` (edge screening and verification, connected components by star contraction,
each keyed by its lowest doc id).
"""
