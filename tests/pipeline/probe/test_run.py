"""probe_items end to end on a hand-built model, with every probe's value computed by hand.

The model is a bigram "cycle" language model over the 5-symbol character vocabulary ``abcd ``:
after token i it gives probability 4/8 to token (i + 1) mod 5 and 1/8 to each other token. So
``abcd abcd …`` is its greedy continuation, a token costs ln 2 when it follows the cycle and
3 ln 2 when it does not, and every Min-K%++ z-score is +1 or −1 (μ = −2 ln 2, σ = ln 2).
"""

from __future__ import annotations

import itertools
import json
import logging
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from scipy import stats

from taggant.pipeline import multiplicity, store
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.manifest import ITEMS_SCHEMA
from taggant.pipeline.perturb import testset
from taggant.pipeline.probe import exposure, probe_items

LN2 = math.log(2)
VOCAB = "abcd "
SPACE = VOCAB.index(" ")


def tokenize(text: str) -> list[int]:
    return [VOCAB.index(ch) for ch in text]


def cycle_model(vocab: int):
    logits = torch.zeros(vocab, vocab)
    logits[torch.arange(vocab), (torch.arange(vocab) + 1) % vocab] = math.log(4)
    return lambda ids: logits[torch.from_numpy(ids)]


MODEL = cycle_model(len(VOCAB))


def item(
    item_id: str,
    text: str,
    prefix_chars: int = 0,
    kind: str = "canary",
    dup_level: int = 1,
    params: dict | None = None,
    token_ids: list[int] | None = None,
) -> dict:
    return {
        "item_id": item_id,
        "set": item_id.split("/")[0],
        "kind": kind,
        "version": f"{kind}.v1",
        "text": text,
        "prefix_chars": prefix_chars,
        "token_ids": tokenize(text) if token_ids is None else token_ids,
        "dup_level": dup_level,
        "phase_start": 0.0,
        "phase_end": 1.0,
        "params": json.dumps(params or {}),
    }


def run(
    rows: list[dict],
    names: list[str],
    prefix_tokens: int = 4,
    suffix_tokens: int = 8,
    batch_items: int = 4,
    **kwargs,
) -> pa.Table:
    kwargs.setdefault("tokenize", tokenize)
    items = pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA)
    return probe_items(
        MODEL,
        items,
        names,
        prefix_tokens,
        suffix_tokens,
        batch_items,
        tokens_seen=1234,
        precision="float32",
        **kwargs,
    )


def values(table: pa.Table, item_id: str, probe: str) -> dict[str, float]:
    return {
        r["metric"]: r["value"]
        for r in table.to_pylist()
        if r["item_id"] == item_id and r["probe"] == probe
    }


# Prompt "abcd ", target "abca": a, b, c follow the cycle (ln 2 each), the last a does not.
PROMPTED = item("c/0", "abcd abca", prefix_chars=5, params={"secret": "abca", "log2_space": 8.0})


def test_loss_zlib_and_min_k_scores_cover_the_target():
    table = run([PROMPTED], ["loss", "zlib_ratio", "min_k", "min_k_plus_plus"])
    assert values(table, "c/0", "loss") == pytest.approx(
        {"nll_sum": 6 * LN2, "nll_mean": 1.5 * LN2, "perplexity": 2**1.5, "tokens": 4}
    )
    zlib_bytes = values(table, "c/0", "zlib_ratio")["zlib_bytes"]
    assert values(table, "c/0", "zlib_ratio")["ratio"] == pytest.approx(1.5 * LN2 / zlib_bytes)
    # The lowest 1, 1 and 2 of the log-probs (−ln 2, −ln 2, −ln 2, −3 ln 2) and of z (1, 1, 1, −1).
    assert values(table, "c/0", "min_k") == pytest.approx(
        {"k10": -3 * LN2, "k20": -3 * LN2, "k50": -2 * LN2}
    )
    assert values(table, "c/0", "min_k_plus_plus") == pytest.approx(
        {"k10": -1.0, "k20": -1.0, "k50": 0.0}, abs=1e-5
    )


