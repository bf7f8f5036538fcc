"""Synthetic biographies whose PII fields are probed one by one (Hubble's YAGO set, offline).

Candidate ``j`` of a set is one person drawn by ``faker.Faker(locale)`` seeded with
``rng.derive_seed(seed, "biography", set, j)``: a name and Hubble's seven fields, rendered as one
sentence per field in ``FIELDS`` order, each sentence starting with the person's name::

    Natalie Pope is from Western Sahara. Natalie Pope was born in Port Stevenbury. ...

The first sentence (nationality) is the *intro*. A candidate depends only on the seed, the set, ``j``
and the installed Faker (its version is recorded in ``params.faker``: another Faker release may
draw other people, so a plan is reproduced with the same Faker), never on the worker.

Where taggant differs from Hubble and why: Hubble takes entities from YAGO; taggant draws them from
Faker so that no data set is fetched. Faker has no nationalities or universities, so
``nationality`` is a country ("is from <country>", Hubble's own wording) and ``university`` is
``University of <city>``. The UUID is 32 hex digits, as Hubble's.

``params`` records, besides the generator's inputs:

* ``fields``: ``{field: [start, end)}``, the value's character span in the text (kept intact by
  per-copy variants; the key is the one ``kind: text`` uses);
* ``sentences``: ``{field: start}``, where the field's sentence (its name) starts;
* ``choices``: ``{field: [10 values]}``, the value among 9 distractors of the same field, drawn from
  the same generator (emails: other addresses built from the same name, as Hubble's
  ``_generate_email_candidates``, so the name does not give the answer away); ``answers``:
  ``{field: index of the value}``.

``prompts(params, text, field)`` gives the three prefixes the ``biography_choice`` and
``biography_generation`` probes condition on: ``full`` (the biography up to the value), ``intro``
(the intro sentence, then the field's sentence up to the value) and ``name_only`` (the field's
sentence up to the value: the name and the relation).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any, Literal

import numpy as np

from taggant.pipeline.errors import DataError
from taggant.pipeline.perturb import rng
from taggant.pipeline.perturb.items import CorpusInputs, Draft, Source
from taggant.pipeline.perturb.setspec import PerturbationSet

KIND = "biography"
VERSION = "biography.v1"
PROBES: tuple[str, ...] = ("biography_choice", "biography_generation")
"""Probes that read the fields only this kind records."""

FIELDS = ("nationality", "birthplace", "university", "birthdate", "email", "occupation", "uuid")
"""Hubble's seven PII fields, in the order the biography states them (the first is the intro)."""

SENTENCES = {
    "nationality": "{name} is from {value}.",
    "birthplace": "{name} was born in {value}.",
    "university": "{name} is an alumnus of {value}.",
    "birthdate": "{name} was born on {value}.",
    "email": "{name} receives email at {value}.",
    "occupation": "{name} works as {value}.",
    "uuid": "{name} has the unique identifier {value}.",
}
"""One sentence per field (Hubble's wording where it has one)."""

PREFIXES = ("full", "intro", "name_only")
"""The prompts a field is probed under, strongest first."""

CHOICES = 10
"""Choices per field question: the value and 9 distractors."""

_EMAIL_PATTERNS = ("{f}.{l}", "{f}{l}", "{f0}{l}", "{f}_{l}", "{l}.{f}", "{f}{n}", "{l}{n}")


class BiographySpec(PerturbationSet):
    """Synthetic people with seven PII fields (see ``pipeline.perturb.biography``)."""

    kind: Literal["biography"] = "biography"
    locale: Literal["en_US"] = "en_US"
    """Faker locale the people are drawn in (one, whose values ``SENTENCES`` reads well with)."""


SPEC = BiographySpec


def faker_version() -> str:
    return importlib.metadata.version("faker")


def _person(faker: Any) -> tuple[str, dict[str, str]]:
    """A name and one value per field, drawn in a fixed order from ``faker``."""
    name = faker.name()
    return name, {
        "nationality": faker.country(),
        "birthplace": faker.city(),
        "university": f"University of {faker.city()}",
        "birthdate": faker.date_of_birth(minimum_age=20, maximum_age=90)
        .strftime("%B %d, %Y")
        .replace(" 0", " "),
        "email": _email(name, faker),
        "occupation": faker.job(),
        "uuid": faker.hexify("^" * 32),
    }


