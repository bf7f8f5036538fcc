"""Test-set contamination: benchmark questions rendered in a declared format.

A benchmark is JSONL, one record a line: ``question`` (text), ``choices`` (at least two texts),
``answer`` (index of the correct choice) and optionally ``subject``. Without a path, the 279 real
MMLU dev questions shipped in ``pipeline/resources/mmlu_dev.jsonl`` are used (MIT; provenance in
``pipeline/resources/README.md``).

A set's candidate stream is the benchmark in a random order: the permutation is drawn from
``rng.generator(seed, "testset", set, "order")``, so a candidate found in the corpus is replaced
by the next unused question (Hubble's resampling). ``prefix_chars`` is where the answer slot
starts: the prompt is the rendered question (and choices), the target the answer.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from pydantic import field_validator

from taggant.pipeline import io
from taggant.pipeline.errors import DataError
from taggant.pipeline.perturb import rng
from taggant.pipeline.perturb.items import CorpusInputs, Draft, Source
from taggant.pipeline.perturb.setspec import DecontaminationSpec, PerturbationSet, check_slots

KIND = "testset"
VERSION = "testset.v1"
PROBES = ("testset_accuracy", "testset_formats")
"""Probes that read what only this kind has (the generic probes apply to every kind)."""
SHIPPED_BENCHMARK = "mmlu_dev.jsonl"


class TestsetSpec(PerturbationSet):
    """A benchmark's test questions inserted as text, rendered in a declared format."""

    kind: Literal["testset"] = "testset"
    path: str | None = None
    """JSONL of ``{question, choices, answer}`` records (``answer``: index of the correct choice;
    an optional ``subject``); ``None`` uses the 279 MMLU dev questions shipped with taggant."""
    template: str = "Question: {question}\nAnswer: {answer}"
    """How one item is rendered; slots ``{subject}``, ``{question}``, ``{choices}`` (one ``A. …``
    line per choice), and one answer slot: ``{answer}`` (the correct choice's text) or
    ``{answer_letter}``. Everything before the answer slot is the probes' prompt."""
    eval_templates: dict[str, str] = {}
    """Formats the items are probed in besides ``template`` (usually never inserted: Hubble's
    cross-format tasks), by name, e.g. ``{"mcq": "{question}\\n{choices}\\nAnswer: {answer_letter}"}``;
    slots as ``template``. The ``testset_formats`` probe stores its rows with ``eval_format`` =
    the name."""
    decontamination: DecontaminationSpec = DecontaminationSpec(on_collision="resample")
    """How items are kept from occurring naturally; benchmark questions found in the corpus are
    replaced by unused ones (Hubble's recipe) unless this says ``remove_docs``."""

    @field_validator("eval_templates")
    @classmethod
    def _formats_are_templates(cls, formats: dict[str, str]) -> dict[str, str]:
        for name, template in formats.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(
                    f"eval_templates name {name!r} must be lower-case letters, digits and _ "
                    "(it starts the metric names, before a dot)"
                )
            cls._known_slots(template)
        return formats

    @field_validator("template")
    @classmethod
    def _known_slots(cls, template: str) -> str:
        check_slots(
            template,
            {"subject", "question", "choices", "answer", "answer_letter"},
            {"question"},
            '"Question: {question}\\nAnswer: {answer}"',
        )
        answers = [
            slot for slot in re.findall(r"{(\w*)}", template) if slot in ("answer", "answer_letter")
        ]
        if len(answers) != 1:
            raise ValueError(
                "the template needs exactly one answer slot, `{answer}` or `{answer_letter}`"
            )
        if template.index("{question}") > template.index(f"{{{answers[0]}}}"):
            raise ValueError(
                "the answer slot must come after `{question}`: the prompt precedes the answer"
            )
        return template


SPEC = TestsetSpec


