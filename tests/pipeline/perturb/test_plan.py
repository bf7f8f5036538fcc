"""The planner: ladders and phases as declared, controls never placed, one occurrence per sample,
placement that succeeds whenever the spec validated, and byte-identical manifests."""

import copy
import hashlib
from collections import Counter

import numpy as np
import pytest
import yaml

from taggant.jobs.cli import EXPERIMENTS
from taggant.pipeline import io, manifest
from taggant.pipeline.errors import ConfigError
from taggant.pipeline.perturb import plan, registry
from taggant.pipeline.perturb.decontaminate import select_items
from taggant.pipeline.spec import apply_override, parse_spec

DEMO = yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text())


def demo(*overrides):
    raw = copy.deepcopy(DEMO)
    for o in overrides:
        apply_override(raw, o)
    return parse_spec(raw)


def digest(path: str) -> bytes:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


def planned(spec):
    sources = [
        registry.make_source(p, spec.seed, registry.CorpusInputs()) for p in spec.perturbations
    ]
    selection = select_items(spec.perturbations, sources, lambda sig: [])
    return plan.items_table(
        spec.perturbations, [[c.draft for c in items] for items in selection.items], spec.seed
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    spec = demo("runs.seeds=[0, 1]", "runs.model_sizes=[tiny-2m]")
    folder = str(tmp_path_factory.mktemp("plan"))
    plan.write_manifests(folder, spec, planned(spec))
    return spec, folder


def test_one_manifest_per_perturbed_run_with_its_sample_order_hash(written):
    spec, folder = written
    runs = [r for r in spec.runs.grid() if r.perturbed]
    assert len(runs) == 2
    for run in runs:
        _, occ, meta = manifest.read(io.join(folder, "manifests", run.name))
        assert meta["sample_order_hash"] == plan.sample_order_hash(
            spec.runs, run.train_tokens, run.seed
        )
        assert set(occ.column("run").to_pylist()) == {run.name}
    a, b = (manifest.read(io.join(folder, "manifests", r.name))[1] for r in runs)
    assert a.column("sample_index").equals(b.column("sample_index"))  # seeds share the placement


def test_ladder_counts_phases_and_controls_follow_the_spec(written):
    spec, folder = written
    run = next(r for r in spec.runs.grid() if r.perturbed)
    items, occ, _ = manifest.read(io.join(folder, "manifests", run.name))
    rows = items.to_pylist()
    copies = Counter(occ.column("item_id").to_pylist())
    num_samples = spec.runs.num_samples(run.train_tokens)
    samples = dict(zip(occ.column("item_id").to_pylist(), occ.column("sample_index").to_pylist()))
    for pset in spec.perturbations:
        mine = [r for r in rows if r["set"] == pset.name]
        assert len(mine) == pset.count
        levels = Counter(r["dup_level"] for r in mine)
        assert levels == Counter(
            {0: pset.num_controls, **dict(zip(pset.dup_levels, pset.members_per_level()))}
        )
        for r in mine:
            assert copies.get(r["item_id"], 0) == r["dup_level"]  # controls (level 0) never occur
            assert (r["phase_start"], r["phase_end"]) == (
                pset.phase.start_frac,
                pset.phase.end_frac,
            )
        lo, hi = pset.phase.sample_range(num_samples)
        placed = occ.filter(
            np.isin(
                occ.column("item_id").to_numpy(zero_copy_only=False), [r["item_id"] for r in mine]
            )
        )
        where = placed.column("sample_index").to_numpy()
        assert len(where) == pset.num_occurrences and lo <= where.min() and where.max() < hi
    sample_index = occ.column("sample_index").to_numpy()
    assert len(np.unique(sample_index)) == len(sample_index)  # at most one occurrence per sample
    assert (occ.column("step").to_numpy() == sample_index // spec.runs.global_batch_sequences).all()
    assert set(occ.column("token_offset").to_pylist()) == {-1}
    assert samples  # every member placed somewhere


def test_same_seed_gives_byte_identical_manifests(written, tmp_path):
    spec, folder = written
    plan.write_manifests(str(tmp_path), spec, planned(spec))
    paths = io.glob(io.join(folder, "manifests"))
    assert len(paths) == 2 * 3
    for path in paths:
        twin = path.replace(folder, str(tmp_path))
        assert digest(path) == digest(twin), path


def test_another_seed_gives_another_plan(written):
    spec, _ = written
    other = demo("seed=7")
    a = plan.occurrences_table(spec.perturbations, spec.runs, 2_000_000, spec.seed)
    b = plan.occurrences_table(other.perturbations, other.runs, 2_000_000, other.seed)
    assert not a.column("sample_index").equals(b.column("sample_index"))


@pytest.mark.parametrize("seed", range(20))
def test_crossing_windows_that_fill_up_are_always_placed(seed):
    # A greedy "tightest window first" fails here whenever A lands in [5, 10): B then lacks room.
    windows, needs = [(0, 10), (5, 15), (12, 30), (0, 30)], [5, 10, 9, 6]
    where = plan.place(windows, needs, np.random.default_rng(seed))
    allw = np.concatenate(where)
    assert len(np.unique(allw)) == len(allw) == sum(needs)
    for (lo, hi), w, n in zip(windows, where, needs):
        assert len(w) == n and lo <= w.min() and w.max() < hi


def test_loose_windows_are_sampled_uniformly():
    where = plan.place([(0, 100_000), (20_000, 40_000)], [20_000, 2_000], np.random.default_rng(3))
    # A uniform sample of the window: mean near the middle, every decile hit about equally.
    assert abs(where[0].mean() - 50_000) < 1_000
    deciles = np.bincount(where[0] // 10_000, minlength=10)
    assert deciles.min() > 1_700 and deciles.max() < 2_300


def test_sample_order_hash_covers_what_fixes_the_order():
    spec = demo()
    base = plan.sample_order_hash(spec.runs, 2_000_000, 0)
    assert base == plan.sample_order_hash(spec.runs, 2_000_000, 0)
    assert base != plan.sample_order_hash(spec.runs, 2_000_000, 1)
    assert base != plan.sample_order_hash(spec.runs, 3_000_000, 0)
    assert base != plan.sample_order_hash(demo("runs.global_batch_sequences=16").runs, 2_000_000, 0)


@pytest.mark.parametrize(
    "overrides, path, fix",
    [
        (["runs.train_tokens=[200000]"], "perturbations[1].phase", "needs 512 occurrences"),
        (["perturbations.3.kind=watermrk"], "perturbations[3].kind", "use one of canary, ghost"),
        (["perturbations.3.dup_levels=[-1, 4]"], "perturbations[3].dup_levels", "negative"),
        (
            ["perturbations.0.secret_alphabet=digits", "perturbations.0.secret_length=3"],
            "perturbations[0]",
            "raise secret_length",
        ),
        (
            ["perturbations.0.token_id_range=[9, 3]"],
            "perturbations[0].token_id_range",
            "0 ≤ low < high",
        ),
        (
            ["perturbations.0.template='{name} {secret} {oops}'"],
            "perturbations[0].template",
            "unknown slots",
        ),
        (["perturbations.3.carrier=no slot"], "perturbations[3].carrier", "{passphrase}"),
        (
            ["perturbations.3.decontamination.on_collision=drop"],
            "perturbations[3].decontamination.on_collision",
            "remove_docs",
        ),
    ],
)
def test_spec_errors_are_caught_at_validation_with_their_field_path(overrides, path, fix):
    with pytest.raises(ConfigError) as info:
        demo(*overrides)
    problems = dict(info.value.problems)
    assert path in problems, problems
    assert fix in problems[path]


def test_an_unknown_kind_has_no_generator():
    with pytest.raises(ConfigError, match="no generator for kind 'copyright_trap'"):
        registry.version_of("copyright_trap")
