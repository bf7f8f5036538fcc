"""Decontamination on real text: planted natural copies are found, removed or resampled; items are
distinct; results do not depend on how the corpus is sharded."""

import json

import numpy as np
import pytest

from taggant.pipeline.perturb import canary, decontaminate, ghost, registry, testset, watermark
from taggant.pipeline.perturb.canary import CanarySpec
from taggant.pipeline.perturb.decontaminate import Signatures, find_matches, select_items
from taggant.pipeline.perturb.ghost import GhostSpec
from taggant.pipeline.perturb.items import DocRef
from taggant.pipeline.perturb.setspec import DecontaminationSpec
from taggant.pipeline.perturb.testset import TestsetSpec
from taggant.pipeline.perturb.watermark import WatermarkSpec
from taggant.sketches import hashing
from tests.corpus import pinned_docs

SEED = 77


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [d["text"] for d in pinned_docs("copyright")[:300]]


def shards_of(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def local_matcher(shards: list[list[str]]):
    return lambda signatures: [find_matches(signatures, shard) for shard in shards]


def planted(texts: list[str], row: int, item: str) -> list[str]:
    """``texts`` with ``item`` pasted into the middle of document ``row``, as a natural copy."""
    out = list(texts)
    doc = out[row]
    cut = doc.index("\n", len(doc) // 2)
    out[row] = doc[:cut] + "\nAs noted elsewhere, " + item + " and so on.\n" + doc[cut:]
    return out


def canary_set(on_collision: str) -> CanarySpec:
    return CanarySpec(
        name="c",
        count=12,
        dup_levels=[1, 4],
        num_references=10,
        decontamination=DecontaminationSpec(on_collision=on_collision),
    )


def test_a_planted_copy_is_found_and_its_document_removed(texts):
    pset = canary_set("remove_docs")
    victim = canary.CanarySource(pset, SEED).draw(5, 6)[0].text
    corpus = planted(texts, 123, victim)
    selection = select_items(
        [pset], [canary.CanarySource(pset, SEED)], local_matcher(shards_of(corpus, 50))
    )
    assert victim in [c.draft.text for c in selection.items[0]]
    assert selection.removals() == {DocRef(2, 23): decontaminate.REASON_OVERLAP}
    assert selection.stats()["c"]["docs_containing_items"] == 1


def test_a_planted_copy_makes_a_resampling_set_draw_another_item(texts):
    pset = canary_set("resample")
    first = canary.CanarySource(pset, SEED).draw(0, pset.count + 1)
    corpus = planted(texts, 7, first[5].text)
    selection = select_items(
        [pset], [canary.CanarySource(pset, SEED)], local_matcher(shards_of(corpus, 50))
    )
    chosen = [c.draft.text for c in selection.items[0]]
    assert first[5].text not in chosen
    assert chosen == [d.text for i, d in enumerate(first) if i != 5]
    assert selection.removals() == {}
    assert selection.stats()["c"]["found_in_corpus"] == 1


def test_a_partial_copy_of_a_long_item_is_found_by_its_ngrams(texts):
    pset = GhostSpec(name="g", count=8, dup_levels=[1], num_words=20)
    item = ghost.GhostSource(pset, SEED).draw(2, 3)[0].text
    fragment = " ".join(item.split()[6:15])  # nine consecutive words out of twenty
    corpus = planted(texts, 40, fragment)
    sig = Signatures.build([2], [item], [8], [None])
    assert find_matches(sig, corpus).tolist() == [[40, 2]]
    assert find_matches(Signatures.build([2], [item], [10], [None]), corpus).tolist() == []


def test_a_short_item_matches_only_where_it_occurs_whole(texts):
    sig = Signatures.build([0], ["Free Software Foundation"], [8], [None])
    hits = find_matches(sig, texts)
    phrase = [b"free", b"software", b"foundation"]
    words = [hashing.words(t) for t in texts]
    expected = [
        i for i, w in enumerate(words) if any(w[k : k + 3] == phrase for k in range(len(w)))
    ]
    assert sorted(set(hits[:, 0].tolist())) == expected
    assert len(expected) > 10


def test_matches_do_not_depend_on_sharding(texts):
    pset = canary_set("remove_docs")
    items = [d.text for d in canary.CanarySource(pset, SEED).draw(0, 12)]
    corpus = planted(planted(texts, 3, items[0]), 250, items[7])
    sig = Signatures.build(list(range(12)), items, [8] * 12, [None] * 12)
    whole = find_matches(sig, corpus)
    pieces = []
    for start, shard in zip(range(0, 300, 37), shards_of(corpus, 37)):
        found = find_matches(sig, shard)
        pieces.append(found + np.array([start, 0]))
    assert whole.tolist() == [[3, 0], [250, 7]]
    assert np.concatenate(pieces).tolist() == whole.tolist()


def test_a_watermark_is_matched_on_its_substitutions_only(texts):
    pset = WatermarkSpec(name="w", count=3, dup_levels=[1], max_doc_words=400)
    unigrams = watermark.Unigrams(watermark.count_words(texts))
    source = next(t for t in texts if watermark.is_eligible(t, pset))
    done = watermark.rewrite(source, pset.words_per_doc, unigrams)
    sig = Signatures.build([0], [done.text], [8], [source])
    # The source itself and its natural near-copies carry none of the substitutions.
    assert find_matches(sig, texts).tolist() == []
    assert find_matches(sig, planted(texts, 9, done.text)).tolist() == [[9, 0]]


def test_duplicate_candidates_are_skipped_across_sets(tmp_path):
    questions = [
        {"question": f"Is {n} even?", "choices": ["yes", "no"], "answer": n % 2} for n in range(30)
    ]
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in questions + questions[:10]))
    a = TestsetSpec(name="a", count=15, dup_levels=[1], path=str(path))
    b = TestsetSpec(name="b", count=15, dup_levels=[1], path=str(path))
    sources = [registry.make_source(p, SEED, registry.CorpusInputs()) for p in (a, b)]
    selection = select_items([a, b], sources, lambda sig: [])
    texts_a = [c.draft.text for c in selection.items[0]]
    texts_b = [c.draft.text for c in selection.items[1]]
    assert len(set(texts_a + texts_b)) == 30
    stats = selection.stats()
    for name in "ab":
        assert stats[name]["candidates"] - stats[name]["duplicates"] == 15


def test_a_benchmark_too_small_for_its_set_is_a_data_error(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text(
        "".join(
            json.dumps({"question": f"Q{n}?", "choices": ["a", "b"], "answer": 0}) + "\n"
            for n in range(5)
        )
    )
    pset = TestsetSpec(name="t", count=8, dup_levels=[1], path=str(path))
    with pytest.raises(testset.DataError, match="lower its `count`"):
        select_items([pset], [testset.TestsetSource(pset, SEED)], lambda sig: [])
