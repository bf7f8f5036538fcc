"""Perturbations: generators of canaries, ghost sentences, lexical watermarks, test sets and
your own texts; per-copy variants; decontamination of the corpus against them; the planner that
splits items into members and controls and places their occurrences in the training sample stream.

Modules: ``rng`` (the seeded generators), ``setspec`` (what every set's spec shares), ``items``
(candidates and the choice of items), one module per kind (``canary``, ``ghost``, ``watermark``,
``testset``, ``text``: its spec class, generator, version and kind-specific probes), ``registry``
(the tuple of kinds and all that derives from it), ``variants`` (generated per-copy variants),
``decontaminate`` (n-gram matching against the corpus and the selection loop), ``plan`` (split,
placement, manifests). ``jobs.plan`` runs them on Ray.
"""