def test_greedy_extraction_reads_the_suffix_after_the_prompt():
    names = ["exact_match", "longest_prefix", "suffix_logprob"]
    whole = run([PROMPTED], names, suffix_tokens=8)
    assert values(whole, "c/0", "exact_match") == pytest.approx(
        {"exact": 0, "token_accuracy": 0.75, "decisive_margin": math.log(4), "tokens": 4}, abs=1e-6
    )
    assert values(whole, "c/0", "longest_prefix") == {"tokens": 3, "fraction": 0.75}
    # Top-40 sampling over 5 tokens is plain sampling: both are log p_z.
    assert values(whole, "c/0", "suffix_logprob") == pytest.approx(
        {"logprob": -6 * LN2, "logprob_top40": -6 * LN2, "tokens": 4}, abs=1e-5
    )
    three = run([PROMPTED], names, suffix_tokens=3)
    assert values(three, "c/0", "exact_match")["exact"] == 1
    assert values(three, "c/0", "suffix_logprob")["logprob"] == pytest.approx(-3 * LN2, abs=1e-5)


def test_extraction_strength_and_probabilistic_extraction_read_the_suffix():
    # Target "acd ": a follows the cycle, c does not (3 ln 2), d and space do: greedy decoding
    # completes it from k = 2, and p_z = 2^-6 per sample.
    broken = item("c/1", "abcd acd ", prefix_chars=5)
    table = run([PROMPTED, broken], ["extraction_strength", "probabilistic_extraction"])
    assert values(table, "c/1", "extraction_strength") == {"strength": 0.5, "tokens": 4}
    assert values(table, "c/0", "extraction_strength")["strength"] == 0.0  # its last token fails
    p_z = 2.0**-6
    expected = {
        f"{sampler}n{n}": 1 - (1 - p_z) ** n
        for sampler in ("", "top40_")
        for n in (1, 10, 100, 1000)
    }
    assert values(table, "c/1", "probabilistic_extraction") == pytest.approx(
        {**expected, "tokens": 4}, rel=1e-5
    )
    three = run([PROMPTED], ["extraction_strength", "probabilistic_extraction"], suffix_tokens=3)
    assert values(three, "c/0", "extraction_strength")["strength"] == 1.0
    assert values(three, "c/0", "probabilistic_extraction")["n1"] == pytest.approx(1 / 8)


def test_items_without_a_prompt_split_at_prefix_tokens():
    doc = item("w/0", "abcd abcd", kind="watermark")
    table = run([doc], ["loss", "exact_match"], prefix_tokens=4, suffix_tokens=3)
    assert values(table, "w/0", "loss")["tokens"] == 8  # token 0 has no context
    assert values(table, "w/0", "exact_match")["tokens"] == 3
    with_bos = run([doc], ["loss"], bos_id=SPACE)
    assert values(with_bos, "w/0", "loss") == pytest.approx(
        {"nll_sum": 9 * LN2, "nll_mean": LN2, "perplexity": 2, "tokens": 9}
    )
    with pytest.raises(DataError, match="lower probes.prefix_tokens below 9"):
        run([doc], ["exact_match"], prefix_tokens=9)
    assert run([doc], ["loss"], prefix_tokens=9).num_rows == 4  # only extraction needs the split


def test_exposure_ranks_the_secret_among_its_references():
    # Target NLLs in units of ln 2: the secret bcda 3+1+1+3 = 8; the references abcd 4, abca 6,
    # aaaa 10, dddd 12, cccc 12. Rank 3 of 6 candidates: log2 6 − log2 3 = 1 bit.
    canary = item("c/0", "d bcda", prefix_chars=2, params={"secret": "bcda", "log2_space": 8.0})
    refs = {"c": ["abcd", "abca", "aaaa", "dddd", "cccc"]}
    got = values(run([canary], ["exposure"], canary_references=refs), "c/0", "exposure")
    assert got["rank"] == 3 and got["references"] == 5
    assert got["exposure_rank"] == pytest.approx(1.0)
    assert got["nll"] == pytest.approx(8 * LN2, abs=1e-5)
    assert "exposure" not in got  # five references are too few to fit a skew-normal
    with pytest.raises(DataError, match="reference secrets"):
        run([canary], ["exposure"])


def test_scoring_candidates_logs_progress(caplog):
    canary = item("c/0", "d bcda", prefix_chars=2, params={"secret": "bcda", "log2_space": 8.0})
    with caplog.at_level(logging.INFO, logger="taggant.pipeline.probe.run"):
        run([canary], ["exposure"], canary_references={"c": ["abcd", "abca", "aaaa"]})
    assert "scored 4 of 4 candidate texts" in caplog.text  # the secret and its references


