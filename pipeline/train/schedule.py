"""Which steps of a run are checkpointed: a pure function of the spec.

A checkpoint "at step k" holds the model after k optimizer steps, i.e. after samples
``[0, k × global_batch_sequences)``. The schedule is the union of

- ``log_spaced`` early steps, geometrically spaced in ``[1, interval_steps)`` (Pythia-style dense
  early checkpoints, where the loss moves fastest);
- every ``interval_steps``-th step, and always the last step;
- for each perturbation set's phase window, the step at which the window closes (its last sample
  has been trained on) and ``after_window_steps`` steps after it, since forgetting is fastest right
  after the last exposure.

Every step lies in ``[1, num_steps]``. The perturbed run and its standard twin share the schedule,
so they can be compared checkpoint by checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from taggant.pipeline.perturb.setspec import PhaseWindow
from taggant.pipeline.spec import CheckpointsSpec, ExperimentSpec


def checkpoint_steps(
    checkpoints: CheckpointsSpec, num_steps: int, window_close_steps: Iterable[int] = ()
) -> list[int]:
    """The sorted, distinct steps to checkpoint in a run of ``num_steps`` steps.

    Args:
        checkpoints: the spec's schedule.
        num_steps: optimizer steps of the run (≥ 1).
        window_close_steps: steps at which insertion windows close (see ``window_close_step``).
    """
    assert num_steps >= 1, num_steps
    interval = checkpoints.interval_steps
    early = np.geomspace(1, interval, checkpoints.log_spaced + 1)[:-1]
    steps = {round(float(s)) for s in early if round(float(s)) < interval}
    steps |= set(range(interval, num_steps + 1, interval))
    steps.add(num_steps)
    for close in window_close_steps:
        steps |= {close + after for after in (0, *checkpoints.after_window_steps)}
    return sorted(s for s in steps if 1 <= s <= num_steps)


def full_checkpoint_steps(steps: list[int], resume_every_steps: int) -> list[int]:
    """The steps of the sorted schedule ``steps`` whose checkpoint is full (holds the optimizer
    state): all of them when ``resume_every_steps`` is 0, else the first one at or after each
    multiple of it, and the last one (so a finished run never trains again to reach its end).
    """
    if not resume_every_steps:
        return list(steps)
    full, previous = [], 0
    for step in steps:
        if step // resume_every_steps > previous // resume_every_steps:
            full.append(step)
            previous = step
    if steps and (not full or full[-1] != steps[-1]):
        full.append(steps[-1])
    return full


def window_close_step(window: PhaseWindow, num_samples: int, global_batch_sequences: int) -> int:
    """The first step after which every sample of ``window`` has been trained on."""
    _, end = window.sample_range(num_samples)
    return -(-end // global_batch_sequences)


def run_checkpoint_steps(spec: ExperimentSpec, train_tokens: int) -> list[int]:
    """The checkpoint steps of every run of ``spec`` with budget ``train_tokens``."""
    runs = spec.runs
    num_samples = runs.num_samples(train_tokens)
    closes = {
        window_close_step(pset.phase, num_samples, runs.global_batch_sequences)
        for pset in spec.perturbations
    }
    return checkpoint_steps(spec.checkpoints, runs.num_steps(train_tokens), closes)
