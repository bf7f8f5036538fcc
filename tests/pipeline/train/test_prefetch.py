"""The prefetching sample reader: results in key order whatever the depth, a failure on its thread
raised in the caller's with its traceback (never a hang), a clean stop on close and on an
interrupt; and a real megatron training on CPU that reads ahead gives the same losses and weights
as one that reads at each step's start."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import traceback

import pytest

from taggant.pipeline.errors import DataError
from taggant.pipeline.train.prefetch import Prefetcher


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_results_come_in_key_order_and_each_key_is_read_once(depth):
    calls: list[tuple[int, str]] = []

    def load(key: int) -> list[int]:
        calls.append((key, threading.current_thread().name))
        return [key, key * key]

    with Prefetcher(load, range(3, 9), depth, name="reader") as reader:
        got = [reader.get(k) for k in range(3, 9)]
    assert got == [[k, k * k] for k in range(3, 9)]
    assert [k for k, _ in calls] == list(range(3, 9))
    threads = {name for _, name in calls}
    assert threads == ({"reader"} if depth else {threading.current_thread().name})


def test_a_failure_on_the_thread_is_raised_in_the_caller_with_its_traceback():
    def load(key: int) -> int:
        if key == 2:
            raise DataError(f"sample {key} is garbled")
        return key

    with Prefetcher(load, range(5), depth=2) as reader:
        assert [reader.get(k) for k in (0, 1)] == [0, 1]
        with pytest.raises(DataError, match="sample 2 is garbled") as raised:
            reader.get(2)
    frames = [f.name for f in traceback.extract_tb(raised.value.__traceback__)]
    assert "load" in frames  # the frame that raised, on the other thread
    assert any("while reading key 2" in note for note in raised.value.__notes__)


def test_the_thread_stops_on_close_while_the_queue_is_full():
    started = threading.Event()

    def load(key: int) -> int:
        started.set()
        return key

    reader = Prefetcher(load, range(1000), depth=1)
    started.wait()
    assert reader.get(0) == 0
    reader.close()  # the thread is blocked putting key 2 into the full queue
    reader._thread.join(timeout=5)
    assert not reader._thread.is_alive()


INTERRUPTED = """
import os, signal, sys, threading, time
from taggant.jobs.runtime import Interrupted, stop_on_signals
from taggant.pipeline.train.prefetch import Prefetcher

stuck = threading.Event()

def load(key):
    if key == 1:
        stuck.wait()  # a read that never returns (a hung mount)
    return key

try:
    with stop_on_signals(), Prefetcher(load, range(3), depth=2) as reader:
        reader.get(0)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        reader.get(1)  # waits on the stuck thread until the signal arrives
except Interrupted as e:
    print("interrupted", e.signal_name, flush=True)
    sys.exit(e.exit_code)
"""


def test_an_interrupt_while_waiting_on_the_thread_ends_the_process():
    # The reading thread is stuck forever; the interrupt must still end the process.
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(INTERRUPTED)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.stdout.strip() == "interrupted SIGTERM", result.stderr
    assert result.returncode == 128 + signal.SIGTERM


@pytest.mark.slow
def test_training_reads_the_same_samples_with_and_without_prefetch(trainers, tmp_path):
    from tests.pipeline.train.ranks import changelog_samples
    from tests.pipeline.train.test_loop import SEQ, VOCAB, config

    samples = changelog_samples(SEQ, VOCAB)
    runs = {}
    for depth in (0, 2):
        run_dir = tmp_path / f"prefetch{depth}"
        run_dir.mkdir()
        trainer = trainers(config(6, (6,), prefetch_steps=depth), samples, str(run_dir))
        losses = trainer.train_until(6)["losses"]
        runs[depth] = (losses, trainer.weights_digest())
    assert runs[0] == runs[2]
    assert [step for step, _ in runs[2][0]] == list(range(1, 7))
