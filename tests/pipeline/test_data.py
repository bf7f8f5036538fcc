"""The sample stream and its overlay, on a real tokenized Debian corpus and real megatron-core."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from taggant.pipeline import audit, data, io, manifest
from taggant.pipeline.errors import DataError
from taggant.pipeline.tokenize import TokenizeFolder, TokenizerInfo
from tests.pipeline.test_tokenize import (
    SAMPLES,
    SEQ,
    debian_paragraphs,
    debian_texts,
    make_spec,
    perturbed_run,
    plan_manifests,
    tokenize_locally,
    write_corpus_shards,
)


def prepare(tmp: Path, spec, out: TokenizeFolder, name: str = "") -> tuple[str, str]:
    """Prepare the perturbed run and its twin; returns their run folders."""
    dirs = {}
    for run_id in spec.runs.grid():
        dirs[run_id.perturbed] = str(tmp / f"{name}{run_id.name}")
        data.prepare_run_dir(dirs[run_id.perturbed], spec, run_id, out.root)
    return dirs[True], dirs[False]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data")
    spec = make_spec(tmp)
    corpus = write_corpus_shards(tmp / "corpus", debian_paragraphs())
    plan = plan_manifests(tmp / "plan", spec)
    out = tokenize_locally(spec, str(tmp / "tokenize"), corpus, plan)
    perturbed, twin = prepare(tmp, spec, out)
    items, occurrences, _ = manifest.read(out.manifest(perturbed_run(spec)))
    return SimpleNamespace(
        tmp=tmp,
        spec=spec,
        corpus=corpus,
        plan=plan,
        out=out,
        perturbed=perturbed,
        twin=twin,
        items=items,
        occurrences=occurrences,
        tokens=dict(zip(items["item_id"].to_pylist(), items["token_ids"].to_pylist())),
    )


def test_sample_order_is_megatron_cores_gptdataset(run, tmp_path):
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.tokenizers import MegatronTokenizer

    samples = data.open_training_samples(run.twin)
    config = GPTDatasetConfig(
        random_seed=0,
        sequence_length=SEQ,
        blend=([run.out.base_prefix], None),
        split="100,0,0",
        path_to_cache=str(tmp_path),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        tokenizer=MegatronTokenizer.from_pretrained(
            metadata_path={"library": "byte-level"}, vocab_size=256
        ),
    )
    reference, valid, test = BlendedMegatronDatasetBuilder(
        GPTDataset, [len(samples), None, None], lambda: True, config
    ).build()
    assert valid is None and test is None
    ours = samples.stream.dataset
    for name in ("document_index", "sample_index", "shuffle_index"):
        assert np.array_equal(getattr(ours, name), getattr(reference, name)), name
    rows = samples.read(0, len(samples))
    for i in range(len(samples)):
        assert np.array_equal(rows[i], reference._query_document_sample_shuffle_indices(i)[0])


def test_read_gives_int32_rows_in_training_order(run):
    samples = data.open_training_samples(run.perturbed)
    assert (
        len(samples),
        samples.seq_length,
        samples.global_batch_sequences,
        samples.num_steps,
    ) == (SAMPLES, SEQ, 8, 100)
    assert (samples.eod_id, samples.vocab_size, samples.perturbed) == (0, 512, True)
    rows = samples.read(0, len(samples))
    assert rows.shape == (SAMPLES, SEQ + 1) and rows.dtype == np.int32
    assert np.array_equal(samples.read(123, 140), rows[123:140])
    assert samples.read(5, 5).shape == (0, SEQ + 1)
    assert samples.step_of(17) == 2
    with pytest.raises(IndexError):
        samples.read(790, 801)


def test_twin_and_perturbed_differ_exactly_at_the_occurrence_samples(run):
    perturbed = data.open_training_samples(run.perturbed).read(0, SAMPLES)
    twin = data.open_training_samples(run.twin).read(0, SAMPLES)
    occ = run.occurrences
    assert set(occ["run"].to_pylist()) == {data.RunInfo.read(run.perturbed).run}
    samples = occ["sample_index"].to_pylist()
    assert sorted(samples) == np.flatnonzero((perturbed != twin).any(axis=1)).tolist()
    for item, s, offset in zip(
        occ["item_id"].to_pylist(), samples, occ["token_offset"].to_pylist()
    ):
        ids = run.tokens[item]
        end = offset + len(ids)
        assert perturbed[s, offset - 1] == 0 and perturbed[s, end] == 0
        assert perturbed[s, offset:end].tolist() == ids
        outside = np.r_[0 : offset - 1, end + 1 : SEQ + 1]
        assert np.array_equal(perturbed[s, outside], twin[s, outside])
        # Positions 0 and SEQ are shared with the neighbouring samples in corpus order.
        assert 1 <= offset and end + 1 <= SEQ


def test_occurrences_start_at_natural_document_boundaries_when_one_fits(run):
    twin = data.open_training_samples(run.twin).read(0, SAMPLES)
    occ = run.occurrences
    natural = 0
    for item, s, offset in zip(
        occ["item_id"].to_pylist(), occ["sample_index"].to_pylist(), occ["token_offset"].to_pylist()
    ):
        n = len(run.tokens[item])
        fits = np.flatnonzero(twin[s, : SEQ - n - 1] == 0) + 1
        if fits.size:
            assert offset in fits
            natural += 1
        else:
            assert 2 <= offset <= SEQ - n - 1
    assert natural > 0


def test_place_occurrence_makes_a_boundary_when_there_is_none():
    rng = np.random.default_rng(0)
    no_eod = np.arange(3, 3 + 65)  # a sample of 64 tokens + 1
    offsets = {data.place_occurrence(no_eod, 10, 0, rng) for _ in range(300)}
    assert min(offsets) == 2 and max(offsets) == 64 - 10 - 1
    one_eod = no_eod.copy()
    one_eod[29] = 0
    assert {data.place_occurrence(one_eod, 10, 0, rng) for _ in range(20)} == {30}
    one_eod[60] = 0  # too late for an item of 10 tokens to fit after it
    assert {data.place_occurrence(one_eod, 10, 0, rng) for _ in range(20)} == {30}


def test_same_spec_gives_identical_files_and_stream(run):
    again = tokenize_locally(run.spec, str(run.tmp / "tokenize-again"), run.corpus, run.plan)
    for name in (
        "base.bin",
        "base.idx",
        "documents.parquet",
        "tokenizer.json",
        "tokenizer_info.json",
        "orders.json",
        *(
            f"manifests/{perturbed_run(run.spec)}/{name}"
            for name in ("items.parquet", "occurrences.parquet", "manifest.json")
        ),
    ):
        assert (Path(again.root) / name).read_bytes() == (Path(run.out.root) / name).read_bytes(), (
            name
        )
    perturbed, _ = prepare(run.tmp, run.spec, again, name="again-")
    assert np.array_equal(
        data.open_training_samples(perturbed).read(0, SAMPLES),
        data.open_training_samples(run.perturbed).read(0, SAMPLES),
    )


def test_a_manifest_for_another_sample_order_is_refused(run, tmp_path):
    other_seed = run.spec.runs.grid()[0].model_copy(update={"seed": 1})
    with pytest.raises(DataError, match="holds no manifest"):
        data.prepare_run_dir(str(tmp_path / "seed1"), run.spec, other_seed, run.out.root)
    with pytest.raises(DataError, match="planned for sample order"):
        data.prepare_run_dir(
            str(tmp_path / "seed1"),
            run.spec,
            other_seed,
            run.out.root,
            run.out.manifest(perturbed_run(run.spec)),
        )
    edited = tmp_path / "edited"
    shutil.copytree(run.perturbed, edited)
    info = json.loads((edited / "run.json").read_text())
    info["order"]["seed"] = 1
    (edited / "run.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="was edited"):
        data.open_training_samples(str(edited))
    with pytest.raises(DataError, match="prepare_run_dir"):
        data.open_training_samples(str(tmp_path / "never-prepared"))


def test_audit_passes_on_the_planned_run_and_its_twin(run):
    report = audit.audit(run.perturbed)
    assert report.ok, "\n".join(report.lines())
    assert [c.name for c in report.checks] == [
        "plan",
        "placement",
        "members",
        "controls",
        "twin",
        "twin diff",
    ]
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True
    twin = audit.audit(run.twin)
    assert twin.ok and not twin.perturbed and [c.name for c in twin.checks] == ["no items"]


def test_audit_fails_on_a_tampered_base(run, tmp_path):
    tampered = TokenizeFolder(str(tmp_path / "tokenize"))
    shutil.copytree(run.out.root, tampered.root)
    stream = data.open_training_samples(run.perturbed).stream
    levels = dict(zip(run.items["item_id"].to_pylist(), run.items["dup_level"].to_pylist()))
    member = next(i for i, lvl in levels.items() if lvl > 0)
    control = next(i for i, lvl in levels.items() if lvl == 0)
    free = sorted(set(range(SAMPLES)) - set(run.occurrences["sample_index"].to_pylist()))[:2]
    info = TokenizerInfo.read(tampered)
    tokens = np.memmap(tampered.base_prefix + ".bin", dtype=info.dtype, mode="r+")
    for item, sample in zip((member, control), free):
        ids = [0, *run.tokens[item], 0]
        tokens[stream.token_positions(sample)[3 : 3 + len(ids)]] = ids
    tokens.flush()
    del tokens
    perturbed, twin = prepare(tmp_path, run.spec, tampered)
    report = audit.audit(perturbed)
    assert not report.ok
    failed = {c.name: c for c in report.checks if not c.ok}
    assert set(failed) == {"members", "controls", "twin"}
    assert failed["members"].problems == [f"unplanned: {member} in sample {free[0]}"]
    assert failed["controls"].problems == [f"control {control} in sample {free[1]}"]
    assert not audit.audit(twin).ok


def test_audit_fails_on_a_tampered_manifest(run, tmp_path):
    items, occ = run.items, run.occurrences
    member = occ["item_id"][0].as_py()
    dup = pc.if_else(
        pc.equal(items["item_id"], member), pa.scalar(99, pa.int32()), items["dup_level"]
    )
    items = items.set_column(items.schema.get_field_index("dup_level"), "dup_level", dup)
    step = pc.add(occ["step"], pa.scalar(1, pa.int64()))
    occ = occ.set_column(occ.schema.get_field_index("step"), "step", step)
    meta = io.read_json(io.join(run.out.manifest(perturbed_run(run.spec)), "manifest.json"))
    manifest.write(str(tmp_path / "manifest"), items, occ, meta["sample_order_hash"])
    run_id = next(r for r in run.spec.runs.grid() if r.perturbed)
    data.prepare_run_dir(
        str(tmp_path / "run"), run.spec, run_id, run.out.root, str(tmp_path / "manifest")
    )
    report = audit.audit(str(tmp_path / "run"))
    (plan,) = [c for c in report.checks if not c.ok]
    assert plan.name == "plan" and f"{member}: planned" in plan.problems[0]
    assert any(p.startswith("sample ") and "consumed at step" in p for p in plan.problems)


def test_audit_reports_a_run_prepared_with_the_plans_manifest(run, tmp_path):
    for run_id in run.spec.runs.grid():
        planned = io.join(run.plan, perturbed_run(run.spec))
        data.prepare_run_dir(str(tmp_path / run_id.name), run.spec, run_id, run.out.root, planned)
        (check,) = audit.audit(str(tmp_path / run_id.name)).checks
        assert check.name == "open" and not check.ok and "not the plan's" in check.detail


def test_materialized_copy_reads_as_the_overlay_stream(run, tmp_path):
    description = data.materialize(run.perturbed, str(tmp_path / "materialized"))
    samples = data.open_training_samples(run.perturbed)
    prefix = description["data_prefix"]
    assert Path(prefix + ".idx").read_bytes() == Path(run.out.base_prefix + ".idx").read_bytes()
    assert description["megatron_lm_args"][:4] == ["--data-path", prefix, "--split", "100,0,0"]
    copy = data.SampleStream(
        prefix, samples.stream.order, TokenizerInfo.read(run.out), str(tmp_path / "cache")
    )
    rows = samples.read(0, len(samples))
    for i in range(len(samples)):
        assert np.array_equal(copy.sample(i), rows[i]), i
    order = np.load(tmp_path / "materialized" / "shuffle_index.npy")
    assert np.array_equal(order, samples.stream.dataset.shuffle_index)


def test_materialize_refuses_a_run_that_reads_the_corpus_twice(tmp_path):
    spec = make_spec(tmp_path, train_tokens=SEQ * 8 * 200, dup_levels=(2,), canaries=4)
    corpus = write_corpus_shards(tmp_path / "corpus", debian_texts(60_000), num_shards=1)
    out = tokenize_locally(
        spec, str(tmp_path / "tokenize"), corpus, plan_manifests(tmp_path / "plan", spec)
    )
    perturbed, _ = prepare(tmp_path, spec, out)
    samples = data.open_training_samples(perturbed)
    assert samples.stream.num_epochs > 1
    assert audit.audit(perturbed).ok
    with pytest.raises(DataError, match="reads the base corpus"):
        data.materialize(perturbed, str(tmp_path / "materialized"))
