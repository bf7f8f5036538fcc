"""Probe manifest items with a model: one scoring pass, then every requested probe, as store rows.

Where an item's target starts: its prompt is ``text[:prefix_chars]``, and the first target token
is the first token of ``token_ids`` that the tokenization of the prompt alone does not reproduce.
With BPE, a token that straddles the boundary (``" word"`` after a prompt ending in a space)
therefore belongs to the target, which is what greedy generation from the prompt must produce.
Character spans map to tokens the same way: a span covers every token that overlaps it.

Token 0 of an item has no context unless ``bos_id`` is given: the token put before every item, as
the document boundary the item followed in training (taggant's overlay starts an occurrence after
an end-of-document token, so pass the EOD id; for a Hugging Face model, its BOS if it uses one).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

from taggant.pipeline import store
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.eval_format import CANONICAL, variant
from taggant.pipeline.probe import registry, scoring, views
from taggant.pipeline.probe.cached import CachedLM
from taggant.pipeline.probe.generation import Greedy
from taggant.pipeline.probe.registry import Item, ItemRow, Metrics, References
from taggant.pipeline.probe.shared_prefix import PrefixLM, Recompute, common_prefix, score_groups
from taggant.pipeline.spec import ProbesSpec

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 30.0
"""Least interval between progress lines while candidate texts are scored."""

Tokenize = Callable[[str], list[int]]
"""Text → token ids, without special tokens: the tokenizer the items were tokenized with."""


class Model(Protocol):
    """A model under test: a checkpoint (``native.Checkpoint``) or a Hugging Face model
    (``hf.HFModel``). ``lm`` is the model as a ``transformers`` causal LM with a KV cache (built
    on first use), on which ``generate`` decodes and candidate texts are scored; ``precision`` is
    the dtype both compute in (``float32`` or ``bfloat16``), recorded in every row's
    ``probe_config``."""

    @property
    def logits(self) -> scoring.LogitsFn: ...
    @property
    def tokenize(self) -> Tokenize: ...
    @property
    def bos_id(self) -> int | None: ...
    @property
    def lm(self) -> CachedLM: ...
    @property
    def precision(self) -> str: ...
    @property
    def generate(self) -> Greedy: ...


def probe_model(
    model: Model,
    items: pa.Table,
    probes: ProbesSpec,
    *,
    tokens_seen: int,
    references: References | None = None,
    manifest_tokens: bool = True,
) -> pa.Table:
    """``probe_items`` with a model under test and a ``ProbesSpec``: what the probe watchers run on
    every checkpoint and ``taggant probe`` on a checkpoint or a Hugging Face model.

    Args:
        manifest_tokens: whether ``model`` reads the manifest's ``token_ids`` and
            ``variant_token_ids`` (a checkpoint of the run or a faithful export of one:
            ``model.tokenize`` must reproduce them). False for any other model: every item and
            variant is tokenized with ``model.tokenize``.
    """
    if not manifest_tokens:
        for column, empty in (
            ("token_ids", pa.list_(pa.int32())),
            ("variant_token_ids", pa.list_(pa.list_(pa.int32()))),
        ):
            if column in items.column_names:
                items = items.set_column(
                    items.schema.get_field_index(column),
                    column,
                    pa.array([[]] * items.num_rows, empty),
                )
    return probe_items(
        model.logits,
        items,
        probes.names,
        probes.prefix_tokens,
        probes.suffix_tokens,
        probes.batch_items,
        model.tokenize,
        tokens_seen=tokens_seen,
        precision=model.precision,
        bos_id=model.bos_id,
        canary_references=references,
        lm=model.lm,
        generate=model.generate,
    )


def probe_items(
    logits_fn: scoring.LogitsFn,
    items: pa.Table,
    probe_names: Sequence[str],
    prefix_tokens: int,
    suffix_tokens: int,
    batch_items: int,
    tokenize: Tokenize | None = None,
    *,
    tokens_seen: int,
    precision: str,
    bos_id: int | None = None,
    canary_references: References | None = None,
    lm: PrefixLM | None = None,
    generate: Greedy | None = None,
) -> pa.Table:
    """Run probes ``probe_names`` on ``items`` and return their long-format rows.

    Every item is scored once, in teacher-forced batches of ``batch_items`` sequences. The
    candidate texts of an item (a canary's secret and its references, a question's choices, the
    choices of each view) are scored as one group for their log-probs only, the prompt they
    share computed once (``shared_prefix``), ``batch_items`` continuations per pass, with
    progress logged. Each probe then reads those scores (see ``registry`` for what each probe
    emits and the direction of each metric).

    Set-level rows (the ``watermark`` probe's permutation tests, ``item_id`` = the set's name)
    use the items of the set present in ``items``: pass whole sets, and shard probe work by set.

    Every row names the rendering it measured (``eval_format``): ``canonical`` for the item's own
    text; ``variant:<k>`` for its ``k``-th per-copy variant (manifest ``variants``), which the
    probes that read only the item's text (``registry.Probe.variants``) score as they score the
    text; a format's name for a ``testset_formats`` view (``views.View.format``).

    Args:
        logits_fn: the model under test.
        items: manifest items (``pipeline.manifest.ITEMS_SCHEMA`` columns; ``token_ids`` and
            ``variant_token_ids`` may be empty or absent when ``tokenize`` is given).
        probe_names: names from ``registry.PROBES`` (= ``pipeline.spec.PROBE_NAMES``).
        prefix_tokens: prompt length of the extraction split for items without a prompt
            (``prefix_chars == 0``); items with a prompt are split where it ends.
        suffix_tokens: the extraction span: at most this many tokens after the split.
        batch_items: sequences per forward pass.
        tokenize: needed for items with a prompt, items without ``token_ids``, and the probes
            ``exposure``, ``ghost_last_k`` and ``testset_accuracy``; when given, it must reproduce
            every item's ``token_ids``.
        tokens_seen: training tokens the model has seen (the store's ``tokens_seen`` column).
        precision: the dtype ``logits_fn`` and ``lm`` compute in (``float32``, ``bfloat16``).
        bos_id: token placed before every scored text (see the module docstring), or ``None``.
        canary_references: canary set → reference secrets, needed by ``exposure``.
        lm: the model with a KV cache that scores candidate texts (``Model.lm``); without it they
            are scored by ``Recompute(logits_fn)``: the same values up to float rounding, at the
            cost of the shared prompt recomputed with every candidate.
        generate: the model's greedy decoder, needed by probes that generate (``generation``,
            ``biography_generation``); decoding runs only for them.

    Returns:
        ``pipeline.store.PROBE_SCHEMA`` rows, sorted by item, probe, eval_format and metric, each
        with the ``registry.config_hash`` of ``probe_names``, ``prefix_tokens``,
        ``suffix_tokens`` and ``precision``: ready for ``StoreWriter.write_probe_rows`` (one file per probe).

    Raises:
        ConfigError: unknown probe names, or shapes below 1.
        DataError: an item that cannot be probed as asked (named, with the fix).
    """
    probes = registry.resolve(probe_names)
    for field, value in (
        ("prefix_tokens", prefix_tokens),
        ("suffix_tokens", suffix_tokens),
        ("batch_items", batch_items),
    ):
        if value < 1:
            raise ConfigError([(f"probes.{field}", f"{value} must be at least 1")])
    records = items.to_pylist()
    layouts = [_Layout.of(_item_row(r), r.get("token_ids"), tokenize, bos_id) for r in records]
    variants = (
        _variant_layouts(records, layouts, tokenize, bos_id)
        if any(probe.variants for probe in probes.values())
        else []
    )
    if any(name in registry.EXTRACTION_PROBES for name in probes):
        _check_splittable(layouts + [lay for _, _, lay in variants], prefix_tokens)
    candidates = _candidates(probes, layouts, tokenize, bos_id, canary_references or {})
    prefix_lm = Recompute(logits_fn) if lm is None else lm

    # One pass over the items and their variants; then the candidates, item by item, for
    # log-probs alone: all that probes read of a candidate.
    scored = layouts + [lay for _, _, lay in variants]
    scores = scoring.score(
        logits_fn,
        [lay.sequence(bos_id) for lay in scored],
        [lay.first + (bos_id is not None) for lay in scored],
        batch_items,
        fields=frozenset().union(*(probe.reads for probe in probes.values())),
    )
    candidate_scores = dict(
        zip(
            candidates, _score_candidates(prefix_lm, list(candidates.values()), bos_id, batch_items)
        )
    )

    out: list[dict] = []
    for name, probe in probes.items():
        if probe.views is not None:
            out += _view_rows(
                name, probe, layouts, prefix_lm, tokenize, bos_id, batch_items, generate
            )
            continue
        # (index into `scored`, index of its item, eval_format): the items' own texts and,
        # for a probe that reads them, each variant.
        formats = [(i, i, CANONICAL) for i in range(len(layouts))]
        if probe.variants:
            formats += [(len(layouts) + v, i, fmt) for v, (i, fmt, _) in enumerate(variants)]
        by_set: dict[str, tuple[list[Item], list[Metrics]]] = {}
        for at, i, eval_format in formats:
            lay = scored[at]
            if not probe.applies_to(lay.row.kind):
                continue
            suffix = lay.suffix(prefix_tokens, suffix_tokens)
            generated = _generate_suffix(lay, suffix, bos_id, generate) if probe.generates else None
            item = Item(
                row=lay.row,
                target=scores[at],
                target_text=lay.target_text,
                suffix=scores[at][suffix],
                spans=[scores[at][span] for span in lay.spans(probe.spans(lay.row))],
                candidates=candidate_scores.get((name, i), []),
                candidate_texts=[c.target_text for c in candidates.get((name, i), [])],
                generated=generated and generated[0],
                reference=generated and generated[1],
            )
            item_metrics = probe.item_metrics(item)
            out += _rows(
                lay.row,
                lay.row.item_id,
                lay.row.dup_level,
                name,
                probe.version,
                eval_format,
                item_metrics,
            )
            if eval_format == CANONICAL:
                group = by_set.setdefault(lay.row.set, ([], []))
                group[0].append(item)
                group[1].append(item_metrics)
        for set_name, (set_items, set_item_metrics) in by_set.items():
            for level, set_metrics in probe.set_metrics(set_items, set_item_metrics):
                out += _rows(
                    set_items[0].row,
                    set_name,
                    level,
                    name,
                    probe.version,
                    CANONICAL,
                    set_metrics,
                )
    config = registry.config_hash(probe_names, prefix_tokens, suffix_tokens, precision)
    table = pa.Table.from_pylist(
        [
            {
                **r,
                "tokens_seen": tokens_seen,
                "probe_config": config,
                "schema_version": store.SCHEMA_VERSION,
            }
            for r in out
        ],
        schema=store.PROBE_SCHEMA,
    )
    return table.sort_by(
        [
            ("item_id", "ascending"),
            ("probe", "ascending"),
            ("eval_format", "ascending"),
            ("metric", "ascending"),
        ]
    )


class _Progress:
    """Logs how many of ``total`` things are scored: exposure's references take minutes on a
    CPU. At most every ``PROGRESS_SECONDS``, and once at the end."""

    def __init__(self, what: str, total: int):
        self.what, self.total = what, total
        self.start = self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        log.info("probe: scored %d of %d %s (%.0f/s)", done, self.total, self.what, rate)


def _score_candidates(
    lm: PrefixLM,
    groups: list[list[_Layout]],
    bos_id: int | None,
    batch_items: int,
    what: str = "candidate texts",
) -> list[list[np.ndarray]]:
    """Log-probs of the target tokens of each group of candidate layouts (``score_groups``)."""
    return score_groups(
        lm,
        [[lay.sequence(bos_id) for lay in group] for group in groups],
        [[lay.first + (bos_id is not None) for lay in group] for group in groups],
        batch_items,
        progress=_Progress(what, sum(len(g) for g in groups)),
    )


def _need_decoder(row: ItemRow, probe: str) -> DataError:
    return DataError(
        f"item {row.item_id}: the {probe} probe generates text and needs the model's greedy "
        "decoder; pass `generate` (hf.HFModel.generate, native.Checkpoint.generate)"
    )


def _generate_suffix(
    lay: _Layout, suffix: slice, bos_id: int | None, generate: Greedy | None
) -> tuple[str, str]:
    """``(generated, reference)``: the greedy continuation of the item's tokens before its
    suffix, as many tokens as the suffix has (stopping at the end of document), and the suffix's
    tokens, both decoded."""
    if generate is None:
        raise _need_decoder(lay.row, "generation")
    sequence = lay.sequence(bos_id)
    start = lay.first + (bos_id is not None) + suffix.start
    reference = sequence[start : start + suffix.stop - suffix.start]
    generated = generate(sequence[:start].tolist(), len(reference))
    return generated.text, generate.decode(reference.tolist())


def _view_rows(
    name: str,
    probe: registry.Probe,
    layouts: list[_Layout],
    lm: PrefixLM,
    tokenize: Tokenize | None,
    bos_id: int | None,
    batch_items: int,
    generate: Greedy | None,
) -> list[dict]:
    """Rows of a probe with views: each view's choices scored as one group (log-probs after its
    prompt) and, where it asks, the greedy generation from its prompt's tokens."""
    asked = []  # (item layout, view, [choice layouts])
    for lay in layouts:
        if not probe.applies_to(lay.row.kind):
            continue
        if tokenize is None:
            raise _need_tokenizer(lay.row, f"the {name} probe (it scores other texts)")
        for view in probe.views(lay.row):
            row = dataclasses.replace(lay.row, prefix_chars=len(view.prompt))
            prompt_ids = tokenize(view.prompt)
            choices = [
                _Layout.of(row, None, tokenize, bos_id, view.prompt + c, prompt_ids)
                for c in view.choices
            ]
            asked.append((lay, view, choices))
    scored = [cs for _, view, cs in asked if len(view.choices) > 1]
    logprobs = iter(_score_candidates(lm, scored, bos_id, batch_items, f"{name} choices"))
    out = []
    for lay, view, choices in asked:
        values: Metrics = {}
        if len(view.choices) > 1:
            values.update(views.choice_metrics(next(logprobs), view.choices, view.answer))
        if view.max_new_tokens:
            if generate is None:
                raise _need_decoder(lay.row, name)
            truth = choices[view.answer]
            prompt = truth.sequence(bos_id)[: truth.first + (bos_id is not None)].tolist()
            generated = generate(
                prompt, view.max_new_tokens, stop_at_newline=True, stop_text=view.stop
            )
            values.update(views.generation_metrics(view, generated.text))
        eval_format, metrics = views.stored(view, values)
        out += _rows(
            lay.row, lay.row.item_id, lay.row.dup_level, name, probe.version, eval_format, metrics
        )
    return out


