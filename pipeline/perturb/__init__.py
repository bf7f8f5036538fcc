"""Perturbations: generators of canaries, ghost sentences, lexical watermarks and test sets;
decontamination of the corpus against them; the planner that splits items into members and
controls and places their occurrences in the training sample stream.

Modules: ``rng`` (the seeded generators), ``items`` (candidates and the choice of items),
``canary``, ``ghost``, ``watermark``, ``testset`` (one generator per kind, versioned),
``registry`` (versioned names), ``decontaminate`` (n-gram matching against the corpus and the
selection loop), ``plan`` (split, placement, manifests). ``jobs.plan`` runs them on Ray.
"""
