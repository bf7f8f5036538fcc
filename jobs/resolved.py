"""The resolved spec of an experiment (overrides applied, paths absolute), kept with its work dir
so that ``taggant status`` and ``taggant fit`` address an experiment by its work dir, or by the
Ray job that ran it, instead of by its spec file and every ``--set`` it was run with.

``taggant run`` (and so a submitted job, whose driver runs it) writes, when it starts:

- ``<work_dir>/experiments/<name>/spec.yaml``: the spec as it runs; a spec file itself, so
  ``taggant run|plan|status`` take it as well;
- ``<work_dir>/experiments/<name>/stages.json``: every stage's folder, by stage name in run
  order, as the graph was built then (so reading the status needs no corpus listing).

One work dir can hold several experiments (stage folders are content-addressed); each has its
own record under its name, and the newest run of a name replaces its record.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from taggant.pipeline import io
from taggant.pipeline.errors import ConfigError
from taggant.pipeline.spec import ExperimentSpec, parse_spec

RECORDS = "experiments"
"""The folder under ``work_dir`` holding one record folder per experiment name."""


@dataclass(frozen=True)
class Resolved:
    """An experiment as its newest run resolved it."""

    spec: ExperimentSpec
    stages: dict[str, str]
    """Stage name → folder, in run order."""
    source: str
    """The record's spec file (named in what ``status`` prints)."""


def record_dir(work_dir: str, name: str) -> str:
    return io.join(work_dir, RECORDS, name)


def write(spec: ExperimentSpec, stages: dict[str, str]) -> str:
    """Record ``spec`` (resolved: ``load_spec``'s paths are absolute) and its stage folders under
    its work dir; returns the record's spec file."""
    folder = record_dir(spec.work_dir, spec.name)
    io.write_json(io.join(folder, "stages.json"), {"stages": list(stages.items())})
    spec_file = io.join(folder, "spec.yaml")
    io.write_text(spec_file, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    return spec_file


def read(work_dir: str, experiment: str | None = None) -> Resolved:
    """The record of ``experiment`` in ``work_dir``, or of its only experiment when ``None``.

    Raises:
        ConfigError: ``work_dir`` holds no record (no run started there), none of that name, or
            several and no ``experiment`` was named (it never guesses among them).
    """
    names = experiments(work_dir)
    if not names:
        raise ConfigError(
            [
                (
                    "WORK_DIR",
                    f"{work_dir} holds no experiment record ({RECORDS}/<name>/spec.yaml, written "
                    "when `taggant run` or a submitted job starts): give the run's work_dir, or "
                    "the spec file with the --set overrides it ran with",
                )
            ]
        )
    if experiment is None and len(names) > 1:
        raise ConfigError(
            [("--experiment", f"{work_dir} holds {', '.join(names)}: name one with --experiment")]
        )
    name = experiment if experiment is not None else names[0]
    if name not in names:
        raise ConfigError(
            [("--experiment", f"no experiment {name!r} in {work_dir}; it holds {', '.join(names)}")]
        )
    folder = record_dir(work_dir, name)
    spec_file = io.join(folder, "spec.yaml")
    fs, path = io.filesystem(spec_file)
    with fs.open(path, "r") as f:
        spec = parse_spec(yaml.safe_load(f))
    stages = dict(io.read_json(io.join(folder, "stages.json"))["stages"])
    return Resolved(spec, stages, spec_file)


def experiments(work_dir: str) -> list[str]:
    """The names of the experiments recorded in ``work_dir``, sorted."""
    specs = io.glob(io.join(work_dir, RECORDS, "*", "spec.yaml"))
    return sorted(spec.rstrip("/").split("/")[-2] for spec in specs)


def from_job(address: str, job_id: str, experiment: str | None = None) -> Resolved:
    """The record of the experiment a submitted job runs, found through the Jobs API: the job's
    metadata names its work dir and experiment (``jobs.submit.submit`` puts them there).

    Raises:
        SubmitError: the cluster cannot be reached, refuses the token, or knows no such job.
        ConfigError: as ``read``; or the job was submitted without a work dir in its metadata.
    """
    from taggant.jobs.submit import job_metadata

    metadata = job_metadata(address, job_id)
    if "work_dir" not in metadata:
        raise ConfigError(
            [
                (
                    "JOB_ID",
                    f"job {job_id}'s metadata names no work_dir (submitted by an older "
                    "taggant): give its work dir instead",
                )
            ]
        )
    return read(metadata["work_dir"], experiment or metadata.get("experiment"))
