"""CPU training throughput of the ``tiny-2m`` preset: taggant's megatron-core loop against a plain
torch loop on the same model, measured in the same run.

Usage (repository root, taggant installed or PYTHONPATH=.):
    python bench/train.py [--steps 40] [--seq 128] [--global-batch 8] [--micro-batch 4]

Rows (tokens/s = trained tokens per wall second: forward, backward and optimizer step):
- plain torch: the same GPTModel (SDPA attention, CPU shim) with ``torch.optim.AdamW`` and a bare
  ``loss.backward()``, one process, one thread: the peer.
- taggant DP=1: ``pipeline.train.loop.Trainer`` (megatron DDP, megatron optimizer and LR schedule,
  ``get_forward_backward_func``), one process, one thread.
- taggant DP=2: the same trainer in two gloo processes of one thread each, as the demo uses two
  cores; tokens/s counts both ranks.

Tokens are random ids (throughput does not depend on them); no checkpoints are written; the first
``--warmup`` steps are not timed. The load average before and after is printed: other processes on
the machine slow every row, one-thread rows less than the others.
"""

import argparse
import os
import platform
import socket
import tempfile
import time

import numpy as np
import torch
import torch.multiprocessing as mp

PRESET = "tiny-2m"
VOCAB = 4096


class RandomSamples:
    """Random token rows with the interface of ``pipeline.data.TrainingSamples``."""

    def __init__(self, num_samples: int, seq_length: int):
        self.seq_length = seq_length
        shape = (num_samples, seq_length + 1)
        self.rows = np.random.default_rng(0).integers(0, VOCAB, shape, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.rows[start:stop]


def num_steps(args) -> int:
    return args.warmup + args.steps


def timed_tokens(args) -> int:
    return args.steps * args.global_batch * args.seq


def bench_taggant(args) -> float:
    """Tokens/s of the trainer in this process (one rank of several if ``WORLD_SIZE`` is set)."""
    from taggant.pipeline.train.loop import TrainConfig, Trainer
    from taggant.pipeline.train.model import ModelConfig

    torch.set_num_threads(1)
    config = TrainConfig(
        model=ModelConfig.from_preset(PRESET, VOCAB, args.seq),
        seed=0,
        num_steps=num_steps(args),
        global_batch_sequences=args.global_batch,
        micro_batch_sequences=args.micro_batch,
        lr=1e-3,
        min_lr=1e-4,
        lr_schedule="constant",
        warmup_steps=0,
        weight_decay=0.01,
        tensor_parallel_size=1,
        checkpoint_steps=(),
    )
    samples = RandomSamples(num_steps(args) * args.global_batch, args.seq)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, samples, run_dir)
        trainer.train_until(args.warmup)
        start = time.perf_counter()
        trainer.train_until(config.num_steps)
        elapsed = time.perf_counter() - start
        trainer.close()
    return timed_tokens(args) / elapsed


def bench_plain_torch(args) -> float:
    from megatron.core import parallel_state

    from taggant.pipeline.train.model import ModelConfig, build_model, init_parallel

    torch.set_num_threads(1)
    init_parallel()
    model = build_model(ModelConfig.from_preset(PRESET, VOCAB, args.seq), seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.95))
    samples = RandomSamples(num_steps(args) * args.global_batch, args.seq)
    for step in range(num_steps(args)):
        if step == args.warmup:
            start = time.perf_counter()
        optimizer.zero_grad()
        rows = samples.read(step * args.global_batch, (step + 1) * args.global_batch)
        for micro in torch.from_numpy(rows.astype(np.int64)).split(args.micro_batch):
            loss = model(micro[:, :-1], None, None, labels=micro[:, 1:]).mean()
            (loss * len(micro) / args.global_batch).backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    # Leave as Trainer.close does: a process group destroyed under megatron's live parallel state
    # leaves it naming groups that no longer exist, and the next Trainer would use them.
    parallel_state.destroy_model_parallel()
    torch.distributed.destroy_process_group()
    return timed_tokens(args) / elapsed


def _dp_rank(rank: int, world: int, port: int, args, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    tokens_per_s = bench_taggant(args)
    if rank == 0:
        with open(out, "w") as f:
            f.write(str(tokens_per_s))


def bench_taggant_dp(args, world: int) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "tokens_per_s")
        mp.spawn(_dp_rank, args=(world, port, args, out), nprocs=world)
        with open(out) as f:
            return float(f.read())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=4)
    args = parser.parse_args()

    print(
        f"{PRESET}, vocab {VOCAB}, seq {args.seq}, global batch {args.global_batch}, "
        f"micro batch {args.micro_batch}, {args.steps} timed steps; torch {torch.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    plain = bench_plain_torch(args)
    rows = [
        ("plain torch loop, 1 process × 1 thread", plain),
        ("taggant DP=1, 1 process × 1 thread", bench_taggant(args)),
        ("taggant DP=2, 2 processes × 1 thread", bench_taggant_dp(args, world=2)),
    ]
    for name, tokens_per_s in rows:
        print(f"{name:40s} {tokens_per_s:8,.0f} tokens/s  {tokens_per_s / plain:5.2f}× plain torch")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
