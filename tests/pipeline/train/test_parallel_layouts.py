"""Pipeline and tensor parallelism on local gloo ranks with real megatron-core: a run continued
from the same checkpoint at TP=2 × PP=2, or at PP=2 and then at TP=2 from the PP=2 save, trains
the same losses and ends at the same weights as the single-process run, to float32 rounding.

Each layout starts from a committed checkpoint of the single-process run, because initial weights
depend on the pipeline layout (as in Megatron-LM), while a checkpoint loads into any layout."""

import os
import shutil

import numpy as np
import pytest
import torch

from taggant.pipeline.train import checkpoint
from taggant.pipeline.train.loop import Trainer
from tests.pipeline.train.ranks import ArraySamples, changelog_samples, run_ranks
from tests.pipeline.train.test_loop import SEQ, VOCAB, config

pytestmark = pytest.mark.slow

STEPS = 8
LOSS_TOLERANCE = 1e-4
"""Absolute: reductions in another order (the tied embedding's two gradients are summed by an
all-reduce between stages instead of in one buffer) differ in the last float32 bits only."""


def continue_run(
    samples: ArraySamples, run_dir: str, until: int, checkpoints: tuple[int, ...], layout: dict
) -> dict:
    """One rank: resume ``run_dir`` at ``layout`` and train until ``until``."""
    trainer = Trainer(config(STEPS, checkpoints, **layout), samples, run_dir)
    resumed_at = trainer.step
    result = trainer.train_until(until)
    trainer.close()
    return {
        "resumed_at": resumed_at,
        "losses": result["losses"],
        "pipeline_rank": result["pipeline_parallel_rank"],
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process run: its per-step losses, its step-4 checkpoint (a folder holding only
    that) and its final logits on two samples."""
    samples = changelog_samples(SEQ, VOCAB)
    root = tmp_path_factory.mktemp("reference")
    run_dir = str(root / "run")
    os.makedirs(run_dir)
    trainer = Trainer(config(STEPS, (4, STEPS)), samples, run_dir)
    losses = dict(trainer.train_until(STEPS)["losses"])
    trainer.close()
    start = str(root / "from-step-4")
    shutil.copytree(checkpoint.step_dir(run_dir, 4), checkpoint.step_dir(start, 4))
    return samples, losses, start, final_logits(run_dir, samples)


def final_logits(run_dir: str, samples: ArraySamples) -> np.ndarray:
    """Logits of the run's last checkpoint, loaded into one process, on two samples."""
    model = checkpoint.load_model(run_dir, STEPS)
    with torch.no_grad():
        logits = model(torch.from_numpy(samples.read(0, 2)[:, :-1].astype(np.int64)), None, None)
    torch.distributed.destroy_process_group()
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    return logits.numpy()


def fresh_copy(start: str, tmp_path) -> str:
    run_dir = str(tmp_path / "run")
    shutil.copytree(start, run_dir)
    return run_dir


def assert_same_training(results: list[dict], reference_losses: dict, steps: range) -> None:
    for rank in results:
        assert [step for step, _ in rank["losses"]] == list(steps)
        for step, loss in rank["losses"]:  # every rank reports the last stage's loss
            assert loss == pytest.approx(reference_losses[step], abs=LOSS_TOLERANCE)


def test_a_pipeline_parallel_save_resumes_at_tensor_parallel_2(reference, tmp_path):
    samples, losses, start, logits = reference
    run_dir = fresh_copy(start, tmp_path)
    first = run_ranks(
        2, continue_run, samples, run_dir, 6, (6, STEPS), {"pipeline_parallel_size": 2}
    )
    assert [r["pipeline_rank"] for r in first] == [0, 1]
    assert [r["resumed_at"] for r in first] == [4, 4]
    assert_same_training(first, losses, range(5, 7))
    assert checkpoint.committed_steps(run_dir) == [4, 6]
    # The step-6 checkpoint written by two pipeline stages, read by two tensor-parallel ranks.
    second = run_ranks(
        2, continue_run, samples, run_dir, STEPS, (6, STEPS), {"tensor_parallel_size": 2}
    )
    assert [r["resumed_at"] for r in second] == [6, 6]
    assert_same_training(second, losses, range(7, STEPS + 1))
    np.testing.assert_allclose(final_logits(run_dir, samples), logits, atol=1e-4)


def test_tensor_2_by_pipeline_2_trains_like_one_process(reference, tmp_path):
    samples, losses, start, logits = reference
    run_dir = fresh_copy(start, tmp_path)
    results = run_ranks(
        4,
        continue_run,
        samples,
        run_dir,
        STEPS,
        (STEPS,),
        {"tensor_parallel_size": 2, "pipeline_parallel_size": 2},
    )
    assert [r["pipeline_rank"] for r in results] == [0, 0, 1, 1]  # tensor parallel innermost
    assert_same_training(results, losses, range(5, STEPS + 1))
    np.testing.assert_allclose(final_logits(run_dir, samples), logits, atol=1e-4)
