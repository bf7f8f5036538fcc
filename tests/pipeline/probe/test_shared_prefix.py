"""Prefix-shared scoring on a real taggant model (megatron-core GPT, random weights, and its exact
HF Llama form): cached-prefix log-probs equal full teacher-forced passes, and exposure ranks a
secret among its references as full passes of the megatron model do."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from taggant.pipeline.manifest import ITEMS_SCHEMA
from taggant.pipeline.probe import native, probe_items, scoring
from taggant.pipeline.probe.cached import CachedLM
from taggant.pipeline.probe.shared_prefix import Recompute, score_groups
from tests.pipeline.probe.sharp_gpt import sharp_gpt

VOCAB = 300


@pytest.fixture(scope="module")
def taggant_model():
    """A 2-layer taggant GPT (grouped-query attention) with sharpened logits, so that
    references' NLLs spread and a rank is not decided by rounding; its megatron logits and its
    HF Llama form with a KV cache."""
    model, config = sharp_gpt(VOCAB, seed=3)

    def megatron(ids: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return model(torch.from_numpy(ids), None, None)[..., :VOCAB]

    return megatron, CachedLM(lambda: native.llama_of(model, config, 0), VOCAB)


def _groups(rng: np.random.Generator):
    """Groups that exercise every case: a shared BOS and prompt with continuations of several
    lengths (more than a batch), a sequence that is a prefix of another, repeats, a scored token
    inside the shared prefix, a group of one, and a group that shares nothing."""
    prompt = [0, *rng.integers(1, VOCAB, 9)]
    tails = [rng.integers(1, VOCAB, n).tolist() for n in (1, 2, 5, 5, 7, 3, 11)]
    big = [np.array(prompt + t) for t in tails] + [np.array(prompt + tails[4][:3])]
    big.append(big[2].copy())  # a repeat
    starts = [10] * len(big)
    starts[3] = 4  # scored from inside the shared prefix
    lone = [np.array([0, *rng.integers(1, VOCAB, 6)])]
    disjoint = [rng.integers(1, VOCAB, n) for n in (4, 6)]
    return [big, lone, disjoint], [starts, [1], [1, 2]]


def test_cached_prefix_logprobs_equal_full_passes(taggant_model):
    megatron, lm = taggant_model
    groups, starts = _groups(np.random.default_rng(0))
    flat = [seq for g in groups for seq in g]
    flat_starts = [s for ss in starts for s in ss]
    for full_model in (lm.logits, megatron):
        full = scoring.score(full_model, flat, flat_starts, 4, fields=scoring.LOGPROB)
        expected = iter(s.logprob for s in full)
        prefix_lm = lm if full_model is lm.logits else Recompute(megatron)
        for batch in (1, 3, 64):
            told = []
            got = score_groups(prefix_lm, groups, starts, batch, progress=told.append)
            assert told[-1] == len(flat) and told == sorted(set(told))  # rising, once each
            for group in got:
                for logprob in group:
                    np.testing.assert_allclose(logprob, next(expected), rtol=0, atol=2e-5)
            expected = iter(s.logprob for s in full)
    # The two model forms agree too (the exact Llama mapping), to float rounding.
    hf_full = scoring.score(lm.logits, flat, flat_starts, 4, fields=scoring.LOGPROB)
    mg_full = scoring.score(megatron, flat, flat_starts, 4, fields=scoring.LOGPROB)
    for a, b in zip(hf_full, mg_full):
        np.testing.assert_allclose(a.logprob, b.logprob, rtol=0, atol=1e-4)


def test_a_start_at_token_zero_is_refused(taggant_model):
    _, lm = taggant_model
    with pytest.raises(ValueError, match="needs context"):
        score_groups(lm, [[np.array([0, 5, 6])]], [[0]], 2)


def _canaries(rng: np.random.Generator, count: int, references: int):
    prompt = "xy: "  # one character a token: ord(c)

    def secret() -> str:
        return "".join(chr(ord("a") + int(i)) for i in rng.integers(0, 26, 6))

    rows = []
    for i in range(count):
        text = prompt + secret()
        rows.append(
            {
                "item_id": f"c/{i}",
                "set": "c",
                "kind": "canary",
                "version": "canary.v1",
                "text": text,
                "prefix_chars": len(prompt),
                "token_ids": [ord(c) for c in text],
                "dup_level": 1,
                "phase_start": 0.0,
                "phase_end": 1.0,
                "params": json.dumps({"secret": text[len(prompt) :], "log2_space": 6 * 4.7}),
            }
        )
    refs = {"c": [secret() for _ in range(references)]}
    return pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA), refs


def test_exposure_ranks_equal_those_of_full_megatron_passes(taggant_model):
    megatron, lm = taggant_model
    items, refs = _canaries(np.random.default_rng(1), 4, 60)

    def exposure(**kwargs) -> dict[tuple[str, str], float]:
        table = probe_items(
            megatron,
            items,
            ["exposure"],
            4,
            4,
            16,
            lambda text: [ord(c) for c in text],
            tokens_seen=0,
            precision="float32",
            bos_id=0,
            canary_references=refs,
            **kwargs,
        )
        return {(r["item_id"], r["metric"]): r["value"] for r in table.to_pylist()}

    cached, full = exposure(lm=lm), exposure()
    assert cached.keys() == full.keys()
    ranks = {key: value for key, value in full.items() if key[1] == "rank"}
    assert len(ranks) == 4 and len(set(ranks.values())) > 1  # the secrets rank differently
    for key, value in full.items():
        if key[1] in ("rank", "references", "exposure_rank"):
            assert cached[key] == value, key
        else:
            assert cached[key] == pytest.approx(value, abs=1e-4), key