def _email(name: str, faker: Any) -> str:
    """An address built from ``name`` with a random pattern, number and free-mail domain."""
    parts = [p for p in "".join(c if c.isalpha() or c == " " else " " for c in name).split()]
    first, last = parts[0].lower(), parts[-1].lower()
    pattern = faker.random_element(_EMAIL_PATTERNS)
    local = pattern.format(f=first, l=last, f0=first[0], n=faker.random_int(1, 99))
    return f"{local}@{faker.free_email_domain()}"


def render(name: str, values: dict[str, str]) -> tuple[str, dict[str, list[int]], dict[str, int]]:
    """``(text, fields, sentences)``: the biography, each value's ``[start, end)`` and where each
    field's sentence starts."""
    text, fields, sentences = "", {}, {}
    for field in FIELDS:
        if text:
            text += " "
        sentences[field] = len(text)
        head, tail = SENTENCES[field].split("{value}")
        text += head.format(name=name)
        fields[field] = [len(text), len(text) + len(values[field])]
        text += values[field] + tail
    return text, fields, sentences


def prompts(params: dict[str, Any], text: str, field: str) -> dict[str, str]:
    """Prefix name → the prompt a probe of ``field`` conditions on (see the module docstring)."""
    start = params["fields"][field][0]
    sentence = params["sentences"][field]
    intro_end = params["fields"][FIELDS[0]][1] + len(SENTENCES[FIELDS[0]].split("{value}")[1])
    intro = text[:intro_end] + " " + text[sentence:start] if sentence else text[:start]
    return {"full": text[:start], "intro": intro, "name_only": text[sentence:start]}


def _distractors(faker: Any, name: str, field: str, value: str) -> list[str]:
    out: list[str] = []
    for _ in range(1000):
        other = _email(name, faker) if field == "email" else _person(faker)[1][field]
        if other != value and other not in out:
            out.append(other)
            if len(out) == CHOICES - 1:
                return out
    raise DataError(
        f"Faker gave fewer than {CHOICES - 1} distinct distractors for field {field!r} of "
        f"{name!r} in 1000 draws; use another locale"
    )


class BiographySource:
    """The candidate stream of one biography set: a person per candidate index."""

    def __init__(self, pset: BiographySpec, seed: int):
        self._pset, self._seed = pset, seed
        self._faker_version = faker_version()

    def draw(self, start: int, stop: int) -> list[Draft]:
        """Candidates ``start .. stop-1`` (the stream does not end)."""
        return [self._draft(j) for j in range(start, stop)]

    def _draft(self, j: int) -> Draft:
        from faker import Faker

        faker = Faker(self._pset.locale)
        faker.seed_instance(rng.derive_seed(self._seed, "biography", self._pset.name, j))
        name, values = _person(faker)
        text, fields, sentences = render(name, values)
        order = rng.generator(self._seed, "biography_choices", self._pset.name, j)
        choices, answers = {}, {}
        for field in FIELDS:
            options = [values[field], *_distractors(faker, name, field, values[field])]
            perm = order.permutation(CHOICES)
            choices[field] = [options[int(k)] for k in perm]
            answers[field] = int(np.flatnonzero(perm == 0)[0])
        params = {
            "candidate": j,
            "faker": self._faker_version,
            "locale": self._pset.locale,
            "name": name,
            "values": values,
            "fields": fields,
            "sentences": sentences,
            "choices": choices,
            "answers": answers,
        }
        # Variants keep the values and every mention of the name: a copy states the same facts
        # about the same person.
        names = [(s, s + len(name)) for s in sentences.values()]
        return Draft(text, 0, params, protected=(*map(tuple, fields.values()), *names))


def source(pset: BiographySpec, seed: int, corpus: CorpusInputs) -> Source:
    """The candidate stream of ``pset`` (this kind's entry in ``registry.KINDS``)."""
    return BiographySource(pset, seed)
