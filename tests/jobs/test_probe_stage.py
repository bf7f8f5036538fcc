"""Streaming probes (``jobs.probe``) and ``taggant probe`` on a real local Ray with real
megatron-core checkpoints.

Rows reach the store while training still runs; a watcher killed while it probes restarts to
exactly one row set per checkpoint; a truncated or malformed checkpoint is reported and skipped,
unless it is the run's final one, which fails the stage, as does any other failure (items that
cannot be probed); ``keep_last`` deletes only probed checkpoints and never the newest. ``taggant
probe --checkpoint`` gives the watcher's rows, runs every probe (exposure included), names the
committed steps for an uncommitted ``--step``, and on failure prints one line and its log. Every
test but the first works on a copy of a run the tiny experiment (``tests.conftest``) trained.
"""

import dataclasses
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taggant.jobs import graph
from taggant.jobs import probe as probe_job
from taggant.jobs import train as train_job
from taggant.jobs.cli import main
from taggant.pipeline import data, manifest, store
from taggant.pipeline.errors import DataError
from taggant.pipeline.probe import registry
from taggant.pipeline.spec import ExperimentSpec, load_spec
from taggant.pipeline.train import checkpoint
from taggant.pipeline.train.schedule import run_checkpoint_steps

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # the tiny experiment takes a minute or two


@dataclasses.dataclass(frozen=True)
class Tiny:
    spec: ExperimentSpec
    targets: dict[str, probe_job.Target]
    tokenize_folder: str
    plan_folder: str

    @property
    def perturbed(self) -> probe_job.Target:
        [target] = [t for t in self.targets.values() if t.run.perturbed]
        return target

    def num_items(self) -> int:
        return manifest.read(self.perturbed.inputs.items_url)[0].num_rows


@pytest.fixture(scope="module")
def tiny(tiny_experiment) -> Tiny:
    spec = load_spec(tiny_experiment)
    stages = {s.key.name: s for s in graph.build(spec)}
    targets = probe_job.targets(
        spec, stages["train"].folder, stages["tokenize"].folder, stages["plan"].folder
    )
    return Tiny(
        spec, {t.run.name: t for t in targets}, stages["tokenize"].folder, stages["plan"].folder
    )


def with_store(spec: ExperimentSpec, url: Path, **checkpoints) -> ExperimentSpec:
    """``spec`` writing to the store at ``url``, with its checkpoint schedule changed."""
    return spec.model_copy(
        update={
            "store": spec.store.model_copy(update={"url": str(url)}),
            "checkpoints": spec.checkpoints.model_copy(update=checkpoints),
        }
    )


def copied(target: probe_job.Target, tmp_path: Path, **changes) -> probe_job.Target:
    """``target`` on a copy of its (trained) run folder, probing into a store under ``tmp_path``."""
    run_dir = tmp_path / "run"
    shutil.copytree(target.run_dir, run_dir, ignore=shutil.ignore_patterns("index_cache"))
    return dataclasses.replace(
        target, run_dir=str(run_dir), store_url=str(tmp_path / "store"), **changes
    )


def partition(target: probe_job.Target, step: int) -> Path:
    """The folder of one step's probe files, relative to the store."""
    return Path(
        "probes", f"experiment={target.experiment}", f"run={target.run.name}", f"step={step}"
    )


def assert_one_row_set_per_step(target: probe_job.Target, steps: list[int], num_items: int) -> None:
    """The store holds ``steps`` of the target's run, each committed once with exactly one row per
    (item, probe, metric) and one file per probe."""
    commits = store.read_checkpoints(target.store_url).to_pylist()
    assert [c["step"] for c in commits if c["run"] == target.run.name] == steps
    rows = store.read_probes(target.store_url).to_pandas()
    rows = rows[rows["run"] == target.run.name]
    assert not rows.duplicated(["step", "item_id", "probe", "metric"]).any()
    per_item = rows.groupby(["step", "item_id"]).size()
    assert len(per_item) == len(steps) * num_items and per_item.nunique() == 1, per_item
    for commit in commits:
        assert commit["num_rows"] == (rows["step"] == commit["step"]).sum()
    names = sorted(target.probes.names)
    for step in steps:
        files = os.listdir(Path(target.store_url, partition(target, step)))
        assert sorted(files) == [f"{name}-00000.parquet" for name in names]


