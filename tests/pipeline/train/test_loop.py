"""The training loop in this process (world size 1, gloo) on real tokenized text: the loss falls,
a resumed run continues exactly like an uninterrupted one, commands are idempotent, checkpoints are
committed with their records, and probes load them."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from taggant.pipeline.errors import DataError
from taggant.pipeline.train import checkpoint, progress
from taggant.pipeline.train.loop import TrainConfig
from taggant.pipeline.train.model import ModelConfig
from tests.pipeline.train.ranks import ArraySamples, changelog_samples

# Each test trains (26 s in all here, megatron's import aside): not for `make test-fast`.
pytestmark = pytest.mark.slow
SEQ = 64
VOCAB = 500  # not a multiple of 128: the embedding is padded to 512


@pytest.fixture(scope="module")
def samples() -> ArraySamples:
    return changelog_samples(SEQ, VOCAB)


def config(
    num_steps: int, checkpoint_steps: tuple[int, ...], lr: float = 3e-3, **layout
) -> TrainConfig:
    """A tiny model's run; ``layout``: other ``TrainConfig`` fields (parallel sizes, progress)."""
    return TrainConfig(
        model=ModelConfig(
            num_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            ffn_hidden_size=176,
            vocab_size=VOCAB,
            seq_length=SEQ,
        ),
        seed=0,
        num_steps=num_steps,
        global_batch_sequences=8,
        micro_batch_sequences=4,
        lr=lr,
        min_lr=lr / 10,
        lr_schedule="cosine",
        warmup_steps=2,
        weight_decay=0.01,
        checkpoint_steps=checkpoint_steps,
        **{"tensor_parallel_size": 1, **layout},
    )


def test_loss_falls_on_real_text_and_progress_is_recorded(samples, trainers, tmp_path):
    run_dir = str(tmp_path)
    trainer = trainers(config(40, (25,), log_interval_steps=10, tensorboard=True), samples, run_dir)
    result = trainer.train_until(40)
    losses = [loss for _, loss in result["losses"]]
    assert [step for step, _ in result["losses"]] == list(range(1, 41))
    assert losses[0] == pytest.approx(np.log(VOCAB), abs=0.3)  # uniform guess at init
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0

    # One progress record per 10 steps: the window's mean loss, the lr of its last step.
    records = progress.read_metrics(run_dir)
    log = checkpoint.read_train_log(run_dir)
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    for r in records:
        window = losses[r["step"] - 10 : r["step"]]
        assert r["loss"] == pytest.approx(np.mean(window), rel=1e-9)
        assert r["lr"] == log[r["step"]]["lr"] and r["interval_steps"] == 10
        assert r["tokens_per_s"] > 0 and r["eta_s"] >= 0
    # The ETA extrapolates the window's own pace to the last step (no timing is asserted: the
    # pace itself depends on the machine's load).
    for r in records:
        seconds_per_step = 8 * SEQ / r["tokens_per_s"]
        assert r["eta_s"] == pytest.approx((40 - r["step"]) * seconds_per_step, rel=1e-9)
    assert records[-1]["eta_s"] == 0
    trainer.progress.close()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.join(run_dir, progress.TENSORBOARD))
    events.Reload()
    scalars = events.Scalars("train/loss")
    assert [e.step for e in scalars] == [10, 20, 30, 40]
    assert [e.value for e in scalars] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    assert {"train/lr", "train/tokens_per_s"} <= set(events.Tags()["scalars"])


