"""Paper estimates for cluster/README.md ("GPU estimates"): training time, MFU and checkpoint
disk for a Hubble-sized ladder (1B and 8B models on 100B and 500B tokens) on N 8-GPU nodes.

Estimates, not measurements. What comes from the code: parameter counts
(``ModelPreset.num_params``), FLOPs per token and the bf16 peak (``bench/gpu_check.py``:
``6·N + 12·L·d·s`` over 989 TFLOP/s), the checkpoint schedule (``pipeline.train.schedule`` with
the spec's default ``checkpoints``) and the bytes a checkpoint holds per parameter (what
``pipeline.train.checkpoint`` saves: bf16 weights, and the optimizer's fp32 main weights and two
fp32 Adam moments). What is assumed, and printed: the MFU ranges (cluster/README.md cites where
they come from), 8 GPUs per node, the batch and the storage bandwidth.

    .venv/bin/python bench/gpu_estimates.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpu_check import PEAK_BF16_FLOPS, flops_per_token  # noqa: E402

from taggant.pipeline.models import MODEL_PRESETS, ModelPreset  # noqa: E402
from taggant.pipeline.spec import CheckpointsSpec  # noqa: E402
from taggant.pipeline.train.schedule import checkpoint_steps  # noqa: E402

MODELS = {
    "1B (preset gpt-1.3b)": MODEL_PRESETS["gpt-1.3b"],
    # Llama-3-8B's widths with one key/value head per query head (the presets' attention).
    "8B (32 x 4096, ffn 14336)": ModelPreset(
        num_layers=32, hidden_size=4096, num_attention_heads=32, ffn_hidden_size=14336
    ),
}
TOKENS = (100e9, 500e9)
NODES = (1, 4, 16)
GPUS_PER_NODE = 8
VOCAB = 32_000  # a multiple of 128: no padding
SEQ = 2048
GLOBAL_BATCH = 512  # sequences: ~1M tokens per step
MFU = {"local spec": (0.33, 0.42), "Transformer Engine": (0.42, 0.48)}
"""Ranges estimated for 1.3B on H100 (research/reviews/gpu.md); 8B is assumed the same."""
WEIGHT_BYTES = 2  # bf16 model weights
FULL_BYTES = WEIGHT_BYTES + 4 + 4 + 4  # + fp32 main weights, Adam exp_avg and exp_avg_sq
WRITE_GB_S = (1.0, 5.0)
"""Aggregate write bandwidth to the shared volume: one NFS server, a parallel file system."""
RESUME_EVERY = 5000
"""Steps between full (optimizer) checkpoints in the weights-only scheme (not built yet)."""


def duration(fast_s: float, slow_s: float) -> str:
    if slow_s < 2 * 86400:
        return f"{fast_s / 3600:.0f}-{slow_s / 3600:.0f} h"
    return f"{fast_s / 86400:.1f}-{slow_s / 86400:.1f} days"


def main() -> None:
    print(
        f"assumed: {GPUS_PER_NODE} GPUs/node at {PEAK_BF16_FLOPS / 1e12:.0f} TFLOP/s bf16, "
        f"seq {SEQ}, {GLOBAL_BATCH} sequences/step, MFU {MFU}"
    )
    for name, shape in MODELS.items():
        params = shape.num_params(VOCAB)
        per_token = flops_per_token(shape, VOCAB, SEQ)
        print(f"\n{name}: {params / 1e9:.2f}B params, {per_token / 1e9:.1f} GFLOP/token")
        print(
            f"  checkpoint: full {FULL_BYTES} B/param = {params * FULL_BYTES / 1e9:.0f} GB; "
            f"weights-only {WEIGHT_BYTES} B/param = {params * WEIGHT_BYTES / 1e9:.1f} GB; a full "
            f"save at {WRITE_GB_S[0]:.0f}-{WRITE_GB_S[1]:.0f} GB/s takes "
            f"{params * FULL_BYTES / 1e9 / WRITE_GB_S[1]:.0f}-"
            f"{params * FULL_BYTES / 1e9 / WRITE_GB_S[0]:.0f} s"
        )
        for tokens in TOKENS:
            steps = round(tokens / (GLOBAL_BATCH * SEQ))
            saves = len(checkpoint_steps(CheckpointsSpec(), steps))
            full_tb = saves * params * FULL_BYTES / 1e12
            split_tb = (saves * WEIGHT_BYTES + (steps // RESUME_EVERY + 1) * FULL_BYTES) * params
            print(
                f"  {tokens / 1e9:.0f}B tokens: {steps:,} steps, {saves} checkpoints (default "
                f"schedule): {full_tb:.1f} TB per run if every one is full, "
                f"{split_tb / 1e12:.1f} TB weights-only with a full one every {RESUME_EVERY:,} "
                "steps; twice that with the standard twin"
            )
            blocked = [saves * params * FULL_BYTES / 1e9 / rate / 3600 for rate in WRITE_GB_S[::-1]]
            print(f"    full saves block training {blocked[0]:.1f}-{blocked[1]:.1f} h per run")
            for nodes in NODES:
                gpus = nodes * GPUS_PER_NODE
                cells = []
                for label, (low, high) in MFU.items():
                    fast, slow = (
                        tokens * per_token / (gpus * PEAK_BF16_FLOPS * m) for m in (high, low)
                    )
                    cells.append(f"{label} {duration(fast, slow)}")
                print(f"    {nodes:>2} nodes ({gpus:>3} GPUs): {'; '.join(cells)}")


if __name__ == "__main__":
    main()
