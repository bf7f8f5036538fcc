"""The generators on their own: canaries, ghost sentences, test sets and watermarks."""

import json
import math
import re

import pytest

from taggant.pipeline.errors import DataError
from taggant.pipeline.perturb import canary, ghost, testset, watermark
from taggant.pipeline.perturb.canary import CanarySpec
from taggant.pipeline.perturb.ghost import GhostSpec
from taggant.pipeline.perturb.testset import TestsetSpec
from taggant.pipeline.perturb.watermark import WatermarkSpec
from tests.corpus import pinned_docs

SEED = 1234


def canaries(**options) -> CanarySpec:
    return CanarySpec(name="c", count=20, dup_levels=[1, 4], num_references=50, **options)


def test_canary_candidates_depend_only_on_seed_set_and_index():
    source = canary.CanarySource(canaries(), SEED)
    whole = source.draw(0, 10)
    assert [d.text for d in whole[4:7]] == [
        d.text for d in canary.CanarySource(canaries(), SEED).draw(4, 7)
    ]
    assert len({d.text for d in whole}) == 10
    assert whole[0].text != canary.CanarySource(canaries(), SEED + 1).draw(0, 1)[0].text


def test_canary_records_its_randomness_space_and_where_the_secret_starts():
    draft = canary.CanarySource(canaries(), SEED).draw(0, 1)[0]
    p = draft.params
    assert re.fullmatch(
        r"[A-Z][a-z]+ [A-Z][a-z]+'s passphrase is ([a-z-]+ ){5}[a-z-]+\.", draft.text
    )
    assert draft.text[draft.prefix_chars :].removesuffix(".") == p["secret"]
    assert draft.text.startswith(p["name"] + "'s passphrase is ")
    assert p["symbols"] == p["wordlist_size"] == 7776
    assert p["log2_space"] == pytest.approx(6 * math.log2(7776))
    assert p["secret"].split() == [ghost.wordlist()[i] for i in p["secret_symbols"]]


@pytest.mark.parametrize(
    "options, symbols, pattern",
    [
        (
            {
                "secret_alphabet": "digits",
                "secret_length": 9,
                "template": "The random number is {secret}",
            },
            10,
            r"\d{9}",
        ),
        (
            {"secret_alphabet": "token_ids", "secret_length": 4, "token_id_range": (300, 400)},
            100,
            r"(3\d\d ){3}3\d\d",
        ),
    ],
)
def test_canary_digit_and_token_id_secrets(options, symbols, pattern):
    draft = canary.CanarySource(canaries(**options), SEED).draw(3, 4)[0]
    secret = draft.params["secret"]
    assert re.fullmatch(pattern, secret)
    assert draft.params["symbols"] == symbols
    assert draft.params["log2_space"] == pytest.approx(
        len(draft.params["secret_symbols"]) * math.log2(symbols)
    )
    if options["secret_alphabet"] == "token_ids":
        assert draft.params["secret_token_ids"] == [int(x) for x in secret.split()]


def test_canary_references_come_from_the_same_space_and_are_never_items():
    pset = canaries(secret_alphabet="digits", secret_length=3)
    drafts = canary.CanarySource(pset, SEED).draw(0, pset.count)
    items = {d.params["secret"] for d in drafts}
    refs = canary.reference_secrets(pset, SEED, items)
    assert len(refs) == len(set(refs)) == pset.num_references
    assert not items & set(refs)
    assert all(re.fullmatch(r"\d{3}", r) for r in refs)
    assert refs == canary.reference_secrets(pset, SEED, items)
    d = drafts[0]
    swapped = canary.reference_text(d.text, d.prefix_chars, d.params["secret"], refs[0])
    assert swapped == d.text[: d.prefix_chars] + refs[0] + d.text[d.prefix_chars + 3 :]


def test_a_secret_space_too_small_is_refused_at_validation():
    with pytest.raises(ValueError, match="raise secret_length"):
        CanarySpec(name="c", count=20, dup_levels=[1], secret_alphabet="digits", secret_length=2)


def test_ghost_passphrases_record_the_wordlist_and_word_positions():
    pset = GhostSpec(
        name="g", count=10, dup_levels=[4], num_words=8, carrier="My code words are {passphrase}."
    )
    draft = ghost.GhostSource(pset, SEED).draw(0, 1)[0]
    p = draft.params
    assert p["wordlist"] == "eff_large" and p["wordlist_size"] == 7776 == len(ghost.wordlist())
    assert len(p["wordlist_sha256"]) == 64
    assert p["log2_space"] == pytest.approx(8 * math.log2(7776))
    assert draft.prefix_chars == len("My code words are ")
    assert [draft.text[a:b] for a, b in p["word_spans"]] == p["words"]
    assert draft.text == "My code words are " + " ".join(p["words"]) + "."
    assert set(p["words"]) <= set(ghost.wordlist())