def test_exposure_extrapolates_from_many_references():
    # Every other 4-letter secret over abcd; a secret costs ln 2 per transition that follows the
    # cycle (space → a → b → c → d) and 3 ln 2 per other one.
    def nll(secret: str) -> float:
        return sum(
            LN2 if VOCAB.index(b) == (VOCAB.index(a) + 1) % 5 else 3 * LN2
            for a, b in zip(" " + secret, secret)
        )

    refs = ["".join(s) for s in itertools.product("abcd", repeat=4) if "".join(s) != "bcda"]
    canary = item("c/0", "d bcda", prefix_chars=2, params={"secret": "bcda", "log2_space": 8.0})
    got = values(run([canary], ["exposure"], canary_references={"c": refs}), "c/0", "exposure")
    assert got["rank"] == 1 + sum(nll(r) <= nll("bcda") for r in refs)
    assert got["exposure"] == pytest.approx(
        -math.log2(
            stats.skewnorm.cdf(
                nll("bcda"), got["skewnorm_a"], got["skewnorm_loc"], got["skewnorm_scale"]
            )
        )
    )
    assert got["exposure_at_cap"] == (got["exposure"] == 8.0)
    # 255 references: an extrapolation, but too few for an interval that holds its coverage
    assert "exposure_ci_low" not in got and got["references"] < exposure.MIN_INTERVAL_REFERENCES


def test_ghost_last_k_counts_the_words_greedy_decoding_completes():
    params = {"word_spans": [[0, 4], [5, 9], [10, 14]], "wordlist_size": 4}
    ghosts = [
        item("g/0", "dcba abcd abcd", kind="ghost", params=params),  # word 1 breaks the cycle
        item("g/1", "abcd abcd abcc", kind="ghost", params=params),  # word 3 does
        item("g/2", "abcd abcd abcd", kind="ghost", params=params),
    ]
    table = run(ghosts, ["ghost_last_k"], bos_id=SPACE)
    assert values(table, "g/0", "ghost_last_k") == {"last_words": 2, "bits": 4.0, "words": 3}
    assert values(table, "g/1", "ghost_last_k")["last_words"] == 0
    assert values(table, "g/2", "ghost_last_k")["last_words"] == 3


def test_watermark_compares_each_member_level_with_the_controls():
    texts = {
        4: ["abcd abcd", "bcd abcd a", "cd abcd ab"],
        0: ["aaaa", "dcba dcba", "abcd abca", "ccdd"],
        16: ["abcd"],
    }
    rows = [
        item(f"wm/{level}{i}", text, kind="watermark", dup_level=level)
        for level, group in texts.items()
        for i, text in enumerate(group)
    ]
    table = run(rows, ["watermark"], bos_id=SPACE)
    neg_nll = {
        level: [values(table, f"wm/{level}{i}", "watermark")["neg_nll"] for i in range(len(group))]
        for level, group in texts.items()
    }
    set_rows = [r for r in table.to_pylist() if r["item_id"] == "wm"]
    by_level = {
        level: {r["metric"]: r["value"] for r in set_rows if r["dup_level"] == level}
        for level in (4, 16)
    }
    assert {r["dup_level"] for r in set_rows} == {4, 16}
    got = by_level[4]
    expected = stats.permutation_test(
        (neg_nll[4], neg_nll[0]),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        alternative="greater",
        n_resamples=math.inf,
        vectorized=True,
    )
    assert got["neg_nll_p"] == pytest.approx(expected.pvalue)
    assert got["neg_nll_diff"] == pytest.approx(np.mean(neg_nll[4]) - np.mean(neg_nll[0]))
    assert got["members"] == 3 and got["controls"] == 4 and got["subsets"] == math.comb(7, 3)
    assert "neg_nll_t" not in got and "min_k_plus_plus_k20_p" in got
    # Holm over the set's family at this checkpoint: both levels × both scores.
    family = [(m, s) for m in by_level.values() for s in ("neg_nll", "min_k_plus_plus_k20")]
    adjusted = multiplicity.holm(np.array([m[f"{s}_p"] for m, s in family]))
    assert [m[f"{s}_p_holm"] for m, s in family] == pytest.approx(list(adjusted))
    assert by_level[16]["subsets"] == 5  # one member among five: p is at least 1/5


def _question(answer: int) -> dict:
    template = "{question} {answer}"
    q = testset.Question("abcd", ("abcd", "aaaa", "dcba"), answer, None)
    text, prefix_chars = testset.render(template, q)
    params = {
        "question": q.question,
        "choices": list(q.choices),
        "answer": answer,
        "subject": None,
        "template": template,
    }
    return item(f"t/{answer}", text, prefix_chars, kind="testset", params=params)


