"""Hugging Face in and out on the tiny experiment (``tests.conftest.TINY_SPEC``): ``taggant export``
of a TP=1 checkpoint and of a TP=2 one, each checked against the megatron model's own logits in
``transformers.LlamaForCausalLM`` (float32, CPU); ``taggant probe --hf`` on an export gives the
native probe's rows; the spec's ``checkpoints.export_hf`` exports every committed checkpoint of a
run trained on Ray; ``taggant export-benchmark`` writes members and controls that load back, and no
control's text is in any run's training stream."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from taggant.jobs import graph
from taggant.jobs import train as train_job
from taggant.jobs.cli import main
from taggant.pipeline import benchmark_export, data, manifest
from taggant.pipeline.spec import load_spec
from taggant.pipeline.train import checkpoint, hf
from tests.pipeline.train.ranks import run_ranks

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LOGITS_ATOL = 1e-4
"""Largest |HF − megatron| logit allowed (float32, CPU). Measured: 0 to ~1e-6."""


@pytest.fixture(scope="module")
def tiny(tiny_experiment):
    """``(spec, {stage: folder}, perturbed run folder, standard run folder, spec file)``."""
    spec = load_spec(tiny_experiment)
    folders = {s.key.name: s.folder for s in graph.build(spec)}
    runs = {r.perturbed: os.path.join(folders["train"], r.name) for r in spec.runs.grid()}
    return spec, folders, runs[True], runs[False], tiny_experiment


def real_tokens(run_dir: str, rows: int = 3) -> np.ndarray:
    """Input ids of the run's first training samples: real text and inserted items."""
    return data.open_training_samples(run_dir).read(0, rows)[:, :-1].astype(np.int64)


def hf_logits(folder: str, ids: np.ndarray) -> torch.Tensor:
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    with torch.no_grad():
        return model.eval()(input_ids=torch.from_numpy(ids), use_cache=False).logits