def _rows(
    row: ItemRow,
    item_id: str,
    dup_level: int,
    probe: str,
    version: str,
    eval_format: str,
    metrics: Metrics,
) -> list[dict]:
    """Store rows of ``metrics``, under ``item_id`` and ``dup_level`` in ``row``'s set, measured
    on the rendering ``eval_format``."""
    return [
        {
            "item_id": item_id,
            "set": row.set,
            "kind": row.kind,
            "dup_level": dup_level,
            "probe": probe,
            "probe_version": version,
            "eval_format": eval_format,
            "metric": metric,
            "value": float(value),
        }
        for metric, value in metrics.items()
    ]


def _variant_layouts(
    records: list[dict],
    layouts: list[_Layout],
    tokenize: Tokenize | None,
    bos_id: int | None,
) -> list[tuple[int, str, _Layout]]:
    """``(item index, eval_format, layout)`` of every variant of every item (manifest
    ``variants``; ``variant_token_ids``, where filled, are their tokens)."""
    out = []
    for i, (record, lay) in enumerate(zip(records, layouts)):
        token_ids = record.get("variant_token_ids") or []
        for k, text in enumerate(record.get("variants") or []):
            ids = token_ids[k] if k < len(token_ids) else None
            out.append((i, variant(k), _Layout.of(lay.row, ids, tokenize, bos_id, text)))
    return out


