"""The stage graph derived from the stages' declarations (``jobs.graph``): keys that change with
each stage's declared fields and versions and nothing else, the run order from the declared
inputs, a skipped stage passing its input through, ``--until``, and ``taggant plan``/``status``
starting without Ray, torch or megatron.
"""

import dataclasses
from pathlib import Path

import fsspec
import pytest
import yaml

from taggant.jobs import graph
from taggant.jobs.cli import EXPERIMENTS
from taggant.pipeline.errors import ConfigError, DataError
from taggant.pipeline.spec import ExperimentSpec, WatcherSpec, parse_spec
from taggant.sketches import hashing, minhash, ngrams
from tests.startup import demo_spec_file, run_cli

CORPUS = "memory://pinned/corpus"


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


def _hashes(spec: ExperimentSpec) -> dict[str, str]:
    return {s.key.name: s.key.hash for s in graph.build(spec)}


def _changed(spec: ExperimentSpec, section: str, **fields) -> ExperimentSpec:
    part = getattr(spec, section)
    return spec.model_copy(update={section: part.model_copy(update=fields)})


@pytest.mark.parametrize(
    ("section", "fields", "reader"),
    [
        ("dedup", {"threshold": 0.7}, "dedup"),
        ("dedup", {"verify_error": 0.01}, "dedup"),
        ("tokenizer", {"vocab_size": 2048}, "tokenize"),
        ("runs", {"lr": 2e-3}, "train"),
        ("runs", {"pipeline_parallel_size": 2}, "train"),
        ("runs", {"log_interval_steps": 1, "tensorboard": True}, None),
        ("runs", {"prefetch_steps": 0, "local_copy_dir": "/tmp/nvme"}, None),
        ("checkpoints", {"export_hf": True}, "train"),
        ("checkpoints", {"keep_last": 3}, None),
        ("probes", {"prefix_tokens": 12}, "probe"),
        # A watcher's GPU makes it probe in bf16 (ProbesSpec.precision); its CPUs change nothing.
        ("probes", {"watcher": WatcherSpec(num_gpus=1)}, "probe"),
        ("probes", {"watcher": WatcherSpec(num_cpus=4, threads=2, on_head=True)}, None),
        ("store", {"url": "memory://pinned/elsewhere"}, "probe"),
    ],
)
def test_a_field_changes_the_key_of_the_stage_that_declares_it_and_of_those_after(
    memory_corpus, tmp_path, section, fields, reader
):
    # reader: the first stage whose declared config holds the field (None: no stage declares it).
    spec = demo_spec(tmp_path)
    before, after = _hashes(spec), _hashes(_changed(spec, section, **fields))
    assert set(before) == set(after) == set(graph.UPSTREAM)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {name for name, up in graph.UPSTREAM.items() if reader in up}


@pytest.mark.parametrize("bumped", [d.name for d in graph.DECLARED])
def test_a_version_bump_changes_the_key_of_the_stage_and_of_those_after(
    memory_corpus, tmp_path, monkeypatch, bumped
):
    spec = demo_spec(tmp_path)
    before = _hashes(spec)
    monkeypatch.setattr(
        graph,
        "DECLARED",
        [
            dataclasses.replace(d, version=f"{d.version}+1") if d.name == bumped else d
            for d in graph.DECLARED
        ],
    )
    after = _hashes(spec)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {name for name, up in graph.UPSTREAM.items() if bumped in up}


@pytest.mark.parametrize(
    ("module", "constant"),
    [
        (hashing, "EXACT_HASH_VERSION"),
        (minhash, "MINHASH_VERSION"),
        (ngrams, "NGRAMS_VERSION"),
    ],
)
def test_dedup_keys_the_versions_of_the_sketch_algorithms(
    memory_corpus, tmp_path, monkeypatch, module, constant
):
    spec = demo_spec(tmp_path)
    before = _hashes(spec)
    monkeypatch.setattr(module, constant, getattr(module, constant) + "+1")
    after = _hashes(spec)
    assert {name for name in before if before[name] != after[name]} == {
        name for name, up in graph.UPSTREAM.items() if "dedup" in up
    }


def test_a_stage_folder_is_its_name_and_hash_under_the_work_dir(memory_corpus, tmp_path):
    for s in graph.build(demo_spec(tmp_path)):
        assert s.folder == f"{tmp_path}/{s.key.name}-{s.key.hash[:8]}"


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


@pytest.mark.parametrize("command", ["plan", "status"])
def test_plan_and_status_start_without_ray_torch_or_megatron(command, debian_corpus, tmp_path):
    spec = demo_spec_file(tmp_path, str(debian_corpus / "*.jsonl*"))
    run = run_cli(tmp_path, command, str(spec))
    assert run.code == 0
    assert "pyarrow" in run.packages  # what the wrapper reports is what was imported
    assert not {"torch", "megatron", "ray"} & run.packages
    # one stage row each, pending (status adds a table of runs below the stages)
    rows = [line.split("│") for line in run.stdout.splitlines() if line.startswith("│")]
    states = {cells[1].strip(): cells[3].strip() for cells in rows if len(cells) > 4}
    assert {d.name: states.get(d.name) for d in graph.DECLARED} == {
        d.name: "pending" for d in graph.DECLARED
    }
