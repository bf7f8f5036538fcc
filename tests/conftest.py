"""Shared fixtures: a real corpus (a pinned snapshot of Debian's own documentation files,
``tests.corpus``) and a real local Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taggant.pipeline import corpora
from tests import s3
from tests.corpus import pinned_docs

# The `ray` marker is enforced (tests.tiers), so `make test-fast` cannot start Ray.
pytest_plugins = ["tests.tiers"]

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Set before any Ray starts, so its workers inherit them: s3:// reaches the `s3_server` fixture.
os.environ.update(s3.ENV)

BROKEN_RECORDS: list[tuple[bytes, str]] = [
    (b'{"id": "b-json", "text": "cut off', "bad_json"),
    (b'{"id": "b-latin1", "text": "caf\xe9"}', "bad_utf8"),
    (b'{"id": "b-surrogate", "text": "lone \\ud800 half"}', "bad_utf8"),
    (b'{"id": "b-notext", "body": "the text is under another key"}', "missing_text"),
    (b'{"id": "b-null", "text": null}', "missing_text"),
    (b'{"id": "b-empty", "text": "  \\n\\t "}', "empty_text"),
    (b'{"id": "b-number", "text": 42}', "not_a_string"),
    (b'["an", "array"]', "not_an_object"),
    (b'{"id": {"nested": 1}, "text": "an id that is not a string"}', "bad_id"),
    (b'{"id": "b-huge", "text": "' + b"x" * 1_200_000 + b'"}', "too_large"),
]
"""One broken JSONL line per quarantine reason, with the reason ingest must give it."""


@pytest.fixture(scope="session")
def debian_corpus(tmp_path_factory) -> Path:
    """A folder with the Debian copyright files as JSONL.zst (real text, natural near-duplicates)
    and ``broken.jsonl``: every kind of bad record plus two good ones, one without an id."""
    root = tmp_path_factory.mktemp("corpus")
    corpora.write_jsonl_zst(pinned_docs("copyright"), root / "debian-copyright.jsonl.zst")
    good = [
        b'{"id": "g-1", "text": "A good record between broken ones."}',
        b'{"text": "A good record without an id."}',
    ]
    lines = [good[0], *[raw for raw, _ in BROKEN_RECORDS], good[1]]
    (root / "broken.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return root


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback (``tests.s3``); s3:// URLs reach it through the environment."""
    with s3.moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def local_ray():
    """A real local Ray (not local_mode) shared by the tests of one session."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def smollm2_hf(tmp_path_factory) -> Path:
    """SmolLM2-135M as a local Hugging Face folder (``tests.smollm2``); skips without the GGUF."""
    from tests import smollm2

    return smollm2.hf_folder(tmp_path_factory.mktemp("smollm2"))


TINY_SPEC = {
    "name": "tiny",
    "seed": 7,
    "dedup": {"threshold": 0.8},
    "perturbations": [
        {
            "kind": "canary",
            "name": "canaries",
            "count": 24,
            "dup_levels": [2, 16],
            "control_frac": 0.25,
            "secret_length": 4,
            "num_references": 100,
        },
        {
            "kind": "canary",
            "name": "early",
            "count": 8,
            "dup_levels": [16],
            "control_frac": 0.5,
            "secret_length": 4,
            "num_references": 100,
            "phase": {"start_frac": 0.0, "end_frac": 0.4},
        },
    ],
    "tokenizer": {"kind": "bpe", "vocab_size": 512, "train_bytes": 300_000},
    "runs": {
        "model_sizes": ["tiny-2m"],
        "train_tokens": [40_960],
        "seq_length_tokens": 64,
        "global_batch_sequences": 4,
        "micro_batch_sequences": 4,
        "lr_schedule": "constant",
        "lr": 3.0e-3,
    },
    "checkpoints": {"log_spaced": 2, "interval_steps": 80, "after_window_steps": [10]},
    "probes": {
        "names": ["loss", "zlib_ratio", "min_k", "min_k_plus_plus", "exact_match"],
        "prefix_tokens": 8,
        "suffix_tokens": 8,
    },
}
"""A whole experiment small enough for the test suite: 160 steps of a tiny model and its twin,
checkpoints at steps 1, 9, 64 (the early window closes), 74, 80 and 160. Secrets of 4 words keep
each canary inside a 64-token sample; batches of 4 make 16 exposures enough to memorize: the
canaries seen 16 times end ~0.9–1.9 nats below the controls over seeds 1–5 and 7 (the twin: ±0.1).
100 reference secrets a canary (the default is 1000) are enough for exposure's skew-normal fit and
keep ``taggant probe --probes exposure`` to seconds (1000 took 107 s)."""


def tiny_spec_file(folder: Path, corpus: Path) -> Path:
    """Write ``TINY_SPEC`` with its corpus and folders under ``folder``."""
    import yaml

    spec = {
        **TINY_SPEC,
        "corpus": {"paths": [str(corpus / "debian-copyright.jsonl.zst")]},
        "work_dir": str(folder / "work"),
        "store": {"url": str(folder / "store")},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="session")
def tiny_experiment(debian_corpus, tmp_path_factory, local_ray) -> Path:
    """The tiny experiment run end to end (``taggant run``) on the session's local Ray; returns its
    spec file (``work_dir`` and the store sit beside it)."""
    from taggant.jobs.cli import main

    spec = tiny_spec_file(tmp_path_factory.mktemp("tiny"), debian_corpus)
    assert main(["run", str(spec)]) == 0
    return spec
