"""Per-run status: steps trained from each run's train log, checkpoints probed with the spec's
probe settings from the store, and the state that follows."""

from taggant.jobs.run_status import runs_status
from taggant.pipeline.probe.registry import probe_config
from taggant.pipeline.spec import parse_spec
from taggant.pipeline.store import StoreWriter
from taggant.pipeline.train import checkpoint
from taggant.pipeline.train.schedule import run_checkpoint_steps


def test_each_run_says_what_is_trained_and_probed(tmp_path):
    spec = parse_spec(
        {
            "name": "st",
            "seed": 0,
            "work_dir": str(tmp_path / "work"),
            "corpus": {"paths": ["x.jsonl"]},
            "runs": {
                "model_sizes": ["tiny-2m"],
                "train_tokens": [64 * 8 * 40, 64 * 8 * 20],
                "seq_length_tokens": 64,
            },
            "checkpoints": {"log_spaced": 0, "interval_steps": 10, "after_window_steps": []},
            "store": {"url": str(tmp_path / "store")},
        }
    )
    big_p, big_s, small_p, small_s = (r.name for r in spec.runs.grid())
    train = tmp_path / "train"
    current, old = probe_config(spec.probes), "0123456789abcdef"
    writer = StoreWriter(spec.store.url, spec.name)

    def trained(run: str, steps: int, by: str = "train") -> None:
        writer.write_run(run, {"trained_by": by})
        (train / run).mkdir(parents=True)
        for s in range(1, steps + 1):
            checkpoint.append_train_log(str(train / run), {"step": s, "loss": 1.0})

    def probed(run: str, steps: list[int], config: str) -> None:
        for s in steps:
            writer.begin_checkpoint(run, s)
            writer.commit_checkpoint(run, s, s * 512, ["loss.v1"], config, 0)

    trained(big_p, 40)  # trained, probed with the current settings: done
    probed(big_p, run_checkpoint_steps(spec, 64 * 8 * 40), current)
    trained(big_s, 40)  # trained, two checkpoints of old settings: still probing
    probed(big_s, [10, 20], current)
    probed(big_s, [30, 40], old)
    trained(small_p, 13)  # mid-training
    writer.write_run(small_s, {"trained_by": "train-0ld"})  # not started; rows of an old training
    probed(small_s, [10], current)
    # small_s: not started

    rows = {r["run"]: r for r in runs_status(spec, str(train))}
    assert [r["run"] for r in runs_status(spec, str(train))] == [big_p, big_s, small_p, small_s]
    assert rows[big_p] | {"checkpoints": None} == {
        "run": big_p,
        "trained": 40,
        "steps": 40,
        "checkpoints": None,
        "probed": [10, 20, 30, 40],
        "stale": [],
        "state": "done",
    }
    assert rows[big_p]["checkpoints"] == [10, 20, 30, 40]
    assert rows[big_s]["probed"] == [10, 20] and rows[big_s]["stale"] == [30, 40]
    assert rows[big_s]["state"] == "probing"
    assert (rows[small_p]["trained"], rows[small_p]["steps"], rows[small_p]["state"]) == (
        13,
        20,
        "training",
    )
    assert (rows[small_s]["trained"], rows[small_s]["state"]) == (0, "pending")
    assert rows[small_s]["probed"] == [] and rows[small_s]["stale"] == [10]