def truncate_shards(run_dir: str, step: int) -> None:
    """Cut every shard file of a committed checkpoint to 1 kB (its commit record stays)."""
    folder = Path(checkpoint.step_dir(run_dir, step))
    shards = sorted(folder.glob("*.distcp"))
    assert shards
    for shard in shards:
        os.truncate(shard, 1000)


def test_rows_stream_into_the_store_while_training_runs(tiny, tmp_path, local_ray):
    spec = with_store(tiny.spec, tmp_path / "store", interval_steps=25, keep_last=2)
    targets = probe_job.targets(spec, "", tiny.tokenize_folder, tiny.plan_folder)
    [target] = [
        dataclasses.replace(t, run_dir=str(tmp_path / "run"))
        for t in targets
        if t.run == tiny.perturbed.run
    ]
    data.prepare_run_dir(target.run_dir, spec, target.run, tiny.tokenize_folder)
    schedule = run_checkpoint_steps(spec, target.run.train_tokens)
    trained = threading.Event()

    def train() -> dict:
        result = train_job.train_run(spec, target.run, target.run_dir)
        trained.set()
        return result

    seen_while_training: set[int] = set()
    with ThreadPoolExecutor(1) as pool:
        stage = pool.submit(probe_job.run, spec, [target], {target.run.name: schedule[-1]}, train)
        while not stage.done():
            steps = set(store.read_checkpoints(target.store_url)["step"].to_pylist())
            if not trained.is_set():  # read after the store: these steps were in it during training
                seen_while_training |= steps
            time.sleep(0.1)
        result = stage.result()

    assert seen_while_training, "no checkpoint reached the store before training finished"
    assert result["trained"]["steps"] == schedule[-1] and result["trained"]["restarts"] == 0
    watched = result["runs"][target.run.name]
    assert watched["probed"] == schedule and watched["skipped"] == {}
    assert_one_row_set_per_step(target, schedule, tiny.num_items())
    # keep_last = 2: every other checkpoint was deleted once probed; the newest are still there.
    assert checkpoint.committed_steps(target.run_dir) == schedule[-2:]
    assert sorted(os.listdir(checkpoint.checkpoints_dir(target.run_dir))) == [
        *(f"iter_{s:07d}" for s in schedule[-2:]),
        checkpoint.TRACKER,
    ]


def _parent_pid() -> int:
    return os.getppid()


def running(raylet: psutil.Process, task: str) -> list[psutil.Process]:
    """The workers of ``raylet`` running ``task``: Ray titles a worker ``ray::<task>`` meanwhile."""
    return [p for p in raylet.children() if " ".join(p.cmdline()).startswith(f"ray::{task}")]


def test_a_watcher_killed_while_probing_restarts_to_one_row_set_per_checkpoint(
    tiny, tmp_path, local_ray
):
    target = copied(tiny.perturbed, tmp_path)
    steps = checkpoint.committed_steps(target.run_dir)
    probe_job.register_run(target, tiny.spec)
    # What a watcher killed between its first probe file and the commit record leaves behind (and
    # a stray file of another shard): rows of the step, no commit record.
    stale = Path(tiny.spec.store.url, partition(target, steps[-1]), "loss-00000.parquet")
    half = Path(target.store_url, partition(target, steps[-1]))
    half.mkdir(parents=True)
    for name in ("loss-00000.parquet", "loss-00001.parquet"):
        shutil.copy(stale, half / name)

    # This session's raylet (another Ray may run on the machine): the parent of its workers.
    raylet = psutil.Process(local_ray.get(local_ray.remote(num_cpus=0)(_parent_pid).remote()))
    watcher = local_ray.remote(num_cpus=0, max_retries=3)(probe_job.watch)  # as probe_job.run
    ref = watcher.remote(target, steps[-1], 0.1)
    committed: list[int] = []
    while not committed:  # kill it once its first step is in, while it probes the next
        ready, _ = local_ray.wait([ref], timeout=0.02)
        assert not ready, "the watcher finished before it could be killed"
        committed = store.read_checkpoints(target.store_url)["step"].to_pylist()
    [worker] = running(raylet, "watch")
    worker.send_signal(signal.SIGKILL)
    assert len(committed) < len(steps)
    result = local_ray.get(ref)  # from the retry

    assert result["skipped"] == {}
    assert not set(result["probed"]) & set(committed), "the restarted watcher redid committed steps"
    assert_one_row_set_per_step(target, steps, tiny.num_items())