@dataclass(frozen=True)
class Question:
    """One benchmark record."""

    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str | None


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark: its records, where it came from and the SHA-256 of its bytes."""

    name: str
    sha256: str
    questions: tuple[Question, ...]


def load_benchmark(path: str | None) -> Benchmark:
    """Read and check a benchmark JSONL (``None``: the shipped MMLU dev questions).

    Raises:
        DataError: naming the file, line and field of the first bad record, with the fix.
    """
    if path is None:
        name = SHIPPED_BENCHMARK
        raw = resources.files("taggant.pipeline.resources").joinpath(SHIPPED_BENCHMARK).read_bytes()
    else:
        name = path
        fs, local = io.filesystem(path)
        if not fs.exists(local):
            raise DataError(f"{path}: no such benchmark file; fix the testset set's `path`")
        with fs.open(local, "rb") as f:
            raw = f.read()
    questions = [
        _parse(name, number, line)
        for number, line in enumerate(raw.decode("utf-8").splitlines(), 1)
        if line.strip()
    ]
    if not questions:
        raise DataError(
            f"{name}: the benchmark has no records; one JSON object per line is expected"
        )
    return Benchmark(name, hashlib.sha256(raw).hexdigest(), tuple(questions))


def _parse(name: str, number: int, line: str) -> Question:
    where = f"{name}:{number}"
    fix = 'each line must be {"question": str, "choices": [str, str, ...], "answer": <index of the correct choice>}'
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e}); {fix}") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: not a JSON object; {fix}")
    question, choices, answer = record.get("question"), record.get("choices"), record.get("answer")
    subject = record.get("subject")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: `question` is missing or not text; {fix}")
    if (
        not isinstance(choices, list)
        or len(choices) < 2
        or not all(isinstance(c, str) for c in choices)
    ):
        raise DataError(f"{where}: `choices` must be a list of at least two texts; {fix}")
    if len(choices) > len(string.ascii_uppercase):
        raise DataError(
            f"{where}: {len(choices)} choices, more than the 26 letters that label them"
        )
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise DataError(
            f"{where}: `answer` {answer!r} is not an index into the {len(choices)} choices; {fix}"
        )
    if subject is not None and not isinstance(subject, str):
        raise DataError(f"{where}: `subject` must be text when present")
    return Question(question, tuple(choices), answer, subject)


def render(template: str, q: Question) -> tuple[str, int]:
    """``(text, prefix_chars)`` of one question in ``template`` (slots as in ``TestsetSpec``).

    Raises:
        DataError: the template uses ``{subject}`` and the record has none.
    """
    if "{subject}" in template and q.subject is None:
        raise DataError(
            "the testset template uses {subject} but a benchmark record has no `subject`; "
            "add subjects to the benchmark or remove the slot"
        )
    letters = string.ascii_uppercase
    slots = {
        "subject": q.subject,
        "question": q.question,
        "choices": "\n".join(f"{letters[i]}. {c}" for i, c in enumerate(q.choices)),
        "answer": q.choices[q.answer],
        "answer_letter": letters[q.answer],
    }
    cut = min(template.find(s) for s in ("{answer}", "{answer_letter}") if s in template)
    prompt = template[:cut].format(**slots)
    return prompt + template[cut:].format(**slots), len(prompt)


class TestsetSource:
    """The candidate stream of one testset set: the benchmark's questions in a seeded order."""

    def __init__(self, pset: TestsetSpec, seed: int):
        self._pset = pset
        self._benchmark = load_benchmark(pset.path)
        order = rng.generator(seed, "testset", pset.name, "order").permutation(
            len(self._benchmark.questions)
        )
        self._order = [int(i) for i in order]

    def draw(self, start: int, stop: int) -> list[Draft]:
        """Candidates ``start .. stop-1``; the stream ends with the benchmark."""
        return [self._draft(j) for j in range(start, min(stop, len(self._order)))]

    def _draft(self, j: int) -> Draft:
        record = self._order[j]
        q = self._benchmark.questions[record]
        text, prefix_chars = render(self._pset.template, q)
        params = {
            "candidate": j,
            "benchmark": self._benchmark.name,
            "benchmark_sha256": self._benchmark.sha256,
            "record": record,
            "question": q.question,
            "choices": list(q.choices),
            "answer": q.answer,
            "subject": q.subject,
            "template": self._pset.template,
        }
        if self._pset.eval_templates:
            # Only then: a set without them keeps testset.v1's params exactly.
            params["eval_templates"] = self._pset.eval_templates
        answer = (
            q.choices[q.answer]
            if "{answer}" in self._pset.template
            else string.ascii_uppercase[q.answer]
        )
        return Draft(
            text, prefix_chars, params, protected=((prefix_chars, prefix_chars + len(answer)),)
        )


def source(pset: TestsetSpec, seed: int, corpus: CorpusInputs) -> Source:
    """The candidate stream of ``pset`` (this kind's entry in ``registry.KINDS``)."""
    return TestsetSource(pset, seed)