def test_an_exported_checkpoint_gives_the_megatron_logits(tiny, tmp_path, capsys):
    spec, _, run_dir, _, _ = tiny
    step = checkpoint.committed_steps(run_dir)[-1]
    out = tmp_path / "hf"
    assert main(["export", run_dir, "--hf", str(out)]) == 0
    ids = real_tokens(run_dir)
    expected = checkpoint.load_logits_fn(run_dir, step)(ids)
    got = hf_logits(str(out), ids)
    assert got.shape == expected.shape == (3, 64, 512)
    assert (got - expected).abs().max().item() < LOGITS_ATOL

    meta = json.loads((out / hf.EXPORT_META).read_text())
    commit = checkpoint.read_commit(run_dir, step)
    info = data.RunInfo.read(run_dir)
    assert {k: meta[k] for k in ("experiment", "run", "step", "tokens_seen")} == {
        "experiment": spec.name,
        "run": os.path.basename(run_dir),
        "step": step,
        "tokens_seen": commit["tokens_seen"],
    }
    assert meta["manifest_hash"] == hf.manifest_hash(info.manifest)
    assert meta["source_checkpoint"] == checkpoint.step_dir(run_dir, step)
    assert meta["taggant_version"]
    # The tokenizer puts EOD before a text, as every training document followed one.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert tokenizer("copyright")["input_ids"][0] == info.tokenizer["eod_id"]

    again = tmp_path / "again"
    assert main(["export", run_dir, "--step", str(step), "--hf", str(again)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        p.name: p.read_bytes() for p in again.iterdir()
    }  # byte-identical


def _train_tp2_and_logits(config, run_dir: str, ids: list) -> list:
    """One rank of a TP=2 run: train ``config``, then the full logits of ``ids`` (gathered over
    the two vocabulary halves)."""
    from megatron.core import tensor_parallel

    from taggant.pipeline.train.loop import Trainer

    trainer = Trainer(config, data.open_training_samples(run_dir), run_dir)
    trainer.train_until(config.num_steps)
    with torch.no_grad():
        local = trainer.model.module(torch.tensor(ids), None, None)
        full = tensor_parallel.gather_from_tensor_model_parallel_region(local)
    trainer.close()
    return full[..., : config.model.vocab_size].tolist()


def test_a_tensor_parallel_2_checkpoint_exports_to_the_logits_of_its_two_ranks(tiny, tmp_path):
    from taggant.pipeline.train.loop import TrainConfig

    spec, folders, perturbed_dir, _, _ = tiny
    [run_id] = [r for r in spec.runs.grid() if r.perturbed]
    run_dir = str(tmp_path / run_id.name)
    data.prepare_run_dir(run_dir, spec, run_id, folders["tokenize"])
    vocab = data.open_training_samples(run_dir).vocab_size
    config = dataclasses.replace(
        TrainConfig.from_spec(spec, run_id, vocab),
        num_steps=4,
        checkpoint_steps=(4,),
        tensor_parallel_size=2,
    )
    ids = real_tokens(perturbed_dir, 2)
    first, second = run_ranks(2, _train_tp2_and_logits, config, run_dir, ids.tolist())
    assert first == second
    assert checkpoint.read_commit(run_dir, 4)["train"]["tensor_parallel_size"] == 2

    out = tmp_path / "hf"
    assert main(["export", run_dir, "--hf", str(out), "--experiment", spec.name]) == 0
    got = hf_logits(str(out), ids)
    assert (got - torch.tensor(first)).abs().max().item() < LOGITS_ATOL


def test_probe_hf_on_an_export_gives_the_native_rows(tiny, tmp_path):
    _, _, run_dir, _, _ = tiny
    out = tmp_path / "hf"
    assert main(["export", run_dir, "--hf", str(out)]) == 0
    probes = "loss,exact_match,min_k_plus_plus,zlib_ratio"
    native, exported = tmp_path / "native.parquet", tmp_path / "hf.parquet"
    assert main(["probe", "--checkpoint", run_dir, "--probes", probes, "--out", str(native)]) == 0
    assert (
        main(
            [
                "probe",
                "--hf",
                str(out),
                "--run",
                run_dir,
                "--probes",
                probes,
                "--out",
                str(exported),
            ]
        )
        == 0
    )
    a, b = pq.read_table(native).to_pandas(), pq.read_table(exported).to_pandas()
    keys = ["item_id", "set", "kind", "dup_level", "probe", "probe_version", "metric"]
    assert a[keys].equals(b[keys]) and len(a) > 100
    np.testing.assert_allclose(b["value"], a["value"], rtol=1e-4, atol=1e-4)


def test_export_hf_exports_every_committed_checkpoint_of_a_run(tiny, tmp_path, local_ray):
    spec, folders, _, _, _ = tiny
    spec = spec.model_copy(
        update={
            "runs": spec.runs.model_copy(update={"standard_twin": False}),
            "checkpoints": spec.checkpoints.model_copy(update={"export_hf": True}),
        }
    )
    [(name, stats)] = train_job.run(spec, str(tmp_path), folders["tokenize"])["runs"].items()
    run_dir = str(tmp_path / name)
    assert stats["exports"] == stats["checkpoints"] == checkpoint.committed_steps(run_dir)
    ids = real_tokens(run_dir, 2)
    for step in (stats["checkpoints"][0], stats["checkpoints"][-1]):
        folder = hf.export_dir(run_dir, step)
        assert json.loads(Path(folder, hf.EXPORT_META).read_text())["step"] == step
        expected = checkpoint.load_logits_fn(run_dir, step)(ids)
        assert (hf_logits(folder, ids) - expected).abs().max().item() < LOGITS_ATOL


def test_export_benchmark_writes_members_and_controls_that_never_reach_training(
    tiny, tmp_path, capsys
):
    spec, _, perturbed_dir, standard_dir, spec_file = tiny
    out = tmp_path / "bench"
    assert main(["export-benchmark", str(spec_file), "--out", str(out)]) == 0
    items, occurrences, _ = manifest.read(data.RunInfo.read(perturbed_dir).manifest)
    description = json.loads((out / "benchmark.json").read_text())
    assert description["experiment"] == spec.name
    assert description["perturbed_runs"] == [os.path.basename(perturbed_dir)]
    readme = (out / "README.md").read_text()

    texts: dict[str, set[str]] = {"member": set(), "control": set()}
    for pset in spec.perturbations:
        levels = dict(zip(pset.dup_levels, pset.members_per_level()))
        assert description["counts"][pset.name] == {
            "0": pset.num_controls,
            **{str(k): n for k, n in sorted(levels.items())},
        }
        assert f"| {pset.name} | 0 | {pset.num_controls} | non-members (controls) |" in readme
        for level, n in [(0, pset.num_controls), *levels.items()]:
            rows = [
                json.loads(line)
                for line in (out / benchmark_export.open_unlearning_file(pset.name, level)).open()
            ]
            raw = [
                json.loads(line)
                for line in (out / benchmark_export.mimir_file(pset.name, level)).open()
            ]
            assert len(rows) == len(raw) == n
            assert [r["prompt"] + r["text"] for r in rows] == raw
            assert {r["dup_level"] for r in rows} == {level} and {r["set"] for r in rows} == {
                pset.name
            }
            texts["control" if level == 0 else "member"].update(raw)
    assert len(texts["control"]) == int((items["dup_level"].to_numpy() == 0).sum())

    # The item texts as token sequences, searched in every sample each run trains on.
    by_text = dict(zip(items["text"].to_pylist(), items["token_ids"].to_pylist()))
    found = {"member": 0, "control": 0}
    for run_dir in (perturbed_dir, standard_dir):
        samples = data.open_training_samples(run_dir)
        stream = samples.read(0, len(samples))
        for role, role_texts in texts.items():
            for text in role_texts:
                ids = np.asarray(by_text[text], dtype=np.int32)
                windows = np.lib.stride_tricks.sliding_window_view(stream, len(ids), axis=1)
                hits = int((windows == ids).all(axis=-1).sum())
                if role == "control" or run_dir == standard_dir:
                    assert hits == 0, (role, run_dir, text)
                found[role] += hits
    assert found["control"] == 0
    assert found["member"] == occurrences.num_rows  # every occurrence, and no other copy
