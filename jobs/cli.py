"""The ``taggant`` command line.

Exit codes: 0 success; 2 spec errors, one ``field.path: message`` line each; 1 runtime failure,
with a one-line cause and the path of the log holding the traceback; 130 or 143 when SIGINT
(Ctrl-C) or SIGTERM stopped a command that runs Ray (``run``, ``demo``, ``dedup``): it stops at
once, with Ray shut down, and says how to resume (what was cut off is redone, never used).

Every command logs to a file: ``run``, ``demo`` and ``dedup`` under their work folder's ``logs/``,
the others under ``$XDG_CACHE_HOME/taggant/logs/`` (``~/.cache`` by default), one file per call.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from taggant.jobs.runtime import Interrupted
from taggant.pipeline.errors import ConfigError, TaggantError, one_line
from taggant.pipeline.eval_format import CANONICAL

if TYPE_CHECKING:
    import pyarrow as pa

    from taggant.pipeline.spec import ExperimentSpec, ProbesSpec

# pyarrow, fsspec (pipeline.io), rich and the pydantic spec are imported by the commands that use them:
# `taggant --help` and argument errors need none of them (bench/cli_startup.py).

EXPERIMENTS = Path(__file__).parent / "experiments"
log = logging.getLogger("taggant")
log.addHandler(
    logging.NullHandler()
)  # until _log_to adds a file, failures are printed, not logged twice
_log_path: str | None = None
_log_handler: logging.Handler | None = None


def _load(args: argparse.Namespace) -> ExperimentSpec:
    from taggant.pipeline.spec import load_spec

    return load_spec(args.spec, args.set or [])


def cmd_validate(args: argparse.Namespace) -> int:
    from taggant.pipeline import preflight

    spec = _load(args)
    found = preflight.check(spec)
    for path, message in found.warnings:
        print(f"warning: {path}: {message}", file=sys.stderr)
    if found.errors:
        raise ConfigError(found.errors)
    n_sets = len(spec.perturbations)
    print(f"{args.spec}: valid — experiment {spec.name!r}, {n_sets} perturbation set(s)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from taggant.jobs import graph
    from taggant.pipeline.train import disk

    spec = _load(args)
    table = Table("stage", "hash", "status", "folder")
    for s in graph.build(spec):
        table.add_row(s.key.name, s.key.hash[:8], s.status, s.folder)
    Console().print(table)
    disks = disk.plan_disk(spec)
    usage = Table("run", "params", "full ckpts", "weights-only ckpts", "ckpt disk", "HF exports")
    for d in disks:
        usage.add_row(
            d.run,
            f"{d.num_params:,}",
            str(d.full_checkpoints),
            str(d.weights_checkpoints),
            _gb(d.peak_bytes),
            _gb(d.export_bytes),
        )
    budget = spec.checkpoints.disk_budget_bytes
    Console().print(usage)
    print(
        f"checkpoint disk, all runs: {_gb(sum(d.total_bytes for d in disks))}"
        f" (budget: {'none' if budget is None else _gb(budget)}; estimate, pipeline.train.disk)"
    )
    disk.check_budget(spec, disks)
    return 0


def _gb(size: int) -> str:
    return f"{size / 1e9:,.3f} GB"


def cmd_run(args: argparse.Namespace) -> int:
    spec = _load(args)
    return _run(spec, args.address, args.num_cpus, args.until)


def cmd_dedup(args: argparse.Namespace) -> int:
    from rich.console import Console

    from taggant.jobs import graph
    from taggant.jobs.runtime import ray_session
    from taggant.pipeline import io
    from taggant.pipeline.spec import CorpusSpec, DedupSpec, parse_section

    corpus = parse_section(
        CorpusSpec, {"paths": [str(Path(p).resolve()) for p in args.inputs]}, "corpus"
    )
    options = {
        k: v
        for k, v in {
            "threshold": args.threshold,
            "num_perm": args.num_perm,
            "ngram_words": args.ngram,
            "bands": args.bands,
            "rows": args.rows,
        }.items()
        if v is not None
    }
    dedup = parse_section(DedupSpec, options, "dedup")
    out = str(Path(args.out).resolve())
    _log_to(io.join(out, "logs", f"dedup-{time.strftime('%Y%m%dT%H%M%S')}.log"))
    stages = graph.data_stages(corpus, dedup, out)
    resolved = {"corpus": corpus.model_dump(mode="json"), "dedup": dedup.model_dump(mode="json")}
    with ray_session(args.address, args.num_cpus):
        graph.run(resolved, stages, Console(stderr=True))
    print(stages[-1].folder)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from taggant.jobs.submit import check_shippable, hints, submit

    job_id = submit(
        args.spec,
        args.address,
        args.set or [],
        follow=args.follow,
        until=args.until,
        env=args.env or [],
    )
    if args.follow:
        print(f"job {job_id} SUCCEEDED")
    else:
        print(job_id)
        spec = check_shippable(args.spec, args.set or [])  # its paths are absolute: checked
        for what, command in hints(job_id, args.address, spec.work_dir, spec.name):
            print(f"{what}: {command}", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from taggant.jobs import graph
    from taggant.jobs.run_status import runs_status

    spec, folders, about = _status_target(args)
    print(about)
    stages = graph.folders_status(folders)
    runs = runs_status(spec, next(s["folder"] for s in stages if s["stage"] == "train"))
    # The stages that train and probe summarize by run (their stats' own summary lists sizes).
    by_run = {
        "train": f"{sum(r['trained'] == r['steps'] for r in runs)} of {len(runs)} runs trained",
        "probe": f"{sum(r['state'] == 'done' for r in runs)} of {len(runs)} runs probed",
    }
    table = Table("stage", "hash", "status", "folder", "summary")
    for row in stages:
        summary = by_run.get(row["stage"], row["summary"])
        table.add_row(row["stage"], row["hash"], row["status"], row["folder"], summary)
    Console().print(table)
    per_run = Table("run", "state", "trained", "probed (current probe settings)")
    for r in runs:
        other = f"; {len(r['stale'])} stale (other training or settings)" if r["stale"] else ""
        per_run.add_row(
            r["run"],
            r["state"],
            f"step {r['trained']} of {r['steps']}",
            f"{len(r['probed'])} of {len(r['checkpoints'])} checkpoints{other}",
        )
    Console().print(per_run)
    return 0


def _status_target(args: argparse.Namespace) -> tuple[ExperimentSpec, dict[str, str], str]:
    """What ``status`` reports on: the experiment, its stage folders, and a line saying which
    spec and work dir they are. A spec file is taken with its ``--set``s (and a warning when the
    work dir's record of that experiment says it ran with other settings); a work dir or a job id
    (with ``--address``) is taken as its run recorded it (``jobs.resolved``)."""

    from taggant.jobs import graph

    # A missing *.yaml is a spec typo (load_spec names it), not a work dir.
    if args.address is None and (
        Path(args.spec).is_file() or args.spec.endswith((".yaml", ".yml"))
    ):
        if args.experiment is not None:
            raise ConfigError([("--experiment", "only with a WORK_DIR or JOB_ID: a spec names it")])
        spec = _load(args)
        overrides = " ".join(f"--set {o}" for o in args.set or []) or "no --set"
        about = f"experiment {spec.name!r} from {args.spec} with {overrides}"
        differs = _differs_from_record(spec)
        if differs:
            print(
                f"warning: the run recorded in {spec.work_dir} ran {spec.name!r} with other "
                f"{', '.join(differs)}: `taggant status {spec.work_dir} --experiment {spec.name}` "
                "reports it as it ran",
                file=sys.stderr,
            )
        stages = {s.key.name: s.folder for s in graph.build(spec)}
        return spec, stages, f"{about}; work dir {spec.work_dir}"
    if args.set:
        raise ConfigError(
            [("--set", "only with a spec file: a work dir's record holds the run's overrides")]
        )
    found = _recorded(args.spec, args.address, args.experiment)
    about = f"experiment {found.spec.name!r} as its run resolved it ({found.source})"
    return found.spec, found.stages, f"{about}; work dir {found.spec.work_dir}"


def _differs_from_record(spec: ExperimentSpec) -> list[str]:
    """The top-level spec fields in which ``spec`` differs from its work dir's record of the
    same experiment; none when there is no record."""
    from taggant.jobs import resolved

    if spec.name not in resolved.experiments(spec.work_dir):
        return []
    ran = resolved.read(spec.work_dir, spec.name).spec.model_dump(mode="json")
    given = spec.model_dump(mode="json")
    return [field for field in given if given[field] != ran.get(field)]


def _recorded(target: str, address: str | None, experiment: str | None):
    """The record (``jobs.resolved.Resolved``) of a work dir, or of a job id at ``address``."""
    from taggant.jobs import resolved

    if address is not None:
        return resolved.from_job(address, target, experiment)
    return resolved.read(target if "://" in target else str(Path(target).resolve()), experiment)


def cmd_audit(args: argparse.Namespace) -> int:
    import json

    from taggant.pipeline.audit import audit

    report = audit(str(Path(args.run_dir).resolve()))
    print(json.dumps(report.to_dict(), indent=2) if args.json else "\n".join(report.lines()))
    return 0 if report.ok else 1


def cmd_materialize(args: argparse.Namespace) -> int:
    from taggant.pipeline.data import materialize

    summary = materialize(str(Path(args.run_dir).resolve()), str(Path(args.out).resolve()))
    print(summary)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    import pyarrow.compute as pc
    from rich.table import Table

    from taggant.pipeline import io
    from taggant.pipeline.spec import ProbesSpec, parse_section

    probes = parse_section(
        ProbesSpec,
        {
            k: v
            for k, v in {
                "names": args.probes.split(","),
                "prefix_tokens": args.prefix_tokens,
                "suffix_tokens": args.suffix_tokens,
                "batch_items": args.batch_items,
            }.items()
            if v is not None
        },
        "probes",
    )
    rows, title = _probe_checkpoint(args, probes) if args.checkpoint else _probe_hf(args, probes)
    if args.out:
        io.write_table(str(Path(args.out).resolve()), rows)
    summary = (
        rows.filter(pc.not_equal(rows["item_id"], rows["set"]))
        .group_by(["set", "dup_level", "probe", "eval_format", "metric"])
        .aggregate([("value", "mean"), ("value", "count")])
    )
    table = Table("set", "dup level", "probe", "format", "metric", "mean", "items", title=title)
    for r in summary.sort_by(
        [
            ("set", "ascending"),
            ("probe", "ascending"),
            ("eval_format", "ascending"),
            ("metric", "ascending"),
            ("dup_level", "ascending"),
        ]
    ).to_pylist():
        table.add_row(
            r["set"],
            str(r["dup_level"]),
            r["probe"],
            r["eval_format"],
            r["metric"],
            f"{r['value_mean']:.4g}",
            str(r["value_count"]),
        )
    from taggant.jobs.report import console

    console().print(table)
    return 0


def _probe_checkpoint(args: argparse.Namespace, probes: ProbesSpec) -> tuple[pa.Table, str]:
    """Rows of the checkpoint ``--step`` of the run folder ``--checkpoint``, probed as the watchers
    probe it (``native.probe_checkpoint``), and a title."""
    from taggant.pipeline.probe.inputs import RunInputs
    from taggant.pipeline.probe.native import probe_checkpoint
    from taggant.pipeline.train.checkpoint import committed_steps

    for option, value in (("--run", args.run), ("--manifest", args.manifest)):
        if value is not None:
            raise ConfigError(
                [(option, "only with --hf: a checkpoint is probed on its own run's items")]
            )
    run_dir = _existing("--checkpoint", args.checkpoint)
    inputs = RunInputs.read(run_dir)
    steps = committed_steps(run_dir)
    if not steps:
        raise ConfigError([("--checkpoint", f"{run_dir} has no committed checkpoint yet")])
    step = steps[-1] if args.step is None else args.step
    if step not in steps:
        committed = ", ".join(map(str, steps))
        raise ConfigError(
            [
                (
                    "--step",
                    f"{step} is not a committed checkpoint of {run_dir}; "
                    f"committed steps: {committed}",
                )
            ]
        )
    probed = probe_checkpoint(run_dir, step, probes, inputs)
    return probed.rows, f"{Path(run_dir).name} step {step} ({probed.tokens_seen:,} tokens)"


def _probe_hf(args: argparse.Namespace, probes: ProbesSpec) -> tuple[pa.Table, str]:
    """Rows of the Hugging Face model ``--hf`` on the items of the run folder ``--run`` (with its
    canary references) or of the manifest folder ``--manifest``, tokenized with the model's own
    tokenizer, and a title."""
    from taggant.pipeline import manifest
    from taggant.pipeline.probe import hf
    from taggant.pipeline.probe.inputs import RunInputs
    from taggant.pipeline.probe.run import probe_model

    if args.step is not None:
        raise ConfigError([("--step", "only with --checkpoint")])
    if (args.run is None) == (args.manifest is None):
        raise ConfigError(
            [
                (
                    "--run",
                    "with --hf, give the items to probe: --run RUN_DIR (a run "
                    "folder: its items and canary references) or --manifest DIR (items "
                    "only)",
                )
            ]
        )
    if args.run:
        loaded = RunInputs.read(_existing("--run", args.run)).load()
        items, references, source = loaded.items, loaded.references, args.run
    else:
        items, references = manifest.read(_existing("--manifest", args.manifest))[0], None
        source = args.manifest
    model = hf.load(args.hf)
    rows = probe_model(
        model, items, probes, tokens_seen=0, references=references, manifest_tokens=False
    )
    return rows, f"{args.hf} on the items of {source}"


def _existing(option: str, path: str) -> str:
    resolved = Path(path).resolve()
    if not resolved.exists():
        raise ConfigError([(option, f"{path} does not exist")])
    return str(resolved)


def cmd_export(args: argparse.Namespace) -> int:
    from taggant.pipeline.train import checkpoint, hf

    run_dir = str(Path(args.run_dir).resolve())
    steps = checkpoint.committed_steps(run_dir)
    if not steps:
        raise ConfigError([("RUN_DIR", f"{run_dir} has no committed checkpoint")])
    step = args.step if args.step is not None else steps[-1]
    experiment = args.experiment
    train_spec = Path(run_dir).parent / "spec.yaml"  # written when the train stage finishes
    if experiment is None and not train_spec.exists():
        raise ConfigError(
            [
                (
                    "--experiment",
                    f"the train stage of {run_dir} has not finished, so "
                    "its spec.yaml is missing; pass --experiment NAME",
                )
            ]
        )
    if experiment is None:
        import yaml

        experiment = yaml.safe_load(train_spec.read_text())["name"]
    meta = hf.export_checkpoint(run_dir, step, str(Path(args.hf).resolve()), experiment)
    print(
        f"{args.hf}: {meta['run']} step {meta['step']} ({meta['tokens_seen']:,} tokens) as "
        "LlamaForCausalLM"
    )
    return 0


def cmd_export_benchmark(args: argparse.Namespace) -> int:
    from taggant.jobs import graph
    from taggant.pipeline import manifest
    from taggant.pipeline.benchmark_export import export_benchmark
    from taggant.pipeline.tokenize import TokenizeFolder
    from taggant.pipeline.train.hf import manifest_hash

    spec = _load(args)
    tokenize = {s.key.name: s for s in graph.build(spec)}["tokenize"]
    if tokenize.status != "done":
        raise ConfigError(
            [
                (
                    "SPEC",
                    f"its tokenize stage ({tokenize.folder}) is {tokenize.status}; "
                    f"run `taggant run {args.spec} --until tokenize` first",
                )
            ]
        )
    runs = spec.runs.grid()
    perturbed = [r.name for r in runs if r.perturbed]
    # Every perturbed run's manifest holds the same items; their occurrences differ.
    folder = TokenizeFolder(tokenize.folder).manifest(perturbed[0])
    items, _, _ = manifest.read(folder)
    about = {
        "experiment": spec.name,
        "seed": spec.seed,
        "manifest_hash": manifest_hash(folder),
        "perturbed_runs": perturbed,
        "standard_runs": [r.name for r in runs if not r.perturbed],
    }
    counts = export_benchmark(items, str(Path(args.out).resolve()), about)["counts"]
    for set_name, levels in counts.items():
        print(f"{set_name}: " + ", ".join(f"×{k}: {n}" for k, n in levels.items()))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    import json

    from taggant.jobs import report as render
    from taggant.pipeline import fit
    from taggant.pipeline.report import build
    from taggant.pipeline.spec import FitSpec, parse_section

    given = {k: v for k, v in vars(args).items() if k in FitSpec.model_fields and v is not None}
    store, experiment, recorded = _fit_source(args)
    settings = parse_section(FitSpec, {**recorded, **given}, "fit")
    report = build(fit.load(store, experiment, eval_format=args.eval_format), args.metric, settings)
    if args.json:  # allow_nan=False: a NaN that slipped through fails here, not as non-JSON
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
        return 0
    render.render(report, render.console(), f"the store at {store}")
    return 0


def _fit_source(args: argparse.Namespace) -> tuple[str, str | None, dict]:
    """The store and experiment ``fit`` reads, and the fit settings its options override: with
    ``--store``, as given (and the spec's defaults); with ``--work-dir`` or ``--job``, the store,
    experiment and ``fit`` section of the spec its run recorded (``jobs.resolved``)."""
    if (args.job is None) != (args.address is None):
        raise ConfigError([("--job", "--job JOB_ID and --address URL go together")])
    if args.store is not None:
        return args.store, args.experiment, {}
    found = _recorded(args.work_dir or args.job, args.address, args.experiment)
    return found.spec.store.url, found.spec.name, found.spec.fit.model_dump(mode="json")


def cmd_demo(args: argparse.Namespace) -> int:
    from taggant.pipeline import corpora
    from taggant.pipeline.spec import load_spec

    spec = load_spec(EXPERIMENTS / "demo.yaml", args.set or [])
    corpus_dir = Path(spec.work_dir) / "corpus"
    for kind in corpora.KINDS:
        target = corpus_dir / f"debian-{kind}.jsonl.zst"
        if not target.exists():
            corpora.write_jsonl_zst(corpora.debian_docs(kind), target)
    return _run(spec, address=None, num_cpus=args.num_cpus)


def _run(
    spec: ExperimentSpec, address: str | None, num_cpus: int | None, until: str | None = None
) -> int:
    from taggant.jobs import graph, resolved, runlog
    from taggant.jobs.runtime import ray_session
    from taggant.jobs.storage import check_work_dir
    from taggant.pipeline import io
    from taggant.pipeline.train import disk

    check_work_dir(spec.work_dir, until)
    disk.check_budget(spec)
    # The log is a local file: beside the stages, or in the temp dir when they are on an object store.
    logs = (
        io.join(spec.work_dir, "logs")
        if io.is_local(spec.work_dir)
        else str(Path(tempfile.gettempdir()) / "taggant" / spec.name / "logs")
    )
    _log_to(io.join(logs, f"run-{time.strftime('%Y%m%dT%H%M%S')}.log"))
    stages = graph.build(spec, until)
    # `taggant status|fit WORK_DIR` read the experiment as it runs from here: all its stages.
    every = stages if until is None else graph.build(spec)
    resolved.write(spec, {s.key.name: s.folder for s in every})
    with runlog.copy_console() as console, runlog.show_driver_log():
        with ray_session(address, num_cpus), runlog.copy_worker_stderr():
            graph.run(spec.model_dump(mode="json"), stages, console)
        _print_result(stages[-1])
    return 0


def _print_result(last) -> None:
    """The fit stage's report and plots, when it is the last stage that ran."""
    from taggant.pipeline import io

    if last.key.name == "fit":
        from taggant.jobs import report as render
        from taggant.pipeline.report import FitReport

        render.render(FitReport.read(last.folder), render.console(), "the store")
        print("plots: " + ", ".join(io.join(last.folder, p) for p in FitReport.PLOTS))


def _log_to(path: str) -> None:
    """Log to the file ``path`` from now on; what this command logged before moves there."""
    global _log_path, _log_handler
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if _log_handler is not None:
        logging.getLogger().removeHandler(_log_handler)
        _log_handler.close()
        if os.path.exists(_log_path):
            shutil.move(_log_path, path)
    _log_handler = logging.FileHandler(path)
    _log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(_log_handler)
    logging.getLogger().setLevel(logging.INFO)
    _log_path = path


def _close_log() -> None:
    """Stop logging to this command's file (``main`` may be called again in one process)."""
    global _log_path, _log_handler
    if _log_handler is not None:
        logging.getLogger().removeHandler(_log_handler)
        _log_handler.close()
    _log_path, _log_handler = None, None


def _default_log(command: str) -> str:
    """``$XDG_CACHE_HOME/taggant/logs/<command>-<time>-<random>.log`` (``~/.cache`` by
    default): one file per call, however many calls a second or a process makes."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    name = f"{command}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.log"
    return os.path.join(cache, "taggant", "logs", name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taggant", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def with_spec(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("spec", help="experiment spec (YAML)")
        p.add_argument("--set", action="append", metavar="a.b=v", help="override a spec field")
        return p

    with_spec("validate", "check a spec; no Ray, no GPU").set_defaults(func=cmd_validate)
    with_spec("plan", "show the stage graph, hashes and status").set_defaults(func=cmd_plan)
    run = with_spec("run", "run the experiment on an embedded local Ray or a cluster")
    _ray_options(run)
    run.add_argument(
        "--until",
        metavar="STAGE",
        help="run only this stage and the stages it depends on (e.g. dedup)",
    )
    run.set_defaults(func=cmd_run)
    dedup = sub.add_parser(
        "dedup", help="ingest and deduplicate corpus files (exact + MinHash-LSH)"
    )
    dedup.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="JSONL(.zst/.gz) or Parquet files, folders, globs",
    )
    dedup.add_argument(
        "--out", required=True, help="work folder; the deduped shards' folder is printed"
    )
    dedup.add_argument("--threshold", type=float, help="Jaccard threshold (default 0.8)")
    dedup.add_argument("--num-perm", type=int, help="MinHash permutations (default 128)")
    dedup.add_argument("--ngram", type=int, help="words per shingle (default 5)")
    dedup.add_argument("--bands", type=int, help="LSH bands (default: chosen from the threshold)")
    dedup.add_argument("--rows", type=int, help="rows per band (set with --bands)")
    _ray_options(dedup)
    dedup.set_defaults(func=cmd_dedup)
    submit = with_spec("submit", "submit the experiment to a Ray cluster (Ray Jobs API)")
    submit.add_argument(
        "--address",
        required=True,
        help="the cluster's dashboard URL, e.g. http://127.0.0.1:8265 "
        "(through kubectl port-forward or an SSH tunnel)",
    )
    submit.add_argument(
        "--follow",
        action="store_true",
        help="stream the job's logs until it ends; exit 1 unless it succeeded",
    )
    submit.add_argument("--until", metavar="STAGE", help="stop after this stage")
    submit.add_argument(
        "--env",
        action="append",
        metavar="NAME[=VALUE]",
        help="an environment variable for the job (its value here without "
        "=VALUE), e.g. AWS_ENDPOINT_URL; never a secret",
    )
    submit.set_defaults(func=cmd_submit)
    status = sub.add_parser("status", help="each stage's status and stats, and each run's")
    status.add_argument(
        "spec",
        metavar="SPEC|WORK_DIR|JOB_ID",
        help="a spec file (with its --set overrides), a work dir where a run started (it "
        "records the experiment as it ran), or with --address a submitted job's id",
    )
    status.add_argument("--set", action="append", metavar="a.b=v", help="override a spec field")
    status.add_argument(
        "--experiment", help="with WORK_DIR or JOB_ID: which one, if the work dir holds several"
    )
    status.add_argument("--address", help="the Ray dashboard URL of the cluster that ran JOB_ID")
    status.set_defaults(func=cmd_status)
    audit = sub.add_parser("audit", help="check a run's sample stream against its manifest")
    audit.add_argument("run_dir", help="a run folder of the train stage (<work_dir>/train-*/<run>)")
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.set_defaults(func=cmd_audit)
    materialize = sub.add_parser(
        "materialize", help="write a run's perturbed stream as a stock Megatron dataset"
    )
    materialize.add_argument("run_dir", help="a perturbed run folder of the train stage")
    materialize.add_argument("out", help="output folder for the .bin/.idx and document order")
    materialize.set_defaults(func=cmd_materialize)
    probe = sub.add_parser(
        "probe", help="probe a checkpoint or a Hugging Face model on a run's items"
    )
    target = probe.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--checkpoint",
        metavar="RUN_DIR",
        help="a run folder of the train stage (<work_dir>/train-*/<run>)",
    )
    target.add_argument(
        "--hf", metavar="MODEL", help="a local Hugging Face model folder or .gguf file"
    )
    probe.add_argument("--step", type=int, help="checkpoint step (default: the newest committed)")
    probe.add_argument(
        "--run", metavar="RUN_DIR", help="with --hf: the run folder whose items to probe"
    )
    probe.add_argument(
        "--manifest",
        metavar="DIR",
        help="with --hf: a manifest folder whose items to probe (no canary references)",
    )
    probe.add_argument(
        "--probes",
        default="loss,exact_match",
        help="comma-separated probe names (default: loss,exact_match)",
    )
    probe.add_argument("--prefix-tokens", type=int, help="prompt tokens for items without a prompt")
    probe.add_argument(
        "--suffix-tokens", type=int, help="most target tokens an extraction must reproduce"
    )
    probe.add_argument("--batch-items", type=int, help="sequences per forward pass")
    probe.add_argument("--out", help="write the long-format rows to this Parquet file")
    probe.set_defaults(func=cmd_probe)
    export = sub.add_parser("export", help="a checkpoint as a Hugging Face LlamaForCausalLM folder")
    export.add_argument("run_dir", metavar="RUN_DIR", help="a run folder of the train stage")
    export.add_argument("--step", type=int, help="checkpoint step (default: the newest committed)")
    export.add_argument("--hf", required=True, metavar="OUT", help="output folder")
    export.add_argument(
        "--experiment",
        help="experiment name for the metadata (default: from the train stage's spec.yaml)",
    )
    export.set_defaults(func=cmd_export)
    bench = with_spec("export-benchmark", "members and controls as open-unlearning and MIMIR files")
    bench.add_argument("--out", required=True, help="output folder")
    bench.set_defaults(func=cmd_export_benchmark)
    fit = sub.add_parser(
        "fit", help="scaling-law fits, membership inference and the one-run audit from a store"
    )
    source = fit.add_mutually_exclusive_group(required=True)
    source.add_argument("--store", help="store URL (any fsspec URL)")
    source.add_argument(
        "--work-dir",
        help="a work dir where a run started: its recorded spec gives the store, the experiment "
        "and the fit settings (options below override them)",
    )
    source.add_argument("--job", metavar="JOB_ID", help="as --work-dir, for a submitted job")
    fit.add_argument("--address", help="with --job: the Ray dashboard URL of its cluster")
    fit.add_argument(
        "--metric", default="loss.nll_mean", help="<probe>.<metric> to fit (default loss.nll_mean)"
    )
    fit.add_argument(
        "--experiment", help="only this experiment (with --work-dir: which one, if several)"
    )
    fit.add_argument(
        "--eval-format",
        default=CANONICAL,
        help=f"the rendering whose probe rows to fit: {CANONICAL} (default: the items' own texts), "
        "variant:<k> or a test-set format (the store's eval_format column)",
    )
    fit.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: fits, levels, membership, skipped, pairs_needed",
    )
    fit.add_argument(
        "--audit-attack", help="attack of the headline ε (default loss; spec: fit.audit_attack)"
    )
    fit.add_argument(
        "--audit-step",
        type=lambda v: v if v == "last" else int(v),
        help="checkpoint of the headline ε: last (default) or a step (spec: fit.audit_step)",
    )
    fit.add_argument("--audit-delta", type=float, help="δ of the audit (default 0)")
    fit.add_argument("--confidence", type=float, help="of ε bounds and intervals (default 0.95)")
    fit.set_defaults(func=cmd_fit)
    demo = sub.add_parser("demo", help="the shipped demo on real Debian text, end to end")
    demo.add_argument("--set", action="append", metavar="a.b=v", help="override a demo spec field")
    demo.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all)")
    demo.set_defaults(func=cmd_demo)
    return parser


def _ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray address of an existing cluster (default: embedded)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to(_default_log(args.command))
    log.info("taggant %s", " ".join(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except Interrupted as e:
        log.warning("taggant %s interrupted by %s", args.command, e.signal_name)
        print(
            f"interrupted by {e.signal_name}: stopped; run the same command again to resume "
            f"(finished stages and committed checkpoints are kept; log: {_log_path})",
            file=sys.stderr,
        )
        return e.exit_code
    except Exception as e:  # noqa: BLE001 — the CLI's one boundary: log it whole, say it in a line
        cause = _cause(e)
        if isinstance(cause, ConfigError):
            for path, message in cause.problems:
                print(f"{path}: {message}", file=sys.stderr)
            return 2
        log.exception("taggant %s failed", args.command)
        # A TaggantError's message already says the fix; anything else is named by its type.
        line = one_line(cause, with_type=not isinstance(cause, TaggantError))
        print(f"error: {line} (log: {_log_path})", file=sys.stderr)
        return 1
    finally:
        _close_log()


def _cause(error: Exception) -> BaseException:
    """The error a Ray task raised, for one that ``ray.get`` re-raised (whose message is the
    remote traceback); any other error itself. Ray is not imported for this: an error from a task
    means it already was."""
    ray_exceptions = sys.modules.get("ray.exceptions")
    while (
        ray_exceptions
        and isinstance(error, ray_exceptions.RayTaskError)
        and error.cause is not None
    ):
        error = error.cause
    return error
