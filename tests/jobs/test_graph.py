"""The stage graph derived from the stages' declarations (``jobs.graph``): the same keys as the
hand-wired graph it replaced, the run order from the declared inputs, a skipped stage passing its
input through, ``--until``, and ``taggant plan``/``status`` starting without Ray, torch or megatron.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest
import yaml

from taggant.jobs import graph
from taggant.jobs.cli import EXPERIMENTS
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.spec import ExperimentSpec, parse_spec

CORPUS = "memory://pinned/corpus"
PINNED = {
    "demo": {
        "ingest": ("ingest.v1", "d69682ab2b9dd359def175b1ab2501aed5678731812ac7e83462b95deb4af07a"),
        "dedup": ("dedup.v1", "c3a277cebddb61abf2cae81bff5a841ff38758388db0f78140f19a92efa8801c"),
        "plan": ("plan.v1", "ec6cb769bd999057865d190b74285f4ea05de5b2e1719bb298b9fd290491ec66"),
        "tokenize": (
            "tokenize.v1",
            "e3c840b1c17cd0a5b59cf045a43b02f34df8effcd7ce000053fc69f8a9b12ae7",
        ),
        "train": ("train.v1", "c94d9ecab7051653532f0085b2b7de7cf42642a9eb2fbe850870c86ce08342e8"),
        "probe": (
            "probe-stage.v1",
            "dd2a3a7a8cf5b3ceafd8ef5be8bf7e104628a1b414fcd777c2ecf9ce527d2ea7",
        ),
        "fit": ("fit.v1", "34199ff02222e67ecda8c5fc22fe15afcc0d2122023542ebcaa830a645d1a317"),
    },
    "no dedup": {
        "ingest": ("ingest.v1", "d69682ab2b9dd359def175b1ab2501aed5678731812ac7e83462b95deb4af07a"),
        "plan": ("plan.v1", "2dd0af307c58dd5c949c540f763d9418c07a2af834fb9f816eb181bab6d88612"),
        "tokenize": (
            "tokenize.v1",
            "224252c306fbb0943fee607c84142457106ba0ea184d17986b90e53d494782ff",
        ),
        "train": ("train.v1", "f50c9f1fa19d10b496a76413e7a408ed8ed68e28cd950cb50f028ba638c4d078"),
        "probe": (
            "probe-stage.v1",
            "434e234c3f1a7c07000c16f66d6591f46f68d40725e538e9197fd854d717efc6",
        ),
        "fit": ("fit.v1", "53a874306ff611b76ed57e845b212a9349cf6a5d32e553725a21a2297bae3284"),
    },
    "every kind, tokenizer file": {
        "ingest": ("ingest.v1", "d69682ab2b9dd359def175b1ab2501aed5678731812ac7e83462b95deb4af07a"),
        "dedup": ("dedup.v1", "784a4a14bb7b1de5c0092edda4094c71a63c146310e727168d1a4b39fbbeb06d"),
        "plan": ("plan.v1", "be15910e9220c1c5e539ca9c1b1dbcc6560a210adf9609b69740bf557bc6d32a"),
        "tokenize": (
            "tokenize.v1",
            "2d15ecb7d7cc53f03e000f236774f9a4607f7d3c3c800a9de45f1eb5887ac429",
        ),
        "train": ("train.v1", "81942fab4d4acd88b963ca802d06e0867aa5c6950a9502cb6d5135e3defc12a8"),
        "probe": (
            "probe-stage.v1",
            "d7bb6aacc9e4a0d2b0673824ba3b92298b3a7cc3c392e91e594506a7649e5394",
        ),
        "fit": ("fit.v1", "33ddc51c5a6bb954ba19d997b9f3a1e4b9583f43a2436a7854f9bcc38fd7bd12"),
    },
}
"""``(version, hash)`` of each stage of three specs, computed by the hand-wired ``graph.build`` of
commit 6891755, before the stages were declared: work dirs written then keep their folders, unless
a stage's version (or one it depends on) was bumped since, which changes the key on purpose."""


