"""The train stage on a real local Ray with real megatron-core: a tiny model trains at data-parallel
size 2 over the real sample stream (tokenized Debian changelogs plus the overlay of a manifest),
its replicas stay in sync, it memorizes a canary inserted 64 times, and a run whose rank is killed
resumes from its last committed checkpoint to the very weights of an uninterrupted run."""

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
import torch

from taggant.jobs import tokenize as tokenize_job
from taggant.jobs import train as train_job
from taggant.pipeline import io, manifest, stage, tokenize
from taggant.pipeline.errors import DataError
from taggant.pipeline.perturb import plan
from taggant.pipeline.spec import parse_spec
from taggant.pipeline.stage import StageKey
from taggant.pipeline.train import checkpoint
from taggant.pipeline.train.schedule import run_checkpoint_steps
from tests.corpus import pinned_docs

pytestmark = pytest.mark.ray

STEPS = 100
CANARY = "Quillon Varga's passphrase is amber cobalt thimble orchid lantern gravel."
CONTROL = "Mirela Tosk's passphrase is velvet harbor pistol meadow copper falcon."


def experiment(tmp_path, corpus: str):
    return parse_spec(
        {
            "name": "train-test",
            "seed": 1,
            "work_dir": str(tmp_path),
            "corpus": {"paths": [corpus]},
            "perturbations": [
                {
                    "kind": "canary",
                    "name": "canary",
                    "count": 2,
                    "dup_levels": [64],
                    "control_frac": 0.5,
                }
            ],
            "tokenizer": {"kind": "bpe", "vocab_size": 512, "train_bytes": 300_000},
            "runs": {
                "model_sizes": ["tiny-2m"],
                "train_tokens": [STEPS * 8 * 64],
                "seq_length_tokens": 64,
                "global_batch_sequences": 8,
                "micro_batch_sequences": 4,
                "data_parallel_size": 2,
                "lr": 1e-3,
                "lr_schedule": "constant",
                "standard_twin": False,
            },
            "checkpoints": {"log_spaced": 2, "interval_steps": 50, "after_window_steps": []},
            "store": {"url": str(tmp_path / "store")},
        }
    )


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, local_ray):
    """A finished tokenize stage: ~0.5 MB of Debian changelogs as one corpus shard, and a manifest
    with one canary inserted 64 times at random samples and one never-inserted control."""
    root = tmp_path_factory.mktemp("train")
    docs, size = [], 0
    for doc in pinned_docs("changelog"):
        docs.append(doc)
        size += len(doc["text"])
        if size > 500_000:
            break
    corpus = str(root / "corpus")
    io.write_table(
        io.join(corpus, "shard-00000.parquet"),
        pa.table(
            {
                "doc_id": [d["id"] for d in docs],
                "text": [d["text"] for d in docs],
                "source": ["debian"] * len(docs),
            }
        ),
    )
    spec = experiment(root, corpus)
    [run_id] = spec.runs.grid()
    items = pa.table(
        {
            "item_id": ["canary/000000", "canary/000001"],
            "set": ["canary"] * 2,
            "kind": ["canary"] * 2,
            "version": ["canary.v1"] * 2,
            "text": [CANARY, CONTROL],
            "prefix_chars": [t.index(" is ") + 3 for t in (CANARY, CONTROL)],
            "token_ids": [[], []],
            "dup_level": [64, 0],
            "phase_start": [0.0] * 2,
            "phase_end": [1.0] * 2,
            "params": ["{}"] * 2,
            "variants": [[], []],
            "variant_token_ids": [[], []],
        }
    )
    num_samples = spec.runs.num_samples(run_id.train_tokens)
    samples = np.sort(np.random.default_rng(0).choice(num_samples, 64, replace=False))
    occurrences = pa.table(
        {
            "item_id": ["canary/000000"] * 64,
            "run": [run_id.name] * 64,
            "sample_index": samples,
            "step": samples // 8,
            "token_offset": [-1] * 64,
            "variant": [-1] * 64,
        }
    )
    manifests = str(root / "manifests")
    order_hash = plan.sample_order_hash(spec.runs, run_id.train_tokens, run_id.seed)
    manifest.write(io.join(manifests, run_id.name), items, occurrences, order_hash)
    folder = str(root / "tokenize")
    stats = tokenize_job.run(spec, folder, corpus, manifests)
    stage.commit(folder, StageKey("tokenize", "test", {}), {}, stats)
    return spec, folder


@pytest.fixture(scope="module")
def trained(tokenized, tmp_path_factory):
    """The run trained without interruption: ``(stats of the run, its run folder)``."""
    spec, tokenize_folder = tokenized
    folder = str(tmp_path_factory.mktemp("uninterrupted"))
    stats = train_job.run(spec, folder, tokenize_folder)
    [(name, run_stats)] = stats["runs"].items()
    return run_stats, os.path.join(folder, name)


def test_a_dp2_run_trains_with_replicas_in_sync(tokenized, trained):
    spec, _ = tokenized
    stats, run_dir = trained
    assert stats["steps"] == STEPS and stats["restarts"] == 0
    assert stats["tokens_seen"] == STEPS * 8 * 64
    assert stats["checkpoints"] == run_checkpoint_steps(spec, STEPS * 8 * 64) == [1, 7, 50, 100]
    for step in stats["checkpoints"]:
        assert checkpoint.read_commit(run_dir, step)["tokens_seen"] == step * 8 * 64
    first, second = stats["weights_digests"]
    assert first == second
    losses = [r["loss"] for r in checkpoint.read_train_log(run_dir).values()]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 1.5