def test_resume_continues_exactly_like_the_uninterrupted_run(samples, trainers, tmp_path):
    run_dir = str(tmp_path)
    first = trainers(config(10, (5, 6), log_interval_steps=2), samples, run_dir)
    uninterrupted = first.train_until(8)["losses"]
    weights = first.weights_digest()
    # The run dies after step 8, while step 6's shards were written but not committed.
    os.remove(os.path.join(checkpoint.step_dir(run_dir, 6), checkpoint.COMMIT))
    assert checkpoint.committed_steps(run_dir) == [5]

    resumed = trainers(config(10, (5, 6), log_interval_steps=2), samples, run_dir)
    assert resumed.step == 5
    assert resumed.train_until(8)["losses"] == uninterrupted[5:]
    assert resumed.weights_digest() == weights
    assert checkpoint.committed_steps(run_dir) == [5, 6]  # the cut-off save was cleared and redone
    log = checkpoint.read_train_log(run_dir)
    assert sorted(log) == list(range(1, 9))
    assert [log[s]["samples"] for s in (1, 8)] == [[0, 8], [56, 64]]
    # Steps 6–8 were trained twice; the logs hold each step once (the resumed run's records).
    for name, steps in ((checkpoint.TRAIN_LOG, range(1, 9)), (progress.METRICS, (2, 4, 6, 8))):
        with open(os.path.join(run_dir, name)) as f:
            assert [json.loads(line)["step"] for line in f] == list(steps), name
    assert [log[s]["loss"] for s in (6, 7, 8)] == [loss for _, loss in uninterrupted[5:]]


def test_dropping_the_records_after_a_step_keeps_the_earlier_ones(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"step": s, "x": s * 10}) + "\n" for s in (1, 2, 3, 2, 3)))
    checkpoint.drop_records_after(str(path), 2)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"step": 1, "x": 10},
        {"step": 2, "x": 20},
        {"step": 2, "x": 20},
    ]
    checkpoint.drop_records_after(str(tmp_path / "missing.jsonl"), 2)
    assert not (tmp_path / "missing.jsonl").exists()


def test_train_until_is_idempotent(samples, trainers, tmp_path):
    trainer = trainers(config(6, (3, 6)), samples, str(tmp_path))
    assert len(trainer.train_until(4)["losses"]) == 4
    again = trainer.train_until(4)
    assert again["losses"] == [] and again["step"] == 4
    assert trainer.train_until(2)["step"] == 4  # never goes back
    # A restarted rank re-running "train until 6" resumes from step 3 and trains what is missing.
    restarted = trainers(config(6, (3, 6)), samples, str(tmp_path))
    assert [step for step, _ in restarted.train_until(6)["losses"]] == [4, 5, 6]


def test_checkpoints_are_committed_with_step_and_tokens(samples, trainers, tmp_path):
    run_dir = str(tmp_path)
    trainers(config(4, (1, 3, 4)), samples, run_dir).train_until(4)
    assert checkpoint.committed_steps(run_dir) == [1, 3, 4]
    record = checkpoint.read_commit(run_dir, 3)
    assert record["step"] == 3
    assert record["samples_seen"] == 24 and record["tokens_seen"] == 24 * SEQ
    assert record["model"] == config(4, ()).model.to_dict()
    # The probe stage reads whether the run keeps TensorBoard views from here.
    assert record["train"]["tensorboard"] is False
    assert record["train"]["pipeline_parallel_size"] == 1
    tracker = os.path.join(checkpoint.checkpoints_dir(run_dir), checkpoint.TRACKER)
    assert Path(tracker).read_text() == "4\n"


def test_probes_load_a_checkpoint_as_the_trainer_left_it(samples, trainers, tmp_path):
    run_dir = str(tmp_path)
    trainer = trainers(config(3, (3,)), samples, run_dir)
    trainer.train_until(3)
    tokens = torch.from_numpy(samples.read(0, 2)[:, :-1].astype(np.int64))
    model = checkpoint.load_model(run_dir, 3)
    with torch.no_grad():
        expected = trainer.model.module(tokens, None, None)
        logits = model(tokens, None, None)
    assert logits.shape == (2, SEQ, config(3, ()).model.padded_vocab_size)
    assert torch.equal(logits, expected)
    logits_fn = checkpoint.load_logits_fn(run_dir, 3)  # what pipeline.probe consumes
    assert torch.equal(logits_fn(tokens.numpy()), expected[..., :VOCAB])


def test_a_stream_of_another_shape_is_refused(samples, trainers, tmp_path):
    short = ArraySamples(samples.rows[:, :33])
    with pytest.raises(DataError, match="sequences of 32 tokens but the run trains on 64"):
        trainers(config(4, ()), short, str(tmp_path))
    with pytest.raises(DataError, match="has 16 samples but 4 steps need 32"):
        trainers(config(4, ()), ArraySamples(samples.rows[:16]), str(tmp_path))