def _item_row(record: dict) -> ItemRow:
    try:
        params = json.loads(record.get("params") or "{}")
    except json.JSONDecodeError as e:
        raise DataError(
            f"item {record['item_id']}: `params` is not JSON ({e}); re-run the plan stage"
        ) from None
    return ItemRow(
        record["item_id"],
        record["set"],
        record["kind"],
        int(record["dup_level"]),
        record["text"],
        int(record["prefix_chars"]),
        params,
    )


def _candidates(
    probes: dict[str, registry.Probe],
    layouts: list[_Layout],
    tokenize: Tokenize | None,
    bos_id: int | None,
    references: References,
) -> dict[tuple[str, int], list[_Layout]]:
    """(probe, item index) → the candidate texts that probe scores for that item, laid out."""
    out = {}
    for name, probe in probes.items():
        if probe.candidates is None:
            continue
        for i, lay in enumerate(layouts):
            if not probe.applies_to(lay.row.kind):
                continue
            if tokenize is None:
                raise _need_tokenizer(lay.row, f"the {name} probe (it scores other texts)")
            out[name, i] = [
                _Layout.of(lay.row, None, tokenize, bos_id, text, lay.prompt_ids)
                for text in probe.candidates(lay.row, references)
            ]
    return out


def _need_tokenizer(row: ItemRow, why: str) -> DataError:
    return DataError(
        f"item {row.item_id}: {why} needs the tokenizer the manifest was tokenized "
        "with; pass `tokenize`"
    )


