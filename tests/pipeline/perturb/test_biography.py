"""``kind: biography``: seeded synthetic people with Hubble's seven PII fields, their spans, the
10-way choices of each field and the three probe prefixes."""

from __future__ import annotations

import re

from taggant.pipeline.perturb import biography, registry
from taggant.pipeline.perturb.biography import FIELDS, BiographySpec
from taggant.pipeline.perturb.setspec import VariantsSpec

SEED = 5


def drafts(n: int, **options):
    pset = BiographySpec(name="bio", count=max(n, 2), dup_levels=[1], **options)
    return registry.make_source(pset, SEED, None).draw(0, n)


def test_each_field_span_holds_its_value_and_the_text_states_it_about_the_person():
    for d in drafts(30):
        p = d.params
        assert set(p["fields"]) == set(FIELDS) and d.prefix_chars == 0
        for field in FIELDS:
            start, end = p["fields"][field]
            assert d.text[start:end] == p["values"][field]
            assert d.text.startswith(p["name"], p["sentences"][field])
        assert re.fullmatch(r"[0-9a-f]{32}", p["values"]["uuid"])
        assert "@" in p["values"]["email"]


def test_people_depend_on_seed_set_and_index_only():
    pset = BiographySpec(name="bio", count=8, dup_levels=[1])
    whole = biography.BiographySource(pset, SEED).draw(0, 8)
    pieces = [
        d for a in range(0, 8, 3) for d in biography.BiographySource(pset, SEED).draw(a, a + 3)
    ]
    assert [d.text for d in whole] == [d.text for d in pieces[:8]]
    other_seed = biography.BiographySource(pset, SEED + 1).draw(0, 8)
    other_set = biography.BiographySource(pset.model_copy(update={"name": "b2"}), SEED).draw(0, 8)
    assert not {d.text for d in whole} & {d.text for d in other_seed + other_set}
    assert len({d.params["name"] for d in whole}) == 8


def test_each_field_has_ten_distinct_choices_with_the_value_at_its_answer():
    positions = {f: set() for f in FIELDS}
    for d in drafts(40):
        p = d.params
        for field in FIELDS:
            choices = p["choices"][field]
            assert len(choices) == len(set(choices)) == biography.CHOICES
            assert choices[p["answers"][field]] == p["values"][field]
            positions[field].add(p["answers"][field])
        # Email distractors come from the person's own name: the name does not give them away.
        last = p["name"].split()[-1].lower()
        assert sum(last in c for c in p["choices"]["email"]) >= 5
    assert all(len(s) >= 5 for s in positions.values()), positions


def test_prefixes_end_where_the_value_starts_and_nest():
    for d in drafts(10):
        for field in FIELDS:
            start = d.params["fields"][field][0]
            prompts = biography.prompts(d.params, d.text, field)
            assert prompts["full"] == d.text[:start]
            assert prompts["full"].endswith(prompts["intro"][-len(prompts["name_only"]) :])
            assert prompts["intro"].endswith(prompts["name_only"])
            assert prompts["name_only"].startswith(d.params["name"])
            assert len(prompts["name_only"]) <= len(prompts["intro"]) <= len(prompts["full"])
        intro = biography.prompts(d.params, d.text, "uuid")["intro"]
        assert intro.startswith(d.text[: d.params["fields"]["nationality"][1] + 1])


def test_variants_keep_every_value_and_every_mention_of_the_name():
    for d in drafts(10, variants=VariantsSpec(count=3, rate=1.0)):
        assert len(d.variants) == 3
        for v in d.variants:
            assert v.count(d.params["name"]) == len(FIELDS)
            for field in FIELDS:
                assert d.params["values"][field] in v
