"""Probes that measure views of an item: test-set questions in formats never inserted (values by
hand on the cycle model of ``test_run``), and on SmolLM2-135M biography fields by choice and
generation under three prefixes, and the generation probe against ``exact_match``."""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import re

import pyarrow as pa
import pytest

from taggant.pipeline.manifest import ITEMS_SCHEMA
from taggant.pipeline.perturb import biography, registry
from taggant.pipeline.perturb.testset import TestsetSpec
from taggant.pipeline.probe import hf, probe_items
from tests.pipeline.probe.test_run import LN2, item, run
from tests.smollm2 import gguf_path

FORMATS = {"tight": "{question}{answer}", "spaced": "{question} {answer}"}


def _question(formats: dict[str, str]) -> dict:
    params = {
        "template": "{question} {answer}",
        "question": "abc",
        "choices": ["d", "a", "b"],
        "answer": 0,
        "subject": None,
        "eval_templates": formats,
    }
    return item("t/0", "abc d", prefix_chars=4, kind="testset", params=params)


def test_each_eval_format_is_scored_as_its_own_question():
    table = run([_question(FORMATS)], ["testset_formats"])
    by_format: dict[str, dict[str, float]] = {}
    for r in table.to_pylist():
        by_format.setdefault(r["eval_format"], {})[r["metric"]] = r["value"]
    # "abc" then "d" follows the cycle (ln 2); "a" and "b" do not (3 ln 2 each).
    # "abc " then "a" follows the cycle, so the true answer "d" loses.
    assert by_format == {
        "tight": pytest.approx(
            {"choice_correct": 1, "choice_correct_norm": 1, "answer_logprob": -LN2, "choices": 3},
            abs=1e-5,
        ),
        "spaced": pytest.approx(
            {
                "choice_correct": 0,
                "choice_correct_norm": 0,
                "answer_logprob": -3 * LN2,
                "choices": 3,
            },
            abs=1e-5,
        ),
    }
    assert run([_question({})], ["testset_formats"]).num_rows == 0


def test_eval_templates_are_checked_like_the_template():
    with pytest.raises(ValueError, match="answer slot"):
        TestsetSpec(name="t", count=4, dup_levels=[1], eval_templates={"bad": "{question}"})
    with pytest.raises(ValueError, match="lower-case"):
        TestsetSpec(name="t", count=4, dup_levels=[1], eval_templates={"A.b": "{question}{answer}"})


@pytest.fixture(scope="module")
def smollm2() -> hf.HFModel:
    return hf.load(gguf_path())


def _items(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "version": f"{r['kind']}.v1",
                "token_ids": [],
                "dup_level": 1,
                "phase_start": 0.0,
                "phase_end": 1.0,
                **r,
            }
            for r in rows
        ],
        schema=ITEMS_SCHEMA,
    )


def _probe(model: hf.HFModel, rows: list[dict], names: list[str], **shape) -> list[dict]:
    return probe_items(
        model.logits,
        _items(rows),
        names,
        shape.get("prefix_tokens", 8),
        shape.get("suffix_tokens", 8),
        16,
        model.tokenize,
        tokens_seen=0,
        precision="float32",
        bos_id=model.bos_id,
        lm=model.lm,
        generate=model.generate,
    ).to_pylist()


@pytest.mark.slow
def test_biography_rows_one_per_item_field_prefix_and_metric(smollm2):
    pset = biography.BiographySpec(name="bio", count=2, dup_levels=[1])
    drafts = registry.make_source(pset, 3, None).draw(0, 1)
    rows = [
        {
            "item_id": f"bio/{i}",
            "set": "bio",
            "kind": "biography",
            "text": d.text,
            "prefix_chars": 0,
            "params": json.dumps(d.params),
        }
        for i, d in enumerate(drafts)
    ]
    out = _probe(smollm2, rows, ["biography_choice", "biography_generation"])
    keys = [(r["item_id"], r["probe"], r["metric"]) for r in out]
    assert len(keys) == len(set(keys))
    assert {r["eval_format"] for r in out} == {"canonical"}  # questions about the item's text
    per_view = {"biography_choice": 4, "biography_generation": 7}
    assert len(out) == len(biography.FIELDS) * len(biography.PREFIXES) * sum(per_view.values())
    pattern = re.compile(
        r"(\w+)\.(full|intro|name_only)\.(choice_\w+|answer_logprob|choices|gen_\w+)"
    )
    for r in out:
        field = pattern.fullmatch(r["metric"]).group(1)
        assert field in biography.FIELDS
    by = {(r["item_id"], r["metric"]): r["value"] for r in out}
    for i in range(1):
        for field in biography.FIELDS:
            for prefix in biography.PREFIXES:
                name = f"bio/{i}", f"{field}.{prefix}"
                assert by[name[0], f"{name[1]}.choices"] == biography.CHOICES
                assert 0 <= by[name[0], f"{name[1]}.gen_rouge_l_f1"] <= 1
                if by[name[0], f"{name[1]}.gen_exact"] == 1:
                    assert by[name[0], f"{name[1]}.gen_token_f1"] == 1


def _zen_lines() -> list[str]:
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
        import this
    return [line for line in codecs.decode(this.s, "rot13").splitlines() if len(line) > 20]


@pytest.mark.slow
def test_an_exact_suffix_is_generated_exactly(smollm2):
    # 20 items: 10 counts (which SmolLM2 continues exactly) and 10 Zen lines (which it does not
    # all), split after 4 tokens.
    counts = [", ".join(str(n) for n in range(start, start + 14)) for start in range(1, 11)]
    texts = counts + [t for t in _zen_lines() if len(t) > 30][:10]
    assert len(texts) == 20
    rows = [
        {
            "item_id": f"z/{i:02d}",
            "set": "z",
            "kind": "text",
            "text": t,
            "prefix_chars": 0,
            "params": "{}",
        }
        for i, t in enumerate(texts)
    ]
    out = _probe(smollm2, rows, ["exact_match", "generation"], prefix_tokens=4, suffix_tokens=6)
    by = {(r["item_id"], r["probe"], r["metric"]): r["value"] for r in out}
    exact = [i for i, _ in enumerate(texts) if by[f"z/{i:02d}", "exact_match", "exact"] == 1]
    assert len(exact) >= 3, "SmolLM2 should reproduce some Zen lines"
    for i in range(len(texts)):
        if i in exact:
            assert by[f"z/{i:02d}", "generation", "rouge_l_f1"] == 1
            assert by[f"z/{i:02d}", "generation", "edit_similarity"] == 1
        assert 0 <= by[f"z/{i:02d}", "generation", "token_recall"] <= 1
    print("exact suffixes:", len(exact), "of", len(texts))
