"""The tokenize stage on a real local Ray: the same bytes as its steps run in one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from taggant.jobs import tokenize as tokenize_job
from taggant.pipeline import io
from taggant.pipeline.tokenize import TokenizeFolder
from tests.pipeline.test_tokenize import (
    debian_paragraphs,
    make_spec,
    perturbed_run,
    plan_manifests,
    tokenize_locally,
    write_corpus_shards,
)

STAGE_SIDECARS = {"_SUCCESS", "spec.yaml", "stats.json"}


def files(folder: str) -> dict[str, bytes]:
    root = Path(folder)
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.ray
def test_ray_stage_writes_the_bytes_of_the_single_process_steps(local_ray, tmp_path):
    spec = make_spec(tmp_path)
    docs = debian_paragraphs(500_000)
    corpus = write_corpus_shards(tmp_path / "corpus", docs, num_shards=5)
    manifests = plan_manifests(tmp_path / "plan", spec)

    stats = tokenize_job.run(spec, str(tmp_path / "ray"), corpus, manifests)
    local = tokenize_locally(spec, str(tmp_path / "local"), corpus, manifests)

    on_ray = files(str(tmp_path / "ray"))
    expected = {
        name: data
        for name, data in files(local.root).items()
        if name not in STAGE_SIDECARS and not name.startswith("stats/")
    }
    assert {n for n in on_ray if not n.startswith("stats/")} == set(expected)
    for name, data in expected.items():
        assert on_ray[name] == data, name
    shard_stats = [
        io.read_json(TokenizeFolder(str(tmp_path / "ray")).shard_stats(i)) for i in range(5)
    ]
    assert stats["shards"] == 5 and stats["docs"] == len(docs) == sum(
        s["docs"] for s in shard_stats
    )
    assert stats["bytes"] == sum(len(d["text"].encode()) for d in docs)
    assert stats["tokens"] == sum(s["tokens"] for s in shard_stats)
    assert stats["occurrences"] == {perturbed_run(spec): spec.perturbations[0].num_occurrences}


def test_stage_config_follows_what_the_output_depends_on(tmp_path):
    spec = make_spec(tmp_path)
    config = tokenize_job.stage_config(spec)
    same = spec.model_copy(update={"runs": spec.runs.model_copy(update={"lr": 0.5})})
    assert tokenize_job.stage_config(same) == config
    longer = spec.model_copy(
        update={"runs": spec.runs.model_copy(update={"seq_length_tokens": 256})}
    )
    assert tokenize_job.stage_config(longer)["orders"] != config["orders"]
    vocab = spec.model_copy(
        update={"tokenizer": spec.tokenizer.model_copy(update={"vocab_size": 1024})}
    )
    assert tokenize_job.stage_config(vocab) != config
    path = tmp_path / "tokenizer.json"
    path.write_text("{}")
    from_file = spec.model_copy(
        update={"tokenizer": spec.tokenizer.model_copy(update={"kind": "file", "path": str(path)})}
    )
    first = tokenize_job.stage_config(from_file)["tokenizer_sha256"]
    path.write_text('{"changed": true}')
    assert tokenize_job.stage_config(from_file)["tokenizer_sha256"] != first