def test_a_broken_checkpoint_is_reported_and_the_others_are_probed(tiny, tmp_path, local_ray):
    target = copied(tiny.perturbed, tmp_path)
    steps = checkpoint.committed_steps(target.run_dir)
    truncated, garbled, bad_commit, missing = steps[1], steps[2], steps[3], steps[4]
    truncate_shards(target.run_dir, truncated)
    Path(checkpoint.step_dir(target.run_dir, garbled), ".metadata").write_bytes(b"not a pickle")
    Path(checkpoint.step_dir(target.run_dir, bad_commit), checkpoint.COMMIT).write_text('{"step": ')
    for shard in Path(checkpoint.step_dir(target.run_dir, missing)).glob("*.distcp"):
        shard.unlink()
    broken = [truncated, garbled, bad_commit, missing]

    result = probe_job.run(tiny.spec, [target], {target.run.name: steps[-1]}, lambda: None)

    watched = result["runs"][target.run.name]
    reasons = watched["skipped"]
    assert sorted(reasons) == broken
    assert reasons[bad_commit].startswith("JSONDecodeError: "), reasons
    for step in (truncated, garbled, missing):  # torch's loader names the error of each rank
        assert reasons[step].startswith("CheckpointException: "), reasons
    assert not any("\n" in reason for reason in reasons.values()), reasons
    assert "No such file" in reasons[missing], reasons
    good = [s for s in steps if s not in broken]
    assert watched["probed"] == good
    assert_one_row_set_per_step(target, good, tiny.num_items())

    # The truncated checkpoint repaired, the stage again: it catches up on that step alone.
    for shard in Path(checkpoint.step_dir(tiny.perturbed.run_dir, truncated)).glob("*.distcp"):
        shutil.copy(shard, checkpoint.step_dir(target.run_dir, truncated))
    again = probe_job.run(tiny.spec, [target], {target.run.name: steps[-1]}, lambda: None)
    again = again["runs"][target.run.name]
    assert again["probed"] == [truncated]
    assert sorted(again["skipped"]) == [garbled, bad_commit, missing]
    assert_one_row_set_per_step(target, sorted([*good, truncated]), tiny.num_items())


def test_keep_last_deletes_only_probed_checkpoints_and_never_the_newest(tiny, tmp_path, local_ray):
    target = copied(tiny.perturbed, tmp_path, keep_last=1)
    steps = checkpoint.committed_steps(target.run_dir)
    broken = steps[1]
    truncate_shards(target.run_dir, broken)

    result = probe_job.run(tiny.spec, [target], {target.run.name: steps[-1]}, lambda: None)

    watched = result["runs"][target.run.name]
    assert list(watched["skipped"]) == [broken]
    probed = {c["step"] for c in store.read_checkpoints(target.store_url).to_pylist()}
    kept = checkpoint.committed_steps(target.run_dir)
    assert kept == [broken, steps[-1]]  # the unprobed one, and the newest (resume needs it)
    assert set(steps) - set(kept) <= probed
    assert checkpoint.read_commit(target.run_dir, steps[-1])["step"] == steps[-1]
    tracker = Path(checkpoint.checkpoints_dir(target.run_dir), checkpoint.TRACKER)
    assert tracker.read_text().strip() == str(steps[-1])
    # Again (a restarted stage): nothing new to probe, the broken one still reported, none deleted.
    again = probe_job.run(tiny.spec, [target], {target.run.name: steps[-1]}, lambda: None)
    again = again["runs"][target.run.name]
    assert again["probed"] == [] and list(again["skipped"]) == [broken] and again["rows"] == 0
    assert checkpoint.committed_steps(target.run_dir) == kept


