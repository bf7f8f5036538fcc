"""The disk a spec's checkpoints will take, before anything runs: for ``taggant plan`` and the
``checkpoints.disk_budget_bytes`` check.

A checkpoint's bytes are the model's parameter count × bytes per parameter of its kind
(``BYTES_PER_PARAM``); dist_checkpointing's metadata adds a few percent (measured 4.34 and 12.82
bytes per parameter on CPU for a 0.13 M-parameter model, ``tests/pipeline/train/
test_checkpoint_kinds.py``) and the embedding's padding to 128 ids adds under 1% for the presets;
neither is counted. Which checkpoints are full follows ``schedule.full_checkpoint_steps``.

With ``keep_last`` = k > 0 the watchers delete probed checkpoints beyond the newest k, except the
newest full one and those not exported yet (``jobs.probe.retain``); the estimate assumes watchers
and exports keep pace with training, so the most on disk at once is that kept set plus the
checkpoint being written. HF exports
(``export_hf``, float32) are never deleted. Needs neither torch nor megatron.
"""

from __future__ import annotations

from dataclasses import dataclass

from taggant.pipeline.errors import ConfigError
from taggant.pipeline.models import MODEL_PRESETS
from taggant.pipeline.spec import ExperimentSpec, RunId
from taggant.pipeline.train.schedule import full_checkpoint_steps, run_checkpoint_steps

BYTES_PER_PARAM = {
    "cuda": {"weights": 2, "full": 14},
    "cpu": {"weights": 4, "full": 12},
}
"""Per device and checkpoint kind. GPU: bf16 weights; a full checkpoint adds the distributed
optimizer's fp32 main weights and Adam's two fp32 moments (2 + 4 + 8). CPU: fp32 weights, and the
two moments (4 + 8)."""
EXPORT_BYTES_PER_PARAM = 4
"""An HF export holds the float32 weights (``hf.export_checkpoint``)."""


@dataclass(frozen=True)
class RunDisk:
    """What one run's checkpoints take on disk."""

    run: str
    num_params: int
    full_checkpoints: int
    weights_checkpoints: int
    peak_bytes: int
    """Most checkpoint bytes on disk at once (all of them when ``keep_last`` is 0)."""
    export_bytes: int
    """HF exports, kept for good (0 without ``export_hf``)."""

    @property
    def total_bytes(self) -> int:
        return self.peak_bytes + self.export_bytes


def bytes_per_param(device: str) -> dict[str, int]:
    """``BYTES_PER_PARAM`` of ``runs.device``; ``auto`` takes the larger of the two per kind, as
    the plan does not know the cluster."""
    if device == "auto":
        return {k: max(d[k] for d in BYTES_PER_PARAM.values()) for k in BYTES_PER_PARAM["cpu"]}
    return BYTES_PER_PARAM[device]


def num_params(spec: ExperimentSpec, run: RunId, vocab_size: int) -> int:
    """Parameters of ``run``'s model with a tokenizer of ``vocab_size`` ids (an imported
    ``runs.init_from_hf`` model is counted from its files)."""
    if spec.runs.init_from_hf is None:
        return MODEL_PRESETS[run.model_size].num_params(vocab_size)
    from taggant.pipeline.train import hf

    return hf.num_params(spec.runs.init_from_hf)


def planned_vocab_size(spec: ExperimentSpec) -> int:
    """The tokenizer's vocabulary before it exists: a BPE's ``vocab_size``, or that of the
    ``tokenizer.json`` a ``file`` tokenizer names."""
    if spec.tokenizer.kind == "bpe":
        return spec.tokenizer.vocab_size
    from tokenizers import Tokenizer

    return Tokenizer.from_file(spec.tokenizer.path).get_vocab_size(with_added_tokens=True)


def peak_bytes(steps: list[int], full: set[int], sizes: dict[str, int], keep_last: int) -> int:
    """Most bytes of the checkpoints at sorted ``steps`` on disk at once (``full`` the full ones,
    ``sizes`` the bytes per kind), with ``keep_last`` as described in the module docstring."""

    def size(step: int) -> int:
        return sizes["full" if step in full else "weights"]

    if not keep_last:
        return sum(map(size, steps))
    peak, kept = 0, set()
    for step in steps:
        peak = max(peak, sum(map(size, kept | {step})))
        done = [s for s in steps if s <= step]
        resume = [s for s in done if s in full][-1:]
        kept = set(done[-keep_last:]) | set(resume)
    return peak


def run_disk(spec: ExperimentSpec, run: RunId, vocab_size: int) -> RunDisk:
    """The disk of ``run``'s checkpoints and exports."""
    checkpoints = spec.checkpoints
    steps = run_checkpoint_steps(spec, run.train_tokens)
    full = set(full_checkpoint_steps(steps, checkpoints.resume_every_steps))
    params = num_params(spec, run, vocab_size)
    sizes = {k: b * params for k, b in bytes_per_param(spec.runs.device).items()}
    return RunDisk(
        run=run.name,
        num_params=params,
        full_checkpoints=len(full),
        weights_checkpoints=len(steps) - len(full),
        peak_bytes=peak_bytes(steps, full, sizes, checkpoints.keep_last),
        export_bytes=len(steps) * EXPORT_BYTES_PER_PARAM * params if checkpoints.export_hf else 0,
    )


def plan_disk(spec: ExperimentSpec) -> list[RunDisk]:
    """``run_disk`` of every run of the grid."""
    vocab_size = planned_vocab_size(spec)
    return [run_disk(spec, run, vocab_size) for run in spec.runs.grid()]


def check_budget(spec: ExperimentSpec, disks: list[RunDisk] | None = None) -> None:
    """Refuse a spec whose runs need more than ``checkpoints.disk_budget_bytes`` together;
    ``disks`` is ``plan_disk(spec)``, computed here when not given and a budget is set.

    Raises:
        ConfigError: the runs' ``total_bytes`` exceed the budget; the message names the need and
            the settings that lower it.
    """
    budget = spec.checkpoints.disk_budget_bytes
    if budget is None:
        return
    disks = plan_disk(spec) if disks is None else disks
    need = sum(d.total_bytes for d in disks)
    if need > budget:
        raise ConfigError(
            [
                (
                    "checkpoints.disk_budget_bytes",
                    f"the {len(disks)} runs' checkpoints need about {need:,} bytes but the budget "
                    f"is {budget:,}; set checkpoints.keep_last, raise "
                    "checkpoints.resume_every_steps (weights-only checkpoints in between) or "
                    "interval_steps, turn off export_hf, or raise the budget",
                )
            ]
        )
