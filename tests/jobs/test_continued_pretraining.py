"""Continued pretraining with insertions: ``taggant run`` starts a run from a real pretrained Llama
(SmolLM2-135M as a local Hugging Face folder, with its own tokenizer.json), inserts canaries while
it trains on real Debian text, and the probe stage finds the inserted canaries below their
never-inserted controls; the run's last checkpoint exports back to Hugging Face."""

import json

import pyarrow.compute as pc
import pytest
import yaml

from taggant.jobs import graph
from taggant.jobs.cli import main
from taggant.pipeline import corpora, store
from taggant.pipeline.spec import load_spec
from taggant.pipeline.train import checkpoint, hf
from tests.corpus import pinned_docs

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS = 12
DUP = 4


def smollm2_spec(folder, model) -> dict:
    """8 canaries inserted 4 times and 8 never inserted, in 12 steps of 4 × 64 tokens of 150
    Debian copyright files: small enough for the suite (each 135M step takes seconds on CPU)."""
    corpus = folder / "corpus.jsonl.zst"
    corpora.write_jsonl_zst(pinned_docs("copyright")[:150], corpus)
    return {
        "name": "smollm2-continued",
        "seed": 5,
        "work_dir": str(folder / "work"),
        "corpus": {"paths": [str(corpus)]},
        "perturbations": [
            {
                "kind": "canary",
                "name": "canaries",
                "count": 16,
                "dup_levels": [DUP],
                "control_frac": 0.5,
                "secret_length": 4,
                "num_references": 10,
            }
        ],
        "tokenizer": {"kind": "file", "path": str(model / "tokenizer.json")},
        "runs": {
            "init_from_hf": str(model),
            "model_sizes": ["smollm2-135m"],
            "train_tokens": [STEPS * 4 * 64],
            "seq_length_tokens": 64,
            "global_batch_sequences": 4,
            "micro_batch_sequences": 4,
            "lr": 3e-4,
            "lr_schedule": "constant",
            "warmup_frac": 0.0,
            "weight_decay": 0.0,
            "standard_twin": False,
        },
        "checkpoints": {"log_spaced": 0, "interval_steps": STEPS, "after_window_steps": []},
        "probes": {"names": ["loss"], "prefix_tokens": 8, "suffix_tokens": 8},
        "store": {"url": str(folder / "store")},
    }


def test_canaries_inserted_into_continued_pretraining_of_smollm2_show_the_gap(
    smollm2_hf, tmp_path, local_ray
):
    spec_file = tmp_path / "smollm2.yaml"
    spec_file.write_text(yaml.safe_dump(smollm2_spec(tmp_path, smollm2_hf)))
    assert main(["run", str(spec_file), "--until", "probe"]) == 0
    spec = load_spec(spec_file)
    folders = {s.key.name: s.folder for s in graph.build(spec)}
    [run_id] = spec.runs.grid()
    run_dir = f"{folders['train']}/{run_id.name}"
    record = json.loads(open(f"{folders['train']}/init-hf/{hf.IMPORT_RECORD}").read())
    assert record["model"]["num_layers"] == 30 and record["model"]["vocab_size"] == 49152
    assert checkpoint.committed_steps(run_dir) == [STEPS]

    rows = store.read_probes(spec.store.url)
    secret = rows.filter(
        pc.and_(pc.equal(rows["metric"], "nll_mean"), pc.equal(rows["step"], STEPS))
    ).to_pandas()
    secret = secret[secret["item_id"] != secret["set"]]
    by_level = secret.groupby("dup_level")["value"].mean()
    # Measured (seed 5): controls 7.70 nats per secret token, ×4 members 3.57 (8 items each).
    assert by_level[DUP] < by_level[0] - 0.5, by_level.to_dict()

    out = tmp_path / "export"
    assert main(["export", run_dir, "--hf", str(out), "--experiment", spec.name]) == 0
    assert json.loads((out / hf.EXPORT_META).read_text())["tokens_seen"] == STEPS * 4 * 64