def test_a_canary_inserted_64_times_is_memorized(tokenized, trained):
    _, tokenize_folder = tokenized
    stats, run_dir = trained
    tok = tokenize.TokenizeFolder(tokenize_folder)
    tokenizer = tok.load_tokenizer()
    eod = tokenize.TokenizerInfo.read(tok).eod_id
    items, _, _ = manifest.read(tok.manifest(os.path.basename(run_dir)))
    model = checkpoint.load_model(run_dir, stats["steps"])

    def secret_loss(row) -> float:
        """Mean next-token loss of the item's secret given EOD and its prefix."""
        prefix = len(tokenizer.encode(row["text"][: row["prefix_chars"]]).ids)
        tokens = torch.tensor([eod, *row["token_ids"]])[None]
        with torch.no_grad():
            per_token = model(tokens[:, :-1], None, None, labels=tokens[:, 1:])[0]
        return per_token[prefix:].mean().item()

    loss = {row["dup_level"]: secret_loss(row) for row in items.to_pylist()}
    assert loss[64] < loss[0] - 2.0, loss


def test_a_killed_rank_resumes_to_the_weights_of_the_uninterrupted_run(
    tokenized, trained, tmp_path, local_ray
):
    spec, tokenize_folder = tokenized
    uninterrupted, _ = trained
    [run_id] = spec.runs.grid()
    run_dir = str(tmp_path / run_id.name)
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(train_job.run, spec, str(tmp_path), tokenize_folder)
        while 7 not in checkpoint.committed_steps(run_dir):
            assert not result.done(), result.result()
            time.sleep(0.05)
        local_ray.kill(local_ray.get_actor(train_job.actor_name(spec, run_id, attempt=0, rank=1)))
        stats = result.result()["runs"][run_id.name]

    assert stats["restarts"] == 1
    assert stats["steps"] == STEPS and stats["checkpoints"] == uninterrupted["checkpoints"]
    # Same weights and last loss as the run that was never interrupted: every sample was trained on
    # once, in the same order.
    assert stats["weights_digests"] == uninterrupted["weights_digests"]
    assert stats["final_loss"] == uninterrupted["final_loss"]
    # Steps trained before the kill and again after it read the same samples to the same loss.
    records: dict[int, list] = {}
    with open(os.path.join(run_dir, checkpoint.TRAIN_LOG)) as log:
        for record in map(json.loads, log):
            records.setdefault(record["step"], []).append((record["samples"], record["loss"]))
    assert sorted(records) == list(range(1, STEPS + 1))
    assert all(len(set(map(str, r))) == 1 for r in records.values())
    assert [records[s][0][0] for s in sorted(records)] == [[8 * s, 8 * s + 8] for s in range(STEPS)]


@pytest.mark.slow
def test_tensor_parallel_training_matches_data_parallel_and_reshards_for_probes(
    tokenized, trained, tmp_path
):
    spec, tokenize_folder = tokenized
    data_parallel, _ = trained
    runs = spec.runs.model_copy(update={"data_parallel_size": 1, "tensor_parallel_size": 2})
    spec = spec.model_copy(update={"runs": runs})
    [(name, stats)] = train_job.run(spec, str(tmp_path), tokenize_folder)["runs"].items()
    first, second = stats["weights_digests"]
    assert first != second  # each rank holds its own half of the weights
    # The same global batches through another parallel layout: the same training up to rounding.
    assert stats["final_loss"] == pytest.approx(data_parallel["final_loss"], abs=0.05)
    model = checkpoint.load_model(str(tmp_path / name), STEPS)  # two shards read into one model
    with torch.no_grad():
        logits = model(torch.zeros(1, 8, dtype=torch.long), None, None)
    assert logits.shape == (1, 8, 512)


@pytest.mark.slow
def test_pipeline_parallel_training_through_ray(tokenized, tmp_path):
    spec, tokenize_folder = tokenized
    runs = spec.runs.model_copy(update={"data_parallel_size": 1, "pipeline_parallel_size": 2})
    spec = spec.model_copy(update={"runs": runs})
    [(name, stats)] = train_job.run(spec, str(tmp_path), tokenize_folder)["runs"].items()
    first, second = stats["weights_digests"]
    assert first != second  # each stage holds its own layers
    assert stats["steps"] == STEPS and stats["restarts"] == 0
    losses = [r["loss"] for r in checkpoint.read_train_log(str(tmp_path / name)).values()]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 1.5
    model = checkpoint.load_model(str(tmp_path / name), STEPS)  # two stages read into one model
    with torch.no_grad():
        logits = model(torch.zeros(1, 8, dtype=torch.long), None, None)
    assert logits.shape == (1, 8, 512)


def test_a_data_error_fails_the_run_without_restarts(tokenized, tmp_path):
    spec, _ = tokenized
    [run_id] = spec.runs.grid()
    with pytest.raises(DataError, match="has no run.json"):
        train_job.train_run(spec, run_id, str(tmp_path / "not-prepared"))