def test_shipped_benchmark_renders_with_choices_and_answer_letter():
    pset = TestsetSpec(
        name="t",
        count=10,
        dup_levels=[1],
        template="{subject}\n{question}\n{choices}\nAnswer: {answer_letter}",
    )
    bench = testset.load_benchmark(None)
    assert len(bench.questions) == 279
    draft = testset.TestsetSource(pset, SEED).draw(0, 1)[0]
    q = bench.questions[draft.params["record"]]
    letter = "ABCD"[q.answer]
    assert draft.text.endswith(f"\nD. {q.choices[3]}\nAnswer: {letter}")
    assert draft.text[draft.prefix_chars :] == letter
    assert draft.params["choices"] == list(q.choices)


def test_testset_stream_is_a_seeded_permutation_that_ends():
    pset = TestsetSpec(name="t", count=10, dup_levels=[1])
    records = [d.params["record"] for d in testset.TestsetSource(pset, SEED).draw(0, 500)]
    assert sorted(records) == list(range(279))
    assert records != sorted(records)


@pytest.mark.parametrize(
    "line, complaint",
    [
        ('{"question": "Q?", "choices": ["a"], "answer": 0}', "at least two"),
        ('{"question": "Q?", "choices": ["a", "b"], "answer": 2}', "not an index"),
        ('{"question": "Q?", "choices": ["a", "b"], "answer": "a"}', "not an index"),
        ('{"choices": ["a", "b"], "answer": 0}', "`question`"),
        ("not json", "not valid JSON"),
    ],
)
def test_a_bad_benchmark_record_names_its_line(tmp_path, line, complaint):
    path = tmp_path / "bench.jsonl"
    good = json.dumps({"question": "Fine?", "choices": ["yes", "no"], "answer": 0})
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError, match=complaint) as info:
        testset.load_benchmark(str(path))
    assert f"{path}:2" in str(info.value)


@pytest.fixture(scope="module")
def debian():
    docs = pinned_docs("copyright")
    return docs, watermark.Unigrams(watermark.count_words(d["text"] for d in docs))


def test_watermark_replaces_every_occurrence_and_keeps_the_layout(debian):
    docs, unigrams = debian
    pset = WatermarkSpec(name="w", count=10, dup_levels=[1], words_per_doc=5, max_doc_words=400)
    # A multi-line document in which some chosen word occurs several times, in several cases.
    for doc in docs:
        if not watermark.is_eligible(doc["text"], pset):
            continue
        done = watermark.rewrite(doc["text"], pset.words_per_doc, unigrams)
        if done and max(done.occurrences.values()) > 1 and doc["text"].count("\n") > 5:
            break
    original, marked = doc["text"], done.text
    assert len(done.mapping) == 5
    # Everything between words is identical: whitespace, punctuation, line breaks.
    assert watermark.WORD.split(original) == watermark.WORD.split(marked)
    assert [len(line) - len(line.lstrip()) for line in original.splitlines()] == [
        len(line) - len(line.lstrip()) for line in marked.splitlines()
    ]
    before = [m.group() for m in watermark.WORD.finditer(original)]
    after = [m.group() for m in watermark.WORD.finditer(marked)]
    assert len(before) == len(after)
    for old, new in zip(before, after):
        synonym = done.mapping.get(old.lower())
        if synonym is None:
            assert new == old
        else:
            assert new.lower() == synonym and (new[0].isupper() == old[0].isupper())
    assert (
        sum(done.occurrences.values())
        == len(done.spans)
        == sum(o != n for o, n in zip(before, after))
    )
    assert [marked[a:b].lower() for a, b in done.spans] == [
        done.mapping[w.lower()] for w in before if w.lower() in done.mapping
    ]
    for word, synonym in done.mapping.items():
        assert unigrams.surprisal_bits(synonym) > unigrams.surprisal_bits(word)
        assert not re.search(rf"(?<![\w'’-]){word}(?![\w'’-])", marked, flags=re.IGNORECASE)


def test_watermark_mapping_is_one_function_of_the_word(debian):
    docs, unigrams = debian
    seen: dict[str, str] = {}
    for doc in docs[:200]:
        done = watermark.rewrite(doc["text"], 3, unigrams)
        for word, synonym in done.mapping.items() if done else ():
            assert seen.setdefault(word, synonym) == synonym
    assert len(seen) > 20