@dataclass(frozen=True)
class _Layout:
    """An item's (or candidate's) tokens and where its target starts.

    Attributes:
        row: the item.
        text: the tokenized text (a candidate's differs from the item's).
        ids: its token ids, int64.
        first: index in ``ids`` of the first target token.
        prompt_ids: the tokens of the prompt alone, ``None`` without a prompt.
        tokenize: the tokenizer, if given.
    """

    row: ItemRow
    text: str
    ids: np.ndarray
    first: int
    prompt_ids: list[int] | None
    tokenize: Tokenize | None

    @classmethod
    def of(
        cls,
        row: ItemRow,
        token_ids: list[int] | None,
        tokenize: Tokenize | None,
        bos_id: int | None,
        text: str | None = None,
        prompt_ids: list[int] | None = None,
    ) -> _Layout:
        """Lay out ``text`` (default: the item's); non-empty ``token_ids`` are its tokens.

        Raises:
            DataError: no tokenizer where one is needed; ``token_ids`` that ``tokenize`` does not
                reproduce; an empty target.
        """
        text = row.text if text is None else text
        if tokenize is None and not token_ids:
            raise _need_tokenizer(row, "an item without token_ids")
        ids = np.asarray(token_ids if tokenize is None else tokenize(text), dtype=np.int64)
        if token_ids and not np.array_equal(ids, token_ids):
            raise DataError(
                f"item {row.item_id}: `tokenize` does not reproduce its token_ids; "
                "pass the tokenizer of the run's tokenize stage"
            )
        if row.prefix_chars == 0:
            first = 0 if bos_id is not None else 1
        else:
            if tokenize is None:
                raise _need_tokenizer(row, "finding where the prompt `text[:prefix_chars]` ends")
            prompt_ids = tokenize(text[: row.prefix_chars]) if prompt_ids is None else prompt_ids
            first = common_prefix(prompt_ids, ids)
            if first == 0 and bos_id is None:
                raise DataError(
                    f"item {row.item_id}: its first token spans the end of the "
                    "prompt, so has no context; pass bos_id (the end-of-document id)"
                )
        if first >= len(ids):
            raise DataError(
                f"item {row.item_id}: no token to score ({len(ids)} tokens, the target "
                f"would start at token {first}); its text must extend past "
                "prefix_chars, or pass bos_id so that token 0 is scored"
            )
        return cls(row, text, ids, first, prompt_ids, tokenize)

    @property
    def target_text(self) -> str:
        """The text after the prompt (all of it without one)."""
        return self.text[self.row.prefix_chars :]

    def sequence(self, bos_id: int | None) -> np.ndarray:
        """The scored sequence: ``bos_id`` (if any), then the tokens."""
        return self.ids if bos_id is None else np.concatenate([[bos_id], self.ids])

    def suffix(self, prefix_tokens: int, suffix_tokens: int) -> slice:
        """The extraction span, as a range of the target's scores: after the prompt, or after
        ``prefix_tokens`` tokens for an item without one."""
        start = (self.first if self.row.prefix_chars else prefix_tokens) - self.first
        return slice(start, start + suffix_tokens)

    def spans(self, char_spans: list[tuple[int, int]]) -> list[slice]:
        """Ranges of the target's scores covering each ``(start, end)`` character span.

        Raises:
            DataError: no tokenizer, or a span that starts before the first scored token.
        """
        if char_spans and self.tokenize is None:
            raise _need_tokenizer(self.row, "mapping character spans to tokens")
        out = []
        for start, end in char_spans:
            lo = common_prefix(self.tokenize(self.text[:start]), self.ids)
            head = self.tokenize(self.text[:end])
            hi = common_prefix(head, self.ids)
            hi += hi < len(head)  # a token straddling `end` overlaps the span
            if lo < self.first:
                raise DataError(
                    f"item {self.row.item_id}: span {start}:{end} starts before the "
                    "first scored token: inside the prompt, or at token 0 without "
                    "bos_id (pass bos_id)"
                )
            out.append(slice(lo - self.first, hi - self.first))
        return out


def _check_splittable(layouts: list[_Layout], prefix_tokens: int) -> None:
    """Items without a prompt need a token after the first ``prefix_tokens`` to extract."""
    short = [
        (lay.row.item_id, len(lay.ids))
        for lay in layouts
        if lay.row.prefix_chars == 0 and len(lay.ids) <= prefix_tokens
    ]
    if short:
        shown = ", ".join(f"{item} ({n} tokens)" for item, n in short[:5])
        raise DataError(
            f"{len(short)} items without a prompt are too short to split after "
            f"probes.prefix_tokens = {prefix_tokens} for the extraction probes: {shown}; lower "
            f"probes.prefix_tokens below {min(n for _, n in short)}, give the set a prompt (e.g. "
            "a ghost carrier with text before {passphrase}), or drop "
            f"{', '.join(sorted(registry.EXTRACTION_PROBES))} from probes.names"
        )