@pytest.fixture
def memory_corpus():
    """Two small JSONL files on fsspec's memory filesystem: the same URLs and sizes on every
    machine, so the ingest key (which lists them) is the same everywhere."""
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{CORPUS}/a.jsonl", b'{"id": "a", "text": "one document"}\n')
    fs.pipe(f"{CORPUS}/b.jsonl", b'{"id": "b", "text": "another document"}\n' * 3)
    fs.pipe("memory://pinned/tokenizer.json", b'{"not": "parsed for the hash"}')
    yield CORPUS
    fs.rm("memory://pinned", recursive=True)


def demo_spec(work_dir: Path, **changes) -> ExperimentSpec:
    raw = yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text())
    raw.update(
        corpus={"paths": [f"{CORPUS}/*.jsonl"]},
        work_dir=str(work_dir),
        store={"url": "memory://pinned/store"},
        **changes,
    )
    return parse_spec(raw)


def pinned_specs(work_dir: Path) -> dict[str, ExperimentSpec]:
    demo = demo_spec(work_dir)
    extra_kinds = [
        {"kind": "watermark", "name": "marks", "count": 10, "dup_levels": [4]},
        {"kind": "testset", "name": "mmlu", "count": 20, "dup_levels": [1, 8]},
    ]
    return {
        "demo": demo,
        "no dedup": demo_spec(work_dir, dedup={"exact": False, "near": False}),
        "every kind, tokenizer file": demo_spec(
            work_dir,
            dedup={"exact": True, "near": False},
            perturbations=[p.model_dump(mode="json") for p in demo.perturbations] + extra_kinds,
            tokenizer={"kind": "file", "path": "memory://pinned/tokenizer.json"},
        ),
    }


def test_stage_hashes_are_those_of_the_hand_wired_graph(memory_corpus, tmp_path):
    compared = 0
    for name, spec in pinned_specs(tmp_path).items():
        stages = graph.build(spec)
        assert [s.key.name for s in stages] == list(PINNED[name])
        bumped = {s.key.name for s in stages if s.key.version != PINNED[name][s.key.name][0]}
        for s in stages:
            if graph.UPSTREAM[s.key.name] & bumped:
                continue
            compared += 1
            assert s.key.hash == PINNED[name][s.key.name][1], (
                f"{name}: the same spec now keys {s.key.name} differently, so work dirs written "
                "before lose its folder; a field added to the spec must keep the stage's config "
                "as it was at the field's default (pipeline.stage.section_config), or the stage's "
                "version must be bumped"
            )
            assert s.folder == f"{tmp_path}/{s.key.name}-{s.key.hash[:8]}"
    assert compared >= len(graph.DECLARED) - 2, "re-pin: too few stages keep their version"


def test_the_run_order_follows_the_declared_inputs():
    assert [d.name for d in graph.DECLARED] == [
        "ingest",
        "dedup",
        "plan",
        "tokenize",
        "train",
        "probe",
        "fit",
    ]
    assert graph.order(reversed(graph.DECLARED)) == graph.DECLARED
    assert graph.UPSTREAM["tokenize"] == {"ingest", "dedup", "plan", "tokenize"}


def test_declaration_mistakes_are_refused():
    ingest, dedup = graph.DECLARED[:2]
    with pytest.raises(ValueError, match="two stages are declared as 'ingest'"):
        graph.order([ingest, ingest])
    with pytest.raises(ValueError, match="stage 'dedup' reads 'ingest', which no stage declares"):
        graph.order([dedup])
    looped = dataclasses.replace(ingest, inputs=("dedup",))
    with pytest.raises(ValueError, match="cycle: ingest → dedup → ingest"):
        graph.order([looped, dedup])


