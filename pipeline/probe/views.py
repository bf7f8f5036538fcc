"""Views: texts a probe measures in place of its item (torch-free, read by the probe registry).

Some probes do not measure the inserted text itself but questions about it: a biography's field
asked under three prefixes, a test-set question rendered in a format that was never inserted.
Each such question is a ``View`` of the item: a prompt and its possible continuations. Its
metrics are stored in the item's rows (same ``item_id``, ``set``, ``dup_level``), two ways:

* a **format** (``View.format``: the item rendered another way, a test-set ``eval_templates``
  entry): rows with ``eval_format`` = the view's name and plain metric names, as the item's own
  text is stored under ``canonical``; a reader picks one format, never averages over them;
* a **question about the canonical text** (a biography field under a prefix): rows with
  ``eval_format`` = ``canonical`` and the metric name ``<view name>.<metric>``, e.g.
  ``birthplace.name_only.choice_correct`` (Hubble's one row per item, field, prefix and metric).
  Field and prefix are not renderings of the item, and each is a question of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taggant.pipeline.eval_format import CANONICAL
from taggant.pipeline.probe import metrics, text_metrics

Metrics = dict[str, float]


@dataclass(frozen=True)
class View:
    """One question about an item.

    Attributes:
        name: the metric-name prefix (no trailing dot).
        prompt: the text conditioned on.
        choices: continuations of ``prompt``; the true one at ``answer``. With two or more, each
            is scored (summed log-likelihood of its tokens after the prompt, as
            ``testset_accuracy`` scores choices).
        answer: index of the true continuation.
        max_new_tokens: above 0, the model greedily continues ``prompt`` (stopping at a newline,
            the end of document or this many tokens) and the generation is scored against the
            true continuation.
        stop: decoding stops once the generation holds this text (the text that follows the
            true continuation in the item), and the generation is cut before its first
            occurrence, searched in the generation plus a space so that a final ``"."``
            matches ``". "``.
        format: the view is the item in another format (module docstring): its rows carry
            ``eval_format`` = ``name``.
    """

    name: str
    prompt: str
    choices: tuple[str, ...]
    answer: int
    max_new_tokens: int = 0
    stop: str | None = None
    format: bool = False


def choice_metrics(
    choice_logprobs: list[np.ndarray], choices: tuple[str, ...], answer: int
) -> Metrics:
    """``choice_correct`` ↑ (the true continuation has the largest summed log-likelihood, ties
    wrong), ``choice_correct_norm`` ↑ (per UTF-8 byte), ``answer_logprob`` ↑, ``choices``."""
    sums = np.array([metrics.sequence_logprob(c) for c in choice_logprobs])
    per_byte = sums / np.array([max(1, len(c.encode("utf-8"))) for c in choices])
    return {
        "choice_correct": metrics.choice_accuracy(sums, answer),
        "choice_correct_norm": metrics.choice_accuracy(per_byte, answer),
        "answer_logprob": float(sums[answer]),
        "choices": len(sums),
    }


def generation_metrics(view: View, generated: str) -> Metrics:
    """``pipeline.probe.text_metrics`` of the generation (cut at ``view.stop``, whitespace
    stripped) against the true continuation (stripped), prefixed ``gen_``."""
    if view.stop is not None:
        generated = (generated + " ").split(view.stop)[0]
    scores = text_metrics.text_metrics(generated.strip(), view.choices[view.answer].strip())
    return {f"gen_{k}": v for k, v in scores.items()}


def stored(view: View, values: Metrics) -> tuple[str, Metrics]:
    """The ``eval_format`` of the view's rows and ``values`` under their stored metric names
    (module docstring)."""
    if view.format:
        return view.name, values
    return CANONICAL, {f"{view.name}.{k}": v for k, v in values.items()}
