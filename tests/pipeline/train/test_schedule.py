"""The checkpoint schedule: log-spaced early steps, the interval, the last step, and dense steps
after each insertion window closes."""

from taggant.pipeline.perturb.setspec import PhaseWindow
from taggant.pipeline.spec import CheckpointsSpec, parse_spec
from taggant.pipeline.train.schedule import (
    checkpoint_steps,
    run_checkpoint_steps,
    window_close_step,
)


def test_log_spaced_steps_then_the_interval_then_the_last_step():
    spec = CheckpointsSpec(log_spaced=4, interval_steps=500, after_window_steps=[])
    assert checkpoint_steps(spec, 1700) == [1, 5, 22, 106, 500, 1000, 1500, 1700]


def test_no_early_steps_and_a_last_step_on_the_interval():
    spec = CheckpointsSpec(log_spaced=0, interval_steps=100, after_window_steps=[])
    assert checkpoint_steps(spec, 300) == [100, 200, 300]


def test_dense_log_spacing_never_repeats_a_step():
    spec = CheckpointsSpec(log_spaced=8, interval_steps=4, after_window_steps=[])
    assert checkpoint_steps(spec, 10) == [1, 2, 3, 4, 8, 10]


def test_window_close_and_the_steps_after_it_stay_inside_the_run():
    spec = CheckpointsSpec(log_spaced=0, interval_steps=100, after_window_steps=[10, 50])
    steps = checkpoint_steps(spec, 200, window_close_steps=[30, 180])
    assert steps == [30, 40, 80, 100, 180, 190, 200]


def test_a_window_closes_once_its_last_sample_is_trained_on():
    # 1000 samples, 8 per step: [0.25, 0.5) ends before sample 500, the 4th sample of step 62.
    assert window_close_step(PhaseWindow(start_frac=0.25, end_frac=0.5), 1000, 8) == 63
    # ... and [0, 0.256) ends before sample 256, the first sample of step 32.
    assert window_close_step(PhaseWindow(end_frac=0.256), 1000, 8) == 32
    assert window_close_step(PhaseWindow(), 1000, 8) == 125


def test_the_schedule_of_a_spec_includes_every_set_window():
    spec = parse_spec(
        {
            "name": "schedule",
            "seed": 0,
            "work_dir": "w",
            "corpus": {"paths": ["c.jsonl"]},
            "store": {"url": "s"},
            "perturbations": [
                {
                    "kind": "canary",
                    "name": "early",
                    "count": 4,
                    "dup_levels": [2],
                    "phase": {"end_frac": 0.25},
                },
                {"kind": "ghost", "name": "everywhere", "count": 4, "dup_levels": [2]},
            ],
            "runs": {"model_sizes": ["tiny-2m"], "train_tokens": [128 * 8 * 400]},
            "checkpoints": {"log_spaced": 2, "interval_steps": 150, "after_window_steps": [5]},
        }
    )
    # 400 steps; the early window closes at step 100, the other at the end of training.
    assert run_checkpoint_steps(spec, 128 * 8 * 400) == [1, 12, 100, 105, 150, 300, 400]
