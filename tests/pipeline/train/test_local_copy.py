"""The node-local copy of the base dataset: copied once per node (several processes asking at once
included), complete and byte-identical, copied again when the source or the copy changed, refused
with the fix when the disk is too small; a run read through a local copy gives the samples of the
shared one, and a DP=2 run on Ray trained from a local copy ends with the weights of one trained
from the shared volume."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from taggant.pipeline.errors import DataError
from taggant.pipeline.tokenize import TokenizeFolder
from taggant.pipeline.train.local_copy import RECORD, LocalCopy, copy_dataset
from tests.jobs.test_train import tokenized, trained  # noqa: F401 (fixtures: a DP=2 Ray run)


@pytest.fixture
def dataset(tmp_path: Path) -> str:
    """A dataset prefix on the "shared volume": random bytes as its .bin and .idx."""
    shared = tmp_path / "shared"
    shared.mkdir()
    rng = np.random.default_rng(0)
    (shared / "base.bin").write_bytes(rng.bytes(3 << 20))
    (shared / "base.idx").write_bytes(rng.bytes(4096))
    return str(shared / "base")


def contents(prefix: str) -> tuple[bytes, bytes]:
    return tuple(Path(prefix + s).read_bytes() for s in (".bin", ".idx"))


def test_the_copy_is_made_once_and_equals_the_source(dataset, tmp_path):
    local_dir = str(tmp_path / "nvme")
    first = copy_dataset(dataset, local_dir)
    assert first.copied and first.prefix.startswith(local_dir)
    assert contents(first.prefix) == contents(dataset)
    folder = os.path.dirname(first.prefix)
    assert sorted(os.listdir(folder)) == sorted(
        [".lock", RECORD, "base.bin", "base.idx"]
    )  # no tmp left
    again = copy_dataset(dataset, local_dir)
    assert again == LocalCopy(first.prefix, copied=False)


def _copy(dataset: str, local_dir: str, queue) -> None:
    queue.put(copy_dataset(dataset, local_dir).copied)


def test_ranks_asking_at_once_make_one_copy(dataset, tmp_path):
    local_dir = str(tmp_path / "nvme")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    ranks = [context.Process(target=_copy, args=(dataset, local_dir, queue)) for _ in range(3)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=120)
    assert [p.exitcode for p in ranks] == [0, 0, 0]
    assert sorted(queue.get(timeout=5) for _ in ranks) == [False, False, True]


def test_a_changed_source_or_a_touched_copy_is_copied_again(dataset, tmp_path):
    local_dir = str(tmp_path / "nvme")
    prefix = copy_dataset(dataset, local_dir).prefix
    with open(prefix + ".bin", "r+b") as f:  # the local copy is damaged (cut short)
        f.truncate(1 << 20)
    assert copy_dataset(dataset, local_dir).copied
    assert contents(prefix) == contents(dataset)

    Path(dataset + ".idx").write_bytes(b"re-tokenized")  # the source is rewritten
    assert copy_dataset(dataset, local_dir).copied
    assert contents(prefix) == contents(dataset)


def test_a_disk_too_small_is_refused_with_the_fix(dataset, tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1024))
    with pytest.raises(DataError, match=r"runs.local_copy_dir: .* needs \d+ bytes") as raised:
        copy_dataset(dataset, str(tmp_path / "nvme"))
    assert "leave it unset" in str(raised.value)


def test_an_uncreatable_local_dir_names_the_field(dataset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="runs.local_copy_dir: cannot create"):
        copy_dataset(dataset, str(blocker / "nvme"))


@pytest.mark.slow
def test_a_run_reads_the_same_samples_from_its_local_copy(tmp_path):
    from taggant.pipeline import data
    from tests.pipeline.test_data import prepare
    from tests.pipeline.test_tokenize import (
        debian_paragraphs,
        make_spec,
        plan_manifests,
        tokenize_locally,
        write_corpus_shards,
    )

    spec = make_spec(tmp_path)
    corpus = write_corpus_shards(tmp_path / "corpus", debian_paragraphs())
    plan = plan_manifests(tmp_path / "plan", spec)
    out = tokenize_locally(spec, str(tmp_path / "tokenize"), corpus, plan)
    perturbed, _ = prepare(tmp_path, spec, out)
    local_dir = str(tmp_path / "nvme")

    shared = data.open_training_samples(perturbed)
    local = data.open_training_samples(perturbed, local_copy_dir=local_dir)
    assert local.stream.dataset.dataset.path_prefix.startswith(local_dir)
    assert shared.stream.dataset.dataset.path_prefix == out.base_prefix
    assert np.array_equal(local.read(0, len(local)), shared.read(0, len(shared)))
    assert local.stream.digest() == shared.stream.digest()


@pytest.mark.ray
@pytest.mark.slow
def test_a_ray_run_trains_from_its_local_copy_to_the_same_weights(request, tmp_path):
    # The DP=2 run of tests/jobs/test_train.py again, its ranks reading a node-local copy and
    # reading synchronously: same samples in the same order, so bit-identical weights on CPU.
    from taggant.jobs import train as train_job

    spec, tokenize_folder = request.getfixturevalue("tokenized")
    local_dir = tmp_path / "nvme"
    runs = spec.runs.model_copy(update={"local_copy_dir": str(local_dir), "prefetch_steps": 0})
    stats = train_job.run(spec.model_copy(update={"runs": runs}), str(tmp_path), tokenize_folder)
    [(_, run_stats)] = stats["runs"].items()
    reference, _ = request.getfixturevalue("trained")
    assert run_stats["weights_digests"] == reference["weights_digests"]
    [copy] = [p for p in local_dir.iterdir() if p.is_dir()]  # one copy for the node's two ranks
    base = os.path.basename(TokenizeFolder(tokenize_folder).base_prefix)
    assert sorted(p.name for p in copy.iterdir()) == sorted(
        [".lock", RECORD, f"{base}.bin", f"{base}.idx"]
    )
