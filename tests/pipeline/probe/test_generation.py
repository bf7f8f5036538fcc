"""Greedy decoding with a KV cache and the metrics of generated text: the tokens equal
``transformers``' ``generate(do_sample=False)`` on SmolLM2-135M, the stop rule holds, and the
metrics equal their definitions on fixtures."""

from __future__ import annotations

import codecs
import contextlib
import io

import pytest

from taggant.pipeline.probe import hf, text_metrics
from tests.smollm2 import gguf_path


def test_squad_normalization_and_token_f1_recall():
    assert text_metrics.normalize_answer("The  Cat, sat!") == "cat sat"
    f1, recall = text_metrics.token_f1_recall("a cat sat on mats", "the cat sat on the mat")
    # generated tokens: cat sat on mats (4); reference: cat sat on mat (4); 3 in common.
    assert recall == pytest.approx(3 / 4) and f1 == pytest.approx(3 / 4)
    assert text_metrics.token_f1_recall("", "") == (1.0, 1.0)
    assert text_metrics.token_f1_recall("x", "") == (0.0, 0.0)


def test_rouge_l_and_edit_similarity_on_fixtures():
    p, r, f = text_metrics.rouge_l("the cat was found under the bed", "the cat was under the bed")
    # LCS = 6 words ("the cat was under the bed") of 7 generated and 6 reference words.
    assert (p, r) == (pytest.approx(6 / 7), pytest.approx(1.0))
    assert f == pytest.approx(2 * p * r / (p + r))
    assert text_metrics.rouge_l("!!", "!!") == (1.0, 1.0, 1.0)
    assert text_metrics.edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert text_metrics.edit_similarity("", "") == 1.0


def test_a_generation_equal_to_its_reference_scores_one_everywhere():
    for text in ("Lorem ipsum dolor", "42 -> 43", " .", "timothy.barrera@hotmail.com"):
        assert set(text_metrics.text_metrics(text, text).values()) == {1.0}


def _zen_lines() -> list[str]:
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
        import this
    return [line for line in codecs.decode(this.s, "rot13").splitlines() if len(line) > 20]


@pytest.fixture(scope="module")
def smollm2() -> hf.HFModel:
    return hf.load(gguf_path())


@pytest.mark.slow
def test_greedy_tokens_equal_transformers_generate_on_20_prompts(smollm2):
    import torch

    model = smollm2.lm.model
    prompts = [line[: len(line) * k // 3] for line in _zen_lines() for k in (1, 2)][:20]
    assert len(prompts) == 20
    for prompt in prompts:
        ids = smollm2.tokenize(prompt)
        ours = smollm2.generate(ids, 12)
        with torch.inference_mode():
            ref = model.generate(
                torch.tensor([ids]), do_sample=False, max_new_tokens=12, pad_token_id=0
            )[0, len(ids) :].tolist()
        if smollm2.generate.eod_id in ref:  # generate keeps the EOS it stopped at; we do not
            ref = ref[: ref.index(smollm2.generate.eod_id)]
            assert ours.stop == "eod"
        assert ours.ids == ref, prompt
        assert ours.text == smollm2.generate.decode(ref)


@pytest.mark.slow
def test_the_newline_stop_ends_before_the_first_newline_token(smollm2):
    prompt = "Beautiful is better than ugly.\nExplicit is better than implicit.\n"
    ids = smollm2.tokenize(prompt)
    free = smollm2.generate(ids, 40)
    stopped = smollm2.generate(ids, 40, stop_at_newline=True)
    newlines = smollm2.generate.newline_ids()
    assert any(t in newlines for t in free.ids), free.text
    first = next(i for i, t in enumerate(free.ids) if t in newlines)
    assert stopped.ids == free.ids[:first] and stopped.stop == "newline"


@pytest.mark.slow
def test_the_stop_text_ends_at_the_token_that_completes_it(smollm2):
    ids = smollm2.tokenize("Beautiful is better than ugly. Explicit is better than")
    free = smollm2.generate(ids, 30)
    stopped = smollm2.generate(ids, 30, stop_text=" is ")
    assert " is " in free.text, free.text
    assert stopped.stop == "stop_text" and " is " in stopped.text
    assert free.ids[: len(stopped.ids)] == stopped.ids
    assert " is " not in smollm2.generate.decode(stopped.ids[:-1])


def test_a_taggant_model_decodes_with_its_cache_as_by_full_recompute():
    """Greedy decoding of a (random) taggant GPT through its Llama form and KV cache gives the
    tokens of argmax decoding by full megatron forward passes, recomputed at every step."""
    import numpy as np
    import torch

    from taggant.pipeline.probe import native
    from taggant.pipeline.probe.cached import CachedLM
    from taggant.pipeline.probe.generation import Greedy
    from tests.pipeline.probe.sharp_gpt import sharp_gpt

    model, config = sharp_gpt(300, seed=7)  # sharp logits: greedy paths differ by prompt
    greedy = Greedy(CachedLM(lambda: native.llama_of(model, config, 0), 300), str, eod_id=None)
    rng = np.random.default_rng(0)
    for _ in range(5):
        ids = rng.integers(1, 300, 6).tolist()
        expected = []
        with torch.no_grad():
            for _ in range(12):
                logits = model(torch.tensor([ids + expected]), None, None)[0, -1, :300]
                expected.append(int(logits.argmax()))
        assert greedy(ids, 12).ids == expected