def test_a_skipped_stage_passes_its_input_through(memory_corpus, tmp_path):
    stages = {
        s.key.name: s
        for s in graph.build(demo_spec(tmp_path, dedup={"exact": False, "near": False}))
    }
    assert "dedup" not in stages
    ingest, plan = stages["ingest"], stages["plan"]
    assert plan.key.inputs == (ingest.key.hash,)
    assert plan.context.folders == {
        "ingest": ingest.folder,
        "dedup": ingest.folder,
        "plan": plan.folder,
    }


def test_a_stage_reads_the_folders_of_every_stage_it_depends_on(memory_corpus, tmp_path):
    stages = {s.key.name: s for s in graph.build(demo_spec(tmp_path))}
    probe = stages["probe"].context
    assert probe.folders == {
        name: stages[name].folder
        for name in ("ingest", "dedup", "plan", "tokenize", "train", "probe")
    }
    assert probe.folder == stages["probe"].folder


def test_until_takes_the_stage_and_those_it_depends_on(memory_corpus, tmp_path):
    spec = demo_spec(tmp_path)
    full = graph.build(spec)
    assert graph.build(spec, until="tokenize") == full[:4]
    assert [
        s.key.name
        for s in graph.build(
            spec.model_copy(
                update={"dedup": spec.dedup.model_copy(update={"exact": False, "near": False})}
            ),
            until="dedup",
        )
    ] == ["ingest"]
    with pytest.raises(ConfigError) as e:
        graph.build(spec, until="train-")
    assert e.value.problems == [
        ("--until", "no stage 'train-'; stages: ingest, dedup, plan, tokenize, train, probe, fit")
    ]


def test_building_the_graph_touches_no_stage_folder(memory_corpus):
    # So `taggant plan` and `status` read a work dir on an object store, too.
    spec = demo_spec(Path("unused")).model_copy(update={"work_dir": "memory://pinned/work"})
    stages = graph.build(spec)
    assert all(s.folder.startswith("memory://pinned/work/") for s in stages)
    assert {s.status for s in stages} == {"pending"}
    assert not fsspec.filesystem("memory").exists("memory://pinned/work")


def test_ingest_refuses_corpus_files_changed_after_the_graph_was_built(memory_corpus, tmp_path):
    [ingest] = graph.build(demo_spec(tmp_path), until="ingest")
    fsspec.filesystem("memory").pipe(f"{CORPUS}/a.jsonl", b'{"id": "a", "text": "grown"}\n' * 2)
    with pytest.raises(DataError, match="changed after the stage graph was built"):
        ingest.execute()


WRAPPER = """
import json, sys
from taggant.jobs.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "packages": sorted({m.split(".")[0] for m in sys.modules})}))
"""


@pytest.mark.parametrize("command", ["plan", "status"])
def test_plan_and_status_start_without_ray_torch_or_megatron(command, debian_corpus, tmp_path):
    spec = yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text())
    spec.update(
        corpus={"paths": [str(debian_corpus / "*.jsonl*")]},
        work_dir=str(tmp_path / "w"),
        store={"url": str(tmp_path / "store")},
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, command, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["code"] == 0
    assert "pyarrow" in report["packages"]  # what the wrapper reports is what was imported
    assert not {"torch", "megatron", "ray"} & set(report["packages"])
    assert done.stdout.count("pending") == len(graph.DECLARED)


def test_the_train_key_follows_what_is_trained(memory_corpus, tmp_path):
    def train_hash(**runs) -> str:
        spec = demo_spec(tmp_path)
        spec = spec.model_copy(update={"runs": spec.runs.model_copy(update=runs)})
        return {s.key.name: s.key.hash for s in graph.build(spec, until="train")}["train"]

    base = train_hash()
    assert train_hash(log_interval_steps=1, tensorboard=True) == base
    assert train_hash(pipeline_parallel_size=2) != base
    assert train_hash(lr=2e-3) != base
