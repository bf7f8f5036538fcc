"""The ``taggant`` command line.

Exit codes: 0 success; 2 spec errors, one ``field.path: message`` line each; 1 runtime failure,
with a one-line cause and the path of the log holding the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline import io
from pipeline.errors import ConfigError
from pipeline.spec import CorpusSpec, DedupSpec, ExperimentSpec, load_spec, parse_section

EXPERIMENTS = Path(__file__).parent / "experiments"
log = logging.getLogger("taggant")
_log_path: str | None = None


def _load(args: argparse.Namespace) -> ExperimentSpec:
    return load_spec(args.spec, args.set or [])


def cmd_validate(args: argparse.Namespace) -> int:
    spec = _load(args)
    n_sets = len(spec.perturbations)
    print(f"{args.spec}: valid — experiment {spec.name!r}, {n_sets} perturbation set(s)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from jobs import graph

    spec = _load(args)
    table = Table("stage", "hash", "status", "folder")
    for s in graph.build(spec):
        table.add_row(s.key.name, s.key.hash[:8], s.status, s.folder)
    Console().print(table)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    spec = _load(args)
    return _run(spec, args.address, args.num_cpus)


def cmd_dedup(args: argparse.Namespace) -> int:
    from jobs import graph
    from jobs.runtime import ray_session

    corpus = parse_section(CorpusSpec, {"paths": [str(Path(p).resolve()) for p in args.inputs]}, "corpus")
    options = {k: v for k, v in {"threshold": args.threshold, "num_perm": args.num_perm,
                                 "ngram_words": args.ngram, "bands": args.bands, "rows": args.rows}.items()
               if v is not None}
    dedup = parse_section(DedupSpec, options, "dedup")
    out = str(Path(args.out).resolve())
    _log_to(io.join(out, "logs", f"dedup-{time.strftime('%Y%m%dT%H%M%S')}.log"))
    stages = graph.data_stages(corpus, dedup, out)
    resolved = {"corpus": corpus.model_dump(mode="json"), "dedup": dedup.model_dump(mode="json")}
    with ray_session(args.address, args.num_cpus):
        graph.run(resolved, stages, Console(stderr=True))
    print(stages[-1].folder)
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    import json

    from pipeline.fit import fit_store

    fits = fit_store(args.store, args.metric, args.experiment)
    if args.json:
        print(json.dumps([f.to_dict() for f in fits], indent=2))
        return 0
    table = Table("fit", "set", "x", "y", "slope", "95% CI", "r²", "n", "filter", title=f"fits of {args.metric}")
    for f in fits:
        table.add_row(f.name, f.set, f.x, f.y, f"{f.slope:+.3f}", f"[{f.ci_low:+.3f}, {f.ci_high:+.3f}]",
                      f"{f.r2:.2f}", str(f.n), f.filter)
    Console().print(table if fits else f"no fit: the store at {args.store} has no rows for {args.metric}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline import corpora

    spec = load_spec(EXPERIMENTS / "demo.yaml", args.set or [])
    corpus_dir = Path(spec.work_dir) / "corpus"
    for kind in corpora.KINDS:
        target = corpus_dir / f"debian-{kind}.jsonl.zst"
        if not target.exists():
            corpora.write_jsonl_zst(corpora.debian_docs(kind), target)
    return _run(spec, address=None, num_cpus=args.num_cpus)


def _run(spec: ExperimentSpec, address: str | None, num_cpus: int | None) -> int:
    from jobs import graph
    from jobs.runtime import ray_session

    _log_to(io.join(spec.work_dir, "logs", f"run-{time.strftime('%Y%m%dT%H%M%S')}.log"))
    console = Console(stderr=True)
    stages = graph.build(spec)
    with ray_session(address, num_cpus):
        graph.run(spec.model_dump(mode="json"), stages, console)
    return 0


def _log_to(path: str) -> None:
    global _log_path
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    _log_path = path


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
    run.set_defaults(func=cmd_run)
    dedup = sub.add_parser("dedup", help="ingest and deduplicate corpus files (exact + MinHash-LSH)")
    dedup.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL(.zst/.gz) or Parquet files, folders, globs")
    dedup.add_argument("--out", required=True, help="work folder; the deduped shards' folder is printed")
    dedup.add_argument("--threshold", type=float, help="Jaccard threshold (default 0.8)")
    dedup.add_argument("--num-perm", type=int, help="MinHash permutations (default 128)")
    dedup.add_argument("--ngram", type=int, help="words per shingle (default 5)")
    dedup.add_argument("--bands", type=int, help="LSH bands (default: chosen from the threshold)")
    dedup.add_argument("--rows", type=int, help="rows per band (set with --bands)")
    _ray_options(dedup)
    dedup.set_defaults(func=cmd_dedup)
    fit = sub.add_parser("fit", help="scaling-law fits from a results store")
    fit.add_argument("--store", required=True, help="store URL (any fsspec URL)")
    fit.add_argument("--metric", default="suffix_loss", help="probe metric to fit (default suffix_loss)")
    fit.add_argument("--experiment", help="only this experiment")
    fit.add_argument("--json", action="store_true", help="print a JSON list of fits")
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
    try:
        return args.func(args)
    except ConfigError as e:
        for path, message in e.problems:
            print(f"{path}: {message}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 — the CLI's one boundary: log it whole, say it in a line
        log.exception("taggant %s failed", args.command)
        where = f" (log: {_log_path})" if _log_path else ""
        print(f"error: {type(e).__name__}: {e}{where}", file=sys.stderr)
        return 1
