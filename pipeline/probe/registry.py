"""Probes by name: each a version and the functions that turn scored items into metrics.

Names are those of ``pipeline.spec.PROBE_NAMES``. A shipped version never changes behaviour: a
change of output is a new version string here, recorded in every store row's ``probe_version``.

Every probe reads the same teacher-forced pass (``scoring``) over each item. Regions of an item:

* **target**: the tokens after the item's prompt ``text[:prefix_chars]`` (for an item without a
  prompt, ``prefix_chars == 0``, every token that has context). Loss and MIA scores cover it.
* **suffix**: the extraction span, the first ``suffix_tokens`` target tokens; an item without a
  prompt is split Carlini-style at ``prefix_tokens`` instead. Greedy generation from the true
  prompt reproduces the suffix iff every suffix token is the argmax given the true context, so
  the extraction probes need no real generation. Metrics that look past the first mistake
  (ROUGE-L, token F1, edit similarity) do: only the probes that say ``generates`` or whose views
  ask for it decode (``pipeline.probe.generation``, KV-cached greedy).
* **views**: questions measured in place of the item (``pipeline.probe.views``): biography fields
  under three prefixes, test-set questions in formats never inserted.
* **candidates**: texts with the item's prompt and each its own target (a canary's secret and its
  references, a question's choices), scored on their target tokens as one group, the prompt
  computed once (``pipeline.probe.shared_prefix``): every value a probe compares inside a group
  comes from one computation.
* **spans**: character ranges of the text mapped to the target tokens that cover them.

Every row names the rendering it measured, ``eval_format`` (``pipeline.eval_format``):
``canonical`` (the item's text), ``variant:<k>`` (the probes marked ``variants`` measure each
per-copy variant of an item as they measure its text) or a test-set format's name.

Metric directions: ↑ means a higher value is more memorized (more likely a member), ↓ the reverse.

* ``loss``: over the target, ``nll_mean`` ↓ (nats/token), ``nll_sum`` ↓, ``perplexity`` ↓,
  ``tokens``.
* ``zlib_ratio``: ``ratio`` ↓ (nll_mean over the zlib-compressed bytes of the target text),
  ``zlib_bytes``.
* ``min_k``: ``k10``, ``k20``, ``k50`` ↑, the mean log-prob of the least likely 10/20/50 % of the
  target tokens (``floor(k · T)`` of them, as the references count; v1 took ``ceil``).
  ``min_k_plus_plus``: the same over Min-K%++ z-scores ↑.
* ``exact_match``: over the suffix, ``exact`` ↑ (0/1), ``token_accuracy`` ↑, ``decisive_margin``
  (small = a near-tie decided the outcome), ``tokens``.
* ``longest_prefix``: ``tokens`` ↑ (correct greedy prefix of the suffix), ``fraction`` ↑.
* ``suffix_logprob``: ``logprob`` ↑ (log p_z of the suffix at temperature 1, nats),
  ``logprob_top40`` ↑ (under top-40 sampling; -inf when it cannot be sampled), ``tokens``.
* ``extraction_strength``: over the suffix, ``strength`` ↑ (1 − k/|y| for the shortest prefix k
  of the suffix y after which greedy decoding completes it), ``tokens``.
* ``probabilistic_extraction``: over the suffix, ``n1``, ``n10``, ``n100``, ``n1000`` ↑ (the
  probability that at least one of n samples at temperature 1 reproduces it, Hayes et al.'s
  (n, p)-extraction), ``top40_n1`` … ``top40_n1000`` ↑ (the same under top-40 sampling),
  ``tokens``.
* ``exposure`` (canaries): ``exposure_rank`` ↑ (bits), ``rank`` ↓, ``nll`` ↓ (the secret's),
  ``references``. v4: the secret is scored as the first candidate of its own group, by the same
  prefix-shared pass as its references (v3 took it from the item pass, of another model form for
  a checkpoint, so a float difference could decide a tie); values move in the last float bits.
  Cost: the secret tokens of each reference, the prompt once per canary; on tiny-2m with 1000
  references, one thread, 3.2 CPU-s per canary (0.8 of it the skew-normal fit and bootstrap), 5.2
  with a full pass per reference (``bench/exposure_cost.py``, one run at load average ~20 on 2
  cores): ~810 CPU-s per checkpoint for the demo's 256 canaries. With at least ``exposure.MIN_FIT_REFERENCES`` (200; v1: 20) references that are
  not all equal also ``exposure`` ↑ (bits, skew-normal extrapolation), ``exposure_ci_low`` /
  ``exposure_ci_high`` (v2; v3 only with ≥ ``exposure.MIN_INTERVAL_REFERENCES`` (1000)
  references, where its coverage was measured: 95 % percentile bootstrap over the references, given the skew-normal
  model), ``exposure_at_cap`` (v2: 1 where ``exposure`` hit its cap ``log2 |R|``, the fit
  putting the secret ahead of all of R, so the value is the cap and not an estimate; else 0) and
  ``skewnorm_a/loc/scale``. With fewer, these metrics are absent (a row cannot carry the
  reason: ``references`` below the minimum is it).
* ``ghost_last_k`` (ghosts): ``last_words`` ↑ (largest k for which greedy decoding completes the
  last k words), ``bits`` ↑ (k · log2 wordlist size: −log2 of matching them by chance),
  ``words``.
* ``watermark`` (watermark sets): per item ``neg_nll`` ↑ and ``min_k_plus_plus_k20`` ↑ (v2: the
  floor count of ``min_k_plus_plus.v2``); per set and member level, in a row whose ``item_id`` is
  the set's name and ``dup_level`` the level (v3, ``permutation``): ``<score>_diff`` ↑ (members'
  mean − controls'), ``<score>_diff_ci_low`` / ``_ci_high`` (95 % shift interval, exact under a
  location-shift model), ``<score>_p`` ↓ (one-sided permutation p-value, exact under the random
  split), ``<score>_p_holm`` ↓ (Holm-adjusted over the family: every level × score of the set at
  this checkpoint, not across sets or checkpoints), ``members``, ``controls``, ``subsets`` (the
  p-value's denominator: its smallest possible value is 1 / subsets). v2 had a Welch ``_t``.
* ``generation``: the model greedily continues the item up to its suffix (KV-cached, as many
  tokens as the suffix, stopping at the end of document) and the decoded generation is scored
  against the suffix's text (``pipeline.probe.text_metrics``): ``exact`` ↑ (SQuAD-normalized
  equality), ``rouge_l_precision``, ``rouge_l_recall``, ``rouge_l_f1`` ↑, ``token_f1``,
  ``token_recall`` ↑, ``edit_similarity`` ↑, ``tokens``. A suffix that ``exact_match`` finds
  exact is generated exactly, so scores 1 on each (up to near-ties, ``decisive_margin``).
* ``biography_choice`` (biographies): per field and prefix (``pipeline.perturb.biography``),
  metrics ``<field>.<prefix>.choice_correct`` ↑ (the value has the largest summed
  log-likelihood among its 10 choices after the prefix), ``.choice_correct_norm`` ↑ (per byte),
  ``.answer_logprob`` ↑, ``.choices``.
* ``biography_generation`` (biographies): per field and prefix, the greedy continuation of the
  prefix (at most ``BIOGRAPHY_GENERATION_TOKENS``, stopping at a newline or the end of
  document, cut at the first ``". "``) against the value: ``<field>.<prefix>.gen_<metric>``
  for each metric of ``generation`` but ``tokens``.
* ``testset_accuracy``, ``testset_formats`` and ``biography_choice`` score their choices as a
  prefix-shared group on the model's KV-cached form (v2; v1 ran full passes, of the megatron form
  for a checkpoint): values move in the last float bits.
* ``testset_formats`` (testsets with ``eval_templates``): per format never inserted, rows with
  ``eval_format`` = the format's name (v1 put it in the metric name): ``choice_correct`` ↑,
  ``choice_correct_norm`` ↑, ``answer_logprob`` ↑, ``choices``: the question rendered in that
  format, its choices scored as ``testset_accuracy`` scores them.
* ``testset_accuracy`` (testsets): ``correct`` ↑ (the answer has the largest summed
  log-likelihood among the choices), ``correct_norm`` ↑ (per UTF-8 byte), ``answer_logprob`` ↑,
  ``choices``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from taggant.pipeline import multiplicity, permutation, store
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.perturb import biography, canary, rng, testset
from taggant.pipeline.perturb.registry import kinds_probed_by
from taggant.pipeline.probe import exposure, metrics, text_metrics, views
from taggant.pipeline.probe.token_scores import FIELDS, TOP_K, TokenScores
from taggant.pipeline.spec import PROBE_NAMES, ProbesSpec

Metrics = dict[str, float]


@dataclass(frozen=True)
class ItemRow:
    """One manifest item as probes read it (``params`` parsed from JSON)."""

    item_id: str
    set: str
    kind: str
    dup_level: int
    text: str
    prefix_chars: int
    params: dict[str, Any]


@dataclass(frozen=True)
class Item:
    """What a probe sees of one scored item.

    Attributes:
        row: the manifest row.
        target: scores of the target tokens.
        target_text: the text those tokens encode (the whole text without a prompt).
        suffix: scores of the extraction span (a sub-range of ``target``).
        spans: scores of the target tokens covering each of the probe's ``spans``.
        candidates: log-probs (nats) of the target tokens of each of the probe's
            ``candidates``, in order: all a probe reads of them, from one prefix-shared
            computation (``shared_prefix.score_groups``).
        candidate_texts: the candidates' target texts, in order.
        generated: for a probe that ``generates``, the greedy continuation (KV-cached) of the
            item up to its suffix, as many tokens as the suffix has, decoded; else ``None``.
        reference: for such a probe, the suffix's tokens decoded; else ``None``.
    """

    row: ItemRow
    target: TokenScores
    target_text: str
    suffix: TokenScores
    spans: list[TokenScores]
    candidates: list[np.ndarray]
    candidate_texts: list[str]
    generated: str | None = None
    reference: str | None = None


References = Mapping[str, Sequence[str]]
"""Canary set name → its reference secrets (``pipeline.perturb.canary.reference_secrets``)."""


def _nothing(*_: object) -> list:
    return []


@dataclass(frozen=True)
class Probe:
    """A versioned probe.

    Attributes:
        version: recorded in each row's ``probe_version``.
        item_metrics: metrics of one scored item.
        kinds: item kinds it measures (others are skipped); ``None`` for every kind.
        candidates: full texts to score as one group (the item's own text among them, where
            the probe compares it with the others); they share its prompt
            ``text[:prefix_chars]``. ``None``: the probe scores no other text.
        spans: ``(start, end)`` character ranges inside the target to map to tokens.
        set_metrics: set-level rows from a whole set's items and their item metrics: a list of
            ``(dup_level, metrics)``; stored with ``item_id`` = the set's name.
        reads: the ``TokenScores`` fields its metrics read (``logprob`` is always there): the
            teacher-forced pass computes only the union over the probes asked for, the others
            are ``None``. Every field by default; a test checks each declaration suffices.
        generates: whether ``item_metrics`` reads ``Item.generated`` (real greedy decoding:
            only these probes pay for it).
        views: questions measured in place of the item (``pipeline.probe.views``); for such a
            probe ``item_metrics`` is not called, and its rows are each view's choice and
            generation metrics (``views.stored``: a format's under its ``eval_format``, a
            question's named ``<view>.<metric>``).
        variants: whether the probe also measures each per-copy variant of an item (manifest
            ``variants``) as it measures the item's text, in rows with ``eval_format``
            ``variant:<k>``: the probes that read only the scored text itself, not the item's
            params, candidates, spans or set (those are defined on the canonical text).
    """

    version: str
    item_metrics: Callable[[Item], Metrics]
    kinds: frozenset[str] | None = None
    candidates: Callable[[ItemRow, References], list[str]] | None = None
    spans: Callable[[ItemRow], list[tuple[int, int]]] = _nothing
    set_metrics: Callable[[list[Item], list[Metrics]], list[tuple[int, Metrics]]] = _nothing
    reads: frozenset[str] = frozenset(FIELDS)
    generates: bool = False
    views: Callable[[ItemRow], list[views.View]] | None = None
    variants: bool = False

    def applies_to(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


def _param(row: ItemRow, key: str) -> Any:
    """``row.params[key]``, which the item's generator always records.

    Raises:
        DataError: the key is missing (params written by another generator or edited).
    """
    if key not in row.params:
        raise DataError(
            f"item {row.item_id}: its params lack {key!r}, which the {row.kind} probes "
            f"read; a current {row.kind} generator writes it: re-run the plan stage"
        )
    return row.params[key]


def _by_fraction(score: Callable[[float], float]) -> Metrics:
    return {f"k{round(frac * 100)}": score(frac) for frac in metrics.K_FRACTIONS}


def _loss(item: Item) -> Metrics:
    lp = item.target.logprob
    return {
        "nll_mean": metrics.nll_mean(lp),
        "nll_sum": metrics.nll_sum(lp),
        "perplexity": metrics.perplexity(lp),
        "tokens": len(lp),
    }


def _zlib_ratio(item: Item) -> Metrics:
    return {
        "ratio": metrics.zlib_ratio(item.target.logprob, item.target_text),
        "zlib_bytes": metrics.zlib_bytes(item.target_text),
    }


def _min_k(item: Item) -> Metrics:
    return _by_fraction(lambda frac: metrics.min_k(item.target.logprob, frac))


def _min_k_plus_plus(item: Item) -> Metrics:
    t = item.target
    return _by_fraction(lambda frac: metrics.min_k_plus_plus(t.logprob, t.mean, t.std, frac))


def _exact_match(item: Item) -> Metrics:
    s = item.suffix
    return {
        "exact": metrics.exact_match(s.correct),
        "token_accuracy": metrics.token_accuracy(s.correct),
        "decisive_margin": metrics.decisive_margin(s.correct, s.margin),
        "tokens": len(s),
    }


def _longest_prefix(item: Item) -> Metrics:
    length = metrics.correct_prefix_length(item.suffix.correct)
    return {"tokens": length, "fraction": length / len(item.suffix)}


def _suffix_logprob(item: Item) -> Metrics:
    s = item.suffix
    return {
        "logprob": metrics.sequence_logprob(s.logprob),
        f"logprob_top{TOP_K}": metrics.sequence_logprob(s.topk_logprob),
        "tokens": len(s),
    }


def _extraction_strength(item: Item) -> Metrics:
    return {
        "strength": metrics.extraction_strength(item.suffix.correct),
        "tokens": len(item.suffix),
    }


EXTRACTION_QUERIES = (1, 10, 100, 1000)
"""Numbers of samples n at which ``probabilistic_extraction`` reports (n, p)-extraction."""


def _probabilistic_extraction(item: Item) -> Metrics:
    s = item.suffix
    out: Metrics = {}
    for sampler, logprob in (("", s.logprob), (f"top{TOP_K}_", s.topk_logprob)):
        log_pz = metrics.sequence_logprob(logprob)
        out.update(
            {
                f"{sampler}n{n}": metrics.extraction_probability(log_pz, n)
                for n in EXTRACTION_QUERIES
            }
        )
    return {**out, "tokens": len(s)}


def _canary_references(row: ItemRow, references: References) -> list[str]:
    if row.set not in references:
        raise DataError(
            f"canary set {row.set!r} has no reference secrets: exposure ranks each secret among "
            "references from the same space; pass canary_references={set: "
            "taggant.pipeline.perturb.canary.reference_secrets(set_spec, seed, item_secrets)}"
        )
    # The secret first: ranked among its references from the same computation.
    return [row.text] + [
        canary.reference_text(row.text, row.prefix_chars, _param(row, "secret"), ref)
        for ref in references[row.set]
    ]


def _exposure(item: Item) -> Metrics:
    secret = metrics.nll_sum(item.candidates[0])
    refs = np.array([metrics.nll_sum(c) for c in item.candidates[1:]])
    out = {
        "exposure_rank": exposure.exposure_by_rank(secret, refs),
        "rank": exposure.rank(secret, refs),
        "nll": secret,
        "references": len(refs),
    }
    if exposure.can_fit(refs):
        fit = exposure.fit_skewnorm(refs)
        log2_space = _param(item.row, "log2_space")
        bits = exposure.exposure_by_extrapolation(secret, fit, log2_space)
        if len(refs) >= exposure.MIN_INTERVAL_REFERENCES:
            seed = rng.derive_seed(0, "exposure_bootstrap", item.row.set, item.row.item_id)
            low, high = exposure.bootstrap_interval(secret, refs, log2_space, seed)
            out.update({"exposure_ci_low": low, "exposure_ci_high": high})
        out.update(
            {
                "exposure": bits,
                "exposure_at_cap": float(bits == log2_space),
                "skewnorm_a": fit[0],
                "skewnorm_loc": fit[1],
                "skewnorm_scale": fit[2],
            }
        )
    return out


def _word_tails(row: ItemRow) -> list[tuple[int, int]]:
    # Tail j runs from word j to the passphrase's end: the span the last (n − j) words occupy.
    spans = _param(row, "word_spans")
    return [(start, spans[-1][1]) for start, _ in spans]


def _ghost_last_k(item: Item) -> Metrics:
    # Tails nest (each starts later, all end together), so the count of exactly reproduced tails
    # is the largest k for which greedy decoding completes the last k words.
    last = sum(metrics.exact_match(tail.correct) for tail in item.spans)
    return {
        "last_words": last,
        "bits": last * math.log2(_param(item.row, "wordlist_size")),
        "words": len(item.spans),
    }


_WATERMARK_SCORES = ("neg_nll", "min_k_plus_plus_k20")


def _watermark(item: Item) -> Metrics:
    t = item.target
    return {
        "neg_nll": -metrics.nll_mean(t.logprob),
        "min_k_plus_plus_k20": metrics.min_k_plus_plus(t.logprob, t.mean, t.std, 0.2),
    }


def _watermark_set(items: list[Item], item_metrics: list[Metrics]) -> list[tuple[int, Metrics]]:
    # Members at each duplication level against the set's never-inserted (equally watermarked)
    # controls; a level without members or a set without controls yields no row.
    levels: dict[int, list[Metrics]] = {}
    for item, m in zip(items, item_metrics):
        levels.setdefault(item.row.dup_level, []).append(m)
    controls = levels.get(0, [])
    out = []
    for level in sorted(k for k in levels if k > 0 and controls):
        members = levels[level]
        # A fixed seed per set and level: the probe sees no experiment seed, and the p-value
        # must not change between runs or re-probes of the same scores.
        seed = rng.derive_seed(0, "watermark_permutation", items[0].row.set, level)
        row: Metrics = {"members": len(members), "controls": len(controls)}
        for score in _WATERMARK_SCORES:
            test = permutation.shift_test(
                np.array([m[score] for m in members]),
                np.array([m[score] for m in controls]),
                seed,
            )
            row.update(
                {
                    f"{score}_diff": test.diff,
                    f"{score}_diff_ci_low": test.ci_low,
                    f"{score}_diff_ci_high": test.ci_high,
                    f"{score}_p": test.p,
                    "subsets": test.subsets,
                }
            )
        out.append((level, row))
    # Holm over the family of one set at one checkpoint: every level × score tested above.
    keys = [(i, f"{score}_p") for i in range(len(out)) for score in _WATERMARK_SCORES]
    adjusted = multiplicity.holm(np.array([out[i][1][key] for i, key in keys]))
    for (i, key), p_holm in zip(keys, adjusted):
        out[i][1][f"{key}_holm"] = float(p_holm)
    return out


def _choices(row: ItemRow, references: References) -> list[str]:
    p = {key: _param(row, key) for key in ("template", "question", "choices", "answer", "subject")}
    questions = [
        testset.Question(p["question"], tuple(p["choices"]), i, p["subject"])
        for i in range(len(p["choices"]))
    ]
    texts = [testset.render(p["template"], q)[0] for q in questions]
    if texts[p["answer"]] != row.text:
        raise DataError(
            f"item {row.item_id}: its params do not re-render its text: the manifest "
            "was edited or written by another testset generator; re-run the plan stage"
        )
    return texts


def _testset_accuracy(item: Item) -> Metrics:
    sums = np.array([metrics.sequence_logprob(c) for c in item.candidates])
    per_byte = sums / np.array([max(1, len(t.encode("utf-8"))) for t in item.candidate_texts])
    answer = item.row.params["answer"]
    return {
        "correct": metrics.choice_accuracy(sums, answer),
        "correct_norm": metrics.choice_accuracy(per_byte, answer),
        "answer_logprob": float(sums[answer]),
        "choices": len(sums),
    }


def _generation(item: Item) -> Metrics:
    assert item.generated is not None and item.reference is not None
    return {
        **text_metrics.text_metrics(item.generated, item.reference),
        "tokens": len(item.suffix),
    }


BIOGRAPHY_GENERATION_TOKENS = 30
"""Most tokens generated for a biography field (Hubble's ``yago_hubble_gen`` ``max_gen_toks``)."""


def _field_views(row: ItemRow, generate: bool) -> list[views.View]:
    choices, answers = _param(row, "choices"), _param(row, "answers")
    out = []
    for field in biography.FIELDS:
        for prefix, prompt in biography.prompts(row.params, row.text, field).items():
            name = f"{field}.{prefix}"
            if generate:
                value = (choices[field][answers[field]],)
                out.append(views.View(name, prompt, value, 0, BIOGRAPHY_GENERATION_TOKENS, ". "))
            else:
                out.append(views.View(name, prompt, tuple(choices[field]), answers[field]))
    return out


def _format_views(row: ItemRow) -> list[views.View]:
    p = {key: _param(row, key) for key in ("question", "choices", "answer", "subject")}
    out = []
    for fmt, template in row.params.get("eval_templates", {}).items():
        texts = [
            testset.render(
                template, testset.Question(p["question"], tuple(p["choices"]), i, p["subject"])
            )
            for i in range(len(p["choices"]))
        ]
        prompt = texts[0][0][: texts[0][1]]
        choices = tuple(t[len(prompt) :] for t, _ in texts)
        out.append(views.View(fmt, prompt, choices, p["answer"], format=True))
    return out


def _no_item_metrics(item: Item) -> Metrics:
    raise AssertionError("a probe with views measures its views, not the item")


LOGPROB = frozenset({"logprob"})
GREEDY = frozenset({"correct"})
PLUS_PLUS = frozenset({"mean", "std"})
TOP_K_SAMPLER = frozenset({"topk_logprob"})

PROBES: dict[str, Probe] = {
    "loss": Probe("loss.v1", _loss, reads=LOGPROB, variants=True),
    "zlib_ratio": Probe("zlib_ratio.v1", _zlib_ratio, reads=LOGPROB, variants=True),
    "min_k": Probe("min_k.v2", _min_k, reads=LOGPROB, variants=True),
    "min_k_plus_plus": Probe(
        "min_k_plus_plus.v2", _min_k_plus_plus, reads=PLUS_PLUS, variants=True
    ),
    "exact_match": Probe("exact_match.v1", _exact_match, reads=GREEDY | {"margin"}, variants=True),
    "longest_prefix": Probe("longest_prefix.v1", _longest_prefix, reads=GREEDY, variants=True),
    "suffix_logprob": Probe(
        "suffix_logprob.v1", _suffix_logprob, reads=TOP_K_SAMPLER, variants=True
    ),
    "extraction_strength": Probe(
        "extraction_strength.v1", _extraction_strength, reads=GREEDY, variants=True
    ),
    "probabilistic_extraction": Probe(
        "probabilistic_extraction.v1",
        _probabilistic_extraction,
        reads=TOP_K_SAMPLER,
        variants=True,
    ),
    "exposure": Probe(
        "exposure.v4",
        _exposure,
        kinds_probed_by("exposure"),
        candidates=_canary_references,
        reads=LOGPROB,
    ),
    "ghost_last_k": Probe(
        "ghost_last_k.v1",
        _ghost_last_k,
        kinds_probed_by("ghost_last_k"),
        spans=_word_tails,
        reads=GREEDY,
    ),
    "watermark": Probe(
        "watermark.v3",
        _watermark,
        kinds_probed_by("watermark"),
        set_metrics=_watermark_set,
        reads=PLUS_PLUS,
    ),
    "testset_accuracy": Probe(
        "testset_accuracy.v2",
        _testset_accuracy,
        kinds_probed_by("testset_accuracy"),
        candidates=_choices,
        reads=LOGPROB,
    ),
    "testset_formats": Probe(
        "testset_formats.v2",
        _no_item_metrics,
        kinds_probed_by("testset_formats"),
        reads=LOGPROB,
        views=_format_views,
    ),
    "generation": Probe("generation.v1", _generation, reads=LOGPROB, generates=True, variants=True),
    "biography_choice": Probe(
        "biography_choice.v2",
        _no_item_metrics,
        kinds_probed_by("biography_choice"),
        reads=LOGPROB,
        views=lambda row: _field_views(row, generate=False),
    ),
    "biography_generation": Probe(
        "biography_generation.v1",
        _no_item_metrics,
        kinds_probed_by("biography_generation"),
        reads=LOGPROB,
        views=lambda row: _field_views(row, generate=True),
    ),
}
"""Probe name → its current implementation."""

assert set(PROBES) == set(PROBE_NAMES), "the registry and pipeline.spec.PROBE_NAMES disagree"

EXTRACTION_PROBES = frozenset(
    {
        "exact_match",
        "longest_prefix",
        "suffix_logprob",
        "extraction_strength",
        "probabilistic_extraction",
    }
)
"""Probes that read the suffix, so need items long enough to split."""


def resolve(names: Sequence[str]) -> dict[str, Probe]:
    """The probes called ``names``, in order, without repeats.

    Raises:
        ConfigError: for an unknown name.
    """
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        known = ", ".join(PROBES)
        raise ConfigError([("probes.names", f"unknown probes {unknown}; known: {known}")])
    return {n: PROBES[n] for n in dict.fromkeys(names)}


def config_hash(
    probe_names: Sequence[str], prefix_tokens: int, suffix_tokens: int, precision: str
) -> str:
    """The ``probe_config`` of rows from one probe pass: 16 hex digits of the SHA-256 of the probes'
    names and versions, of every setting that changes a value (``prefix_tokens``,
    ``suffix_tokens``, the model's ``precision``: ``ProbesSpec.precision``) and of the rows' layout (``store.SCHEMA_VERSION``: rows of an older
    layout, e.g. without ``eval_format``, are probed again); not of ``batch_items``, which only
    groups the forward passes. A new setting that changes values belongs here (and in
    ``probe_items``'s arguments).

    Raises:
        ConfigError: unknown probe names.
    """
    probes = resolve(probe_names)
    config = {
        "probes": {name: probe.version for name, probe in sorted(probes.items())},
        "prefix_tokens": prefix_tokens,
        "suffix_tokens": suffix_tokens,
        "precision": precision,
        "schema_version": store.SCHEMA_VERSION,
    }
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def probe_config(probes: ProbesSpec) -> str:
    """``config_hash`` of a spec's probes: what its store rows and commit records must hold."""
    return config_hash(probes.names, probes.prefix_tokens, probes.suffix_tokens, probes.precision)
