"""The precision probes load checkpoints in: bf16 when watchers hold a GPU, fp32 otherwise (a
choice of the spec, recorded in every row's probe configuration), and a checkpoint loaded in bf16
(run here on CPU, the same code a GPU watcher runs) holds every weight in bf16 and gives fp32
logits within bf16 rounding of the fp32 ones."""

import numpy as np
import pytest
import torch

from taggant.pipeline.probe.registry import probe_config
from taggant.pipeline.spec import ProbesSpec, WatcherSpec
from taggant.pipeline.train import checkpoint
from tests.pipeline.train.ranks import changelog_samples
from tests.pipeline.train.test_loop import SEQ, VOCAB, config


def test_probes_run_in_bf16_when_watchers_hold_a_gpu_and_the_rows_say_so():
    on_cpu, on_gpu = ProbesSpec(), ProbesSpec(watcher=WatcherSpec(num_gpus=1))
    assert (on_cpu.precision, on_gpu.precision) == ("float32", "bfloat16")
    assert probe_config(on_cpu) != probe_config(on_gpu)
    # Where a CPU watcher runs and what it takes changes no row.
    on_head = ProbesSpec(watcher=WatcherSpec(num_cpus=4, threads=2, on_head=True))
    assert probe_config(on_head) == probe_config(on_cpu)


@pytest.mark.slow
def test_a_checkpoint_loads_in_bf16_with_logits_close_to_fp32(trainers, tmp_path):
    samples = changelog_samples(SEQ, VOCAB)
    trainers(config(3, (3,)), samples, str(tmp_path)).train_until(3)
    tokens = samples.read(0, 4)[:, :-1].astype(np.int64)

    model = checkpoint.load_model(str(tmp_path), 3, "bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    full = checkpoint.load_logits_fn(str(tmp_path), 3)(tokens)  # fp32 by default
    half = checkpoint.load_logits_fn(str(tmp_path), 3, "bfloat16")(tokens)
    assert full.dtype == half.dtype == torch.float32 and half.shape == full.shape
    assert not torch.equal(half, full)  # it did run in bf16
    # bf16 keeps 8 bits of mantissa: each layer rounds to ~0.4%; logits here are O(1).
    torch.testing.assert_close(half, full, atol=0.1, rtol=0.05)
    assert (half.argmax(-1) == full.argmax(-1)).float().mean() > 0.9