def test_a_changed_probe_setting_reprobes_every_checkpoint_and_says_so(tiny, tmp_path, local_ray):
    target = copied(tiny.perturbed, tmp_path)
    steps = checkpoint.committed_steps(target.run_dir)
    final = {target.run.name: steps[-1]}
    first = probe_job.run(tiny.spec, [target], final, lambda: None)["runs"][target.run.name]
    assert first["probed"] == steps and first["replaced"] == [] and first["stale"] == []
    before = store.read_probes(target.store_url).to_pandas()
    assert set(before["probe_config"]) == {registry.probe_config(target.probes)}

    # The tiny canaries have prompts: prefix_tokens changes no value, suffix_tokens does (the
    # extraction span); either is a new configuration.
    for change in ({"prefix_tokens": 4}, {"suffix_tokens": 2}):
        changed = dataclasses.replace(target, probes=target.probes.model_copy(update=change))
        spec = tiny.spec.model_copy(update={"probes": changed.probes})
        again = probe_job.run(spec, [changed], final, lambda: None)["runs"][target.run.name]
        assert again["probed"] == steps and again["replaced"] == steps, change
        assert again["stale"] == [] and again["skipped"] == {}
        assert_one_row_set_per_step(changed, steps, tiny.num_items())
        after = store.read_probes(target.store_url).to_pandas()
        assert set(after["probe_config"]) == {registry.probe_config(changed.probes)}
        assert {
            c["probe_config"] for c in store.read_checkpoints(target.store_url).to_pylist()
        } == {registry.probe_config(changed.probes)}
        target = changed
    keys = ["step", "item_id", "probe", "metric"]
    merged = before.merge(after, on=keys, suffixes=("_old", "_new"))
    assert len(merged) == len(before) == len(after)
    differ = merged[merged["value_old"] != merged["value_new"]]
    assert set(differ["probe"]) == {"exact_match"}, differ  # only the extraction span changed

    # The same settings again: nothing to probe.
    same = probe_job.run(spec, [target], final, lambda: None)["runs"][target.run.name]
    assert same["probed"] == [] and same["replaced"] == [] and same["rows"] == 0


def test_a_run_trained_again_has_the_old_models_rows_cleared(tiny, tmp_path, local_ray):
    target = copied(tiny.perturbed, tmp_path)
    steps = checkpoint.committed_steps(target.run_dir)
    probe_job.run(tiny.spec, [target], {target.run.name: steps[-1]}, lambda: None)
    # The run trained again with other settings: the same name in another train folder, here
    # with only its last two checkpoints left.
    again = dataclasses.replace(target, run_dir=str(tmp_path / "train-0ther" / "run"))
    shutil.copytree(target.run_dir, again.run_dir)
    for step in steps[:-2]:
        shutil.rmtree(checkpoint.step_dir(again.run_dir, step))

    result = probe_job.run(tiny.spec, [again], {target.run.name: steps[-1]}, lambda: None)

    watched = result["runs"][target.run.name]
    assert watched["cleared"] == steps and watched["probed"] == steps[-2:]
    assert_one_row_set_per_step(again, steps[-2:], tiny.num_items())
    [run] = store.read_runs(target.store_url).to_pylist()
    assert run["trained_by"] == "train-0ther"
    # Again from the same training: nothing cleared, nothing to probe.
    same = probe_job.run(tiny.spec, [again], {target.run.name: steps[-1]}, lambda: None)
    assert same["runs"][target.run.name]["cleared"] == []
    assert same["runs"][target.run.name]["probed"] == []


def test_an_unreadable_final_checkpoint_fails_the_stage(tiny, tmp_path, local_ray):
    target = copied(tiny.perturbed, tmp_path)
    steps = checkpoint.committed_steps(target.run_dir)
    truncate_shards(target.run_dir, steps[-1])

    with pytest.raises(
        DataError,
        match=rf"final checkpoint cannot be probed: the checkpoint at "
        rf"step {steps[-1]} of .* cannot be read "
        r"\(CheckpointException: ",
    ):
        probe_job.run(tiny.spec, [target], {target.run.name: steps[-1]}, lambda: None)
    # Every readable step is in the store all the same.
    assert_one_row_set_per_step(target, steps[:-1], tiny.num_items())


