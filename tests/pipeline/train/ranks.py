"""What the multi-rank training tests share: a real-text sample stream held in memory and a way to
run a function on ``W`` local gloo ranks (spawned processes, one thread each, no Ray)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable

import numpy as np
import torch.multiprocessing as mp

from taggant.pipeline import tokenize
from tests.corpus import pinned_docs
from tests.net import free_ports


class ArraySamples:
    """A sample stream held in memory, with the interface of ``pipeline.data.TrainingSamples``."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        self.seq_length = rows.shape[1] - 1

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.rows[start:stop]


def changelog_samples(seq: int, vocab: int, docs: int = 15) -> ArraySamples:
    """Debian changelogs through a byte-level BPE of ``vocab`` ids, cut into samples of ``seq + 1``
    tokens that share their boundary token (megatron's layout), in a fixed shuffled order."""
    texts = [d["text"] for d in pinned_docs("changelog")[:docs]]
    bpe = tokenize.train_bpe(texts, vocab)
    stream = np.concatenate(tokenize.encode_documents(bpe, texts, eod_id=0))
    count = (len(stream) - 1) // seq
    rows = np.stack([stream[i * seq : (i + 1) * seq + 1] for i in range(count)]).astype(np.int32)
    return ArraySamples(rows[np.random.default_rng(0).permutation(count)])


def _rank_main(rank: int, world: int, port: int, fn: Callable, args: tuple, out: str) -> None:
    import torch

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        LOCAL_RANK="0",
    )
    torch.set_num_threads(1)
    result = fn(*args)
    with open(f"{out}.{rank}", "w") as f:
        json.dump(result, f)


def run_ranks(world: int, fn: Callable, *args) -> list:
    """Run ``fn(*args)`` on ``world`` gloo ranks; returns each rank's JSON-able result, in rank
    order. ``fn`` must be importable (module level); a failure on any rank raises here."""
    [port] = free_ports(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result")
        mp.spawn(_rank_main, args=(world, port, fn, args, out), nprocs=world)
        results = []
        for rank in range(world):
            with open(f"{out}.{rank}") as f:
                results.append(json.load(f))
        return results