def test_testset_accuracy_picks_the_most_likely_choice():
    table = run([_question(0), _question(1)], ["testset_accuracy"])
    assert values(table, "t/0", "testset_accuracy") == pytest.approx(
        {"correct": 1, "correct_norm": 1, "answer_logprob": -4 * LN2, "choices": 3}, abs=1e-5
    )
    assert values(table, "t/1", "testset_accuracy")["correct"] == 0
    params = {**json.loads(_question(0)["params"]), "answer": 2}
    with pytest.raises(DataError, match="re-render"):
        run([{**_question(0), "params": json.dumps(params)}], ["testset_accuracy"])


GHOST = item(
    "g/0", "dcba abcd", kind="ghost", params={"word_spans": [[0, 4], [5, 9]], "wordlist_size": 4}
)
ALL = [
    PROMPTED,
    item("w/0", "abcd abcd", kind="watermark"),
    GHOST,
    item("c/1", "d bcda", prefix_chars=2, params={"secret": "bcda", "log2_space": 8.0}),
    _question(0),
    _question(2),
]


def test_rows_do_not_depend_on_the_batch_size(tmp_path):
    names = [
        "loss",
        "min_k_plus_plus",
        "exact_match",
        "exposure",
        "ghost_last_k",
        "testset_accuracy",
    ]
    refs = {"c": ["abcd", "abca", "aaaa"]}
    one = run(ALL, names, batch_items=1, canary_references=refs, bos_id=SPACE)
    seven = run(ALL, names, batch_items=7, canary_references=refs, bos_id=SPACE)
    assert one.schema == store.PROBE_SCHEMA
    assert set(one["tokens_seen"].to_pylist()) == {1234}
    assert one["item_id"].to_pylist() == sorted(one["item_id"].to_pylist())
    np.testing.assert_allclose(one["value"].to_numpy(), seven["value"].to_numpy(), atol=1e-6)
    assert one.drop_columns("value").equals(seven.drop_columns("value"))
    # The rows go into the store as they are, one file per probe.
    writer = store.StoreWriter(str(tmp_path), "exp")
    for name in names:
        writer.write_probe_rows("run", 10, name, 0, one.filter(pc.equal(one["probe"], name)))
    writer.commit_checkpoint("run", 10, 1234, names, one["probe_config"][0].as_py(), one.num_rows)
    assert store.read_probes(str(tmp_path)).num_rows == one.num_rows


def test_a_merging_tokenizer_puts_the_straddling_token_in_the_target():
    # Greedy longest match over a, b, c, d, space and " a" … " d": "ab cd" is a, b, " c", d, and
    # the prompt "ab " alone is a, b, " ": the target starts at " c", as greedy generation must
    # produce it. Under the 9-token cycle model " c" after b and d after " c" each have 1/12.
    vocab = ["a", "b", "c", "d", " ", " a", " b", " c", " d"]

    def merging(text: str) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            piece = text[i : i + 2] if text[i : i + 2] in vocab else text[i]
            ids.append(vocab.index(piece))
            i += len(piece)
        return ids

    row = item("c/0", "ab cd", prefix_chars=3, token_ids=merging("ab cd"))
    items = pa.Table.from_pylist([row], schema=ITEMS_SCHEMA)
    table = probe_items(
        cycle_model(9), items, ["loss"], 4, 8, 2, merging, tokens_seen=0, precision="float32"
    )
    assert values(table, "c/0", "loss")["tokens"] == 2
    assert values(table, "c/0", "loss")["nll_sum"] == pytest.approx(2 * math.log(12), abs=1e-5)


def test_bad_requests_are_reported_with_the_fix():
    with pytest.raises(ConfigError, match="unknown probes"):
        run([PROMPTED], ["loss", "rouge"])
    with pytest.raises(ConfigError, match="probes.suffix_tokens"):
        run([PROMPTED], ["loss"], suffix_tokens=0)
    with pytest.raises(DataError, match="pass `tokenize`"):
        run([PROMPTED], ["loss"], tokenize=None)
    with pytest.raises(DataError, match="does not reproduce its token_ids"):
        run([item("c/0", "abcd abca", prefix_chars=5, token_ids=[0, 1])], ["loss"])
    with pytest.raises(DataError, match="no token to score"):
        run([item("c/0", "abcd", prefix_chars=4)], ["loss"])
    with pytest.raises(DataError, match="pass bos_id"):
        run([GHOST], ["ghost_last_k"])
    with pytest.raises(DataError, match="params lack 'secret'"):
        run(
            [item("c/0", "abcd abca", prefix_chars=5)],
            ["exposure"],
            canary_references={"c": ["abcd"]},
        )
