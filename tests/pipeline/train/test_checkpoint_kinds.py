"""Full and weights-only checkpoints (``checkpoints.resume_every_steps``) in this process (world
size 1, gloo): which steps hold the optimizer, their bytes on disk, probes and the HF mapping on a
weights-only checkpoint, and a resume from the newest full one that keeps the weights-only
checkpoints committed after it. On two gloo ranks: a fully parallel save splits the writing of
replicated weights between the data-parallel replicas (the GPU path's strategy, run on CPU)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from taggant.pipeline.train import checkpoint, hf
from taggant.pipeline.train.schedule import full_checkpoint_steps
from tests.pipeline.train.ranks import changelog_samples, run_ranks
from tests.pipeline.train.test_loop import SEQ, VOCAB, config

pytestmark = pytest.mark.slow  # each test trains a tiny model for a few steps

OVERHEAD = 1.25
"""Most bytes on disk per tensor byte: dist_checkpointing's metadata and common.pt, large next to
this tiny model's ~0.1 M parameters. Measured: 1.09 (weights-only, 4.34 B/param) and 1.07 (full, 12.82 B/param)."""


@pytest.fixture(scope="module")
def samples():
    return changelog_samples(SEQ, VOCAB)


def test_full_steps_are_the_first_after_each_multiple_and_the_last():
    assert full_checkpoint_steps([1, 2, 5, 6, 9, 12, 13], 0) == [1, 2, 5, 6, 9, 12, 13]
    assert full_checkpoint_steps([1, 2, 5, 6, 9, 12, 13], 4) == [5, 9, 12, 13]
    assert full_checkpoint_steps([1, 2, 3], 10) == [3]  # no multiple reached: the last only
    assert full_checkpoint_steps([], 4) == []


def test_weights_only_checkpoints_hold_the_model_and_a_third_of_the_bytes(
    samples, trainers, tmp_path
):
    run_dir = str(tmp_path)
    trainer = trainers(config(6, (2, 3, 4, 6), resume_every_steps=3), samples, run_dir)
    trainer.train_until(2)
    tokens = torch.from_numpy(samples.read(0, 2)[:, :-1].astype(np.int64))
    with torch.no_grad():
        expected = trainer.model.module(tokens, None, None)[..., :VOCAB]
    trainer.train_until(6)

    kinds = {s: checkpoint.read_commit(run_dir, s)["kind"] for s in (2, 3, 4, 6)}
    assert kinds == {2: "weights", 3: "full", 4: "weights", 6: "full"}
    assert checkpoint.full_steps(run_dir) == [3, 6] and checkpoint.resume_step(run_dir) == 6
    tracker = Path(checkpoint.checkpoints_dir(run_dir), checkpoint.TRACKER)
    assert tracker.read_text() == "6\n"

    # fp32 on CPU: 4 bytes a parameter, and Adam's two moments make a full one 12.
    params = sum(p.numel() for p in trainer.model.module.parameters())
    weights, full = (checkpoint.checkpoint_bytes(run_dir, s) for s in (2, 3))
    print(
        f"params {params}: weights-only {weights} B ({weights / params:.2f} B/param), "
        f"full {full} B ({full / params:.2f} B/param)"
    )
    assert 4 * params <= weights <= 4 * params * OVERHEAD
    assert 12 * params <= full <= 12 * params * OVERHEAD

    # Probes and exports read a weights-only checkpoint as the trainer left it.
    assert torch.equal(checkpoint.load_logits_fn(run_dir, 2)(tokens.numpy()), expected)
    from transformers import LlamaForCausalLM

    model_config = config(6, ()).model
    llama = LlamaForCausalLM(hf.llama_config(model_config, eod_id=0)).eval()
    tensors = hf.to_hf(checkpoint.load_model(run_dir, 2).state_dict(), model_config)
    missing, unexpected = llama.load_state_dict(tensors, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected  # tied to the embedding
    with torch.no_grad():
        torch.testing.assert_close(llama(tokens).logits, expected, atol=1e-4, rtol=0)


def test_a_run_resumes_from_its_newest_full_checkpoint(samples, trainers, tmp_path):
    steps = (2, 3, 5, 6, 8)  # resume_every_steps=4: 5 (after 4) and 8 (after 8, the last) full
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    uninterrupted = trainers(config(8, steps, resume_every_steps=4), samples, str(tmp_path / "a"))
    losses = uninterrupted.train_until(8)["losses"]
    digest = uninterrupted.weights_digest()

    run_dir = str(tmp_path / "b")
    trainers(config(8, steps, resume_every_steps=4), samples, run_dir).train_until(7)  # dies here
    assert checkpoint.committed_steps(run_dir) == [2, 3, 5, 6]
    six = os.path.join(checkpoint.step_dir(run_dir, 6), checkpoint.COMMIT)
    committed_at = os.stat(six).st_mtime_ns

    resumed = trainers(config(8, steps, resume_every_steps=4), samples, run_dir)
    assert resumed.step == 5  # step 6 is newer but holds no optimizer state
    assert resumed.train_until(8)["losses"] == losses[5:]
    assert resumed.weights_digest() == digest
    assert checkpoint.committed_steps(run_dir) == [2, 3, 5, 6, 8]
    assert os.stat(six).st_mtime_ns == committed_at  # kept, not written again
    assert checkpoint.full_steps(run_dir) == [5, 8]


def save_replicated_weights(run_dir: str, fully_parallel: bool) -> None:
    """One data-parallel rank of two: save its (replicated) initial weights at step 1."""
    import torch.distributed as dist
    from megatron.core import parallel_state

    from taggant.pipeline.train.model import build_model, init_parallel

    init_parallel()
    model_config = config(1, ()).model
    group = parallel_state.get_data_parallel_group() if fully_parallel else None
    checkpoint.Saver(run_dir, fully_parallel_group=group).save(
        1,
        {"model": build_model(model_config, seed=0).sharded_state_dict()},
        {"model": model_config.to_dict()},
        checkpoint.WEIGHTS,
    )
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


def test_a_fully_parallel_save_splits_the_writing_between_replicas(tmp_path):
    from taggant.pipeline.train.model import build_model

    written = {}
    for fully_parallel in (False, True):
        run_dir = str(tmp_path / str(fully_parallel))
        os.makedirs(run_dir)
        run_ranks(2, save_replicated_weights, run_dir, fully_parallel)
        folder = Path(checkpoint.step_dir(run_dir, 1))
        written[fully_parallel] = [
            sum(f.stat().st_size for f in folder.glob(f"__{rank}_*.distcp")) for rank in (0, 1)
        ]
        loaded = checkpoint.load_model(run_dir, 1).state_dict()
        initial = build_model(config(1, ()).model, seed=0).state_dict()
        for name, value in initial.items():
            if torch.is_tensor(value):
                assert torch.equal(loaded[name], value), name
    print(f"bytes written by rank 0, rank 1: {written}")
    assert written[False][1] < 0.05 * written[False][0]  # the first replica writes everything
    low, high = sorted(written[True])
    assert low > 0.3 * (low + high)  # each replica writes a share
