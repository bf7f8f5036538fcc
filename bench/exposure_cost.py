"""CPU cost of the exposure probe per canary, on a model of the demo's shape.

Usage (repository root):
    .venv/bin/python bench/exposure_cost.py [--canaries 4] [--references 1000] [--threads 1]

Model: an untrained megatron-core ``tiny-2m`` (the demo's size, vocabulary 4096, sequence 128):
a forward costs what a trained one does. Canaries are shaped like the demo's (perf review #1):
a 19-token prompt, a 21-token secret, scored after an end-of-document token, each with
``--references`` reference secrets; tokens are characters (``ord(c)``), digits for the secrets.
Times ``pipeline.probe.run.probe_items(["exposure"])`` with the demo's ``batch_items`` (64), one
warm-up canary first, in the two forms a checkpoint can be scored in, alternating:

* ``cached``: what a checkpoint's probe runs, its HF Llama form (``native.llama_of``) with a KV
  cache, the prompt computed once per canary (``shared_prefix``);
* ``full``: every candidate a full pass of the megatron model (``shared_prefix.Recompute``, the
  cost before the cache),

and prints CPU seconds per canary of each, the scoring share apart from the skew-normal
fits (``exposure.fit_skewnorm``, timed by wrapping it), their ratio, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
import pyarrow as pa
import torch

from taggant.pipeline.manifest import ITEMS_SCHEMA
from taggant.pipeline.probe import exposure, native, probe_items
from taggant.pipeline.probe.cached import CachedLM

PROMPT = "my secret code is: "  # 19 characters = 19 tokens
SECRET_DIGITS = 21
VOCAB, SEQ = 4096, 128
EOD = 0


def tokenize(text: str) -> list[int]:
    return [ord(c) % VOCAB for c in text]


def canaries(count: int, references: int) -> tuple[pa.Table, dict[str, list[str]]]:
    rng = np.random.default_rng(0)

    def secret() -> str:
        return "".join(map(str, rng.integers(0, 10, SECRET_DIGITS)))

    rows = []
    for i in range(count):
        text = PROMPT + secret()
        rows.append(
            {
                "item_id": f"c/{i}",
                "set": "c",
                "kind": "canary",
                "version": "canary.v1",
                "text": text,
                "prefix_chars": len(PROMPT),
                "token_ids": tokenize(text),
                "dup_level": 1,
                "phase_start": 0.0,
                "phase_end": 1.0,
                "params": json.dumps(
                    {"secret": text[len(PROMPT) :], "log2_space": SECRET_DIGITS * np.log2(10)}
                ),
            }
        )
    return pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA), {
        "c": [secret() for _ in range(references)]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--canaries", type=int, default=4)
    parser.add_argument("--references", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both forms")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="megatron")
    from taggant.pipeline.train.model import ModelConfig, build_model, init_parallel

    init_parallel()
    config = ModelConfig.from_preset("tiny-2m", VOCAB, SEQ)
    model = build_model(config, seed=0).eval()
    lm = CachedLM(lambda: native.llama_of(model, config, EOD), VOCAB)

    def logits(ids: np.ndarray) -> torch.Tensor:
        # As pipeline.train.checkpoint.load_logits_fn, without a checkpoint.
        with torch.no_grad():
            return model(torch.from_numpy(ids), None, None)[..., :VOCAB]

    fit_seconds = [0.0]
    fit = exposure.fit_skewnorm

    def timed_fit(refs: np.ndarray) -> tuple[float, float, float]:
        start = time.process_time()
        try:
            return fit(refs)
        finally:
            fit_seconds[0] += time.process_time() - start

    exposure.fit_skewnorm = timed_fit

    def probe(count: int, form: str) -> pa.Table:
        items, refs = canaries(count, args.references)
        return probe_items(
            logits,
            items,
            ["exposure"],
            prefix_tokens=4,
            suffix_tokens=8,
            batch_items=64,
            tokenize=tokenize,
            tokens_seen=0,
            precision="float32",
            bos_id=EOD,
            canary_references=refs,
            lm=lm if form == "cached" else None,
        )

    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    forms = ("cached", "full")
    cpu = {form: 0.0 for form in forms}
    fits = {form: 0.0 for form in forms}
    for form in forms:
        probe(1, form)  # warm-up (and the Llama form built)
    for _ in range(args.rounds):
        for form in forms:
            fit_seconds[0] = 0.0
            start = time.process_time()
            probe(args.canaries, form)
            cpu[form] += time.process_time() - start
            fits[form] += fit_seconds[0]
    n = args.canaries * args.rounds
    for form in forms:
        print(
            f"{form}: {args.canaries} canaries x {args.references} references x {args.rounds} "
            f"rounds, {args.threads} thread(s): {cpu[form] / n:.2f} CPU-s per canary, of which "
            f"skew-normal fits {fits[form] / n:.2f}, scoring and the rest "
            f"{(cpu[form] - fits[form]) / n:.2f}"
        )
    ratio = (cpu["full"] - fits["full"]) / (cpu["cached"] - fits["cached"])
    print(f"scoring: full / cached = {ratio:.2f}; total {cpu['full'] / cpu['cached']:.2f}")
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