def test_items_that_cannot_be_probed_fail_the_stage(tiny, tmp_path, local_ray):
    # A manifest whose items' params are not JSON: every checkpoint reads fine, no item probes.
    items_url = tmp_path / "manifest"
    shutil.copytree(tiny.perturbed.inputs.items_url, items_url)
    items = pq.read_table(items_url / "items.parquet")
    broken = items.set_column(
        items.schema.get_field_index("params"), "params", pa.array(["{not json"] * items.num_rows)
    )
    pq.write_table(broken, items_url / "items.parquet")
    target = copied(
        tiny.perturbed,
        tmp_path,
        inputs=dataclasses.replace(tiny.perturbed.inputs, items_url=str(items_url)),
    )
    os.remove(Path(target.run_dir, "probe_inputs.json"))  # this copy is probed on other items
    steps = checkpoint.committed_steps(target.run_dir)

    with pytest.raises(DataError, match=r"`params` is not JSON"):
        probe_job.run(tiny.spec, [target], {target.run.name: steps[-1]}, lambda: None)
    assert store.read_checkpoints(target.store_url).num_rows == 0


def probe_cli(capsys, *args: str) -> tuple[int, str]:
    """``taggant probe ARGS``: its exit code and its stderr."""
    capsys.readouterr()
    code = main(["probe", *args])
    return code, capsys.readouterr().err


def test_taggant_probe_gives_the_watchers_rows_and_runs_exposure(tiny, tmp_path, capsys):
    run_dir = tiny.perturbed.run_dir
    step = checkpoint.committed_steps(run_dir)[-1]
    probes = tiny.spec.probes
    out = tmp_path / "rows.parquet"
    code, err = probe_cli(
        capsys,
        "--checkpoint",
        run_dir,
        "--probes",
        ",".join(probes.names),
        "--prefix-tokens",
        str(probes.prefix_tokens),
        "--suffix-tokens",
        str(probes.suffix_tokens),
        "--out",
        str(out),
    )
    assert code == 0, err
    # The train stage's watcher probed the same step into the experiment's store.
    stored = store.read_probes(tiny.spec.store.url).to_pandas()
    stored = stored[(stored["run"] == tiny.perturbed.run.name) & (stored["step"] == step)]
    got = pq.read_table(out).to_pandas()
    # Metrics per item: loss 4, zlib_ratio 2, min_k 3, min_k_plus_plus 3, exact_match 4.
    assert len(got) == len(stored) == tiny.num_items() * 16
    assert set(got["probe"]) == set(probes.names)
    keys = ["item_id", "probe", "metric"]
    got = got.sort_values(keys).reset_index(drop=True)
    stored = stored[list(got.columns)].sort_values(keys).reset_index(drop=True)
    assert got.equals(stored)

    code, err = probe_cli(
        capsys, "--checkpoint", run_dir, "--probes", "exposure", "--out", str(out)
    )
    assert code == 0, err
    exposure = (
        pq.read_table(out).to_pandas().pivot(index="item_id", columns="metric", values="value")
    )
    canaries = len(manifest.read(tiny.perturbed.inputs.items_url)[0])  # every tiny item is one
    references = {p.name: p.num_references for p in tiny.spec.perturbations}
    assert len(exposure) == canaries
    assert set(exposure["references"]) <= set(references.values())
    assert ((exposure["rank"] >= 1) & (exposure["rank"] <= exposure["references"] + 1)).all()


def test_taggant_probe_of_an_uncommitted_step_lists_the_committed_ones(tiny, capsys):
    run_dir = tiny.perturbed.run_dir
    steps = checkpoint.committed_steps(run_dir)
    code, err = probe_cli(capsys, "--checkpoint", run_dir, "--step", "5")
    assert code == 2
    assert err == (
        f"--step: 5 is not a committed checkpoint of {run_dir}; committed steps: "
        f"{', '.join(map(str, steps))}\n"
    )


def test_taggant_probe_failing_prints_one_line_and_its_log(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    target = copied(tiny.perturbed, tmp_path)
    step = checkpoint.committed_steps(target.run_dir)[-1]
    truncate_shards(target.run_dir, step)

    code, err = probe_cli(capsys, "--checkpoint", target.run_dir)

    assert code == 1
    [line] = err.splitlines()
    log_path = Path(line.rsplit(" (log: ", 1)[1].removesuffix(")"))
    assert line.startswith(
        f"error: the checkpoint at step {step} of {target.run_dir} cannot be "
        "read (CheckpointException: "
    )
    assert log_path.parent == tmp_path / "cache" / "taggant" / "logs"
    assert log_path.name.startswith("probe-")
    logged = log_path.read_text()
    assert f"taggant probe --checkpoint {target.run_dir}" in logged
    assert "Traceback" in logged and "UnreadableCheckpoint" in logged
