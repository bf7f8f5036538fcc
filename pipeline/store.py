"""The results store: hive-partitioned Parquet on any fsspec filesystem.

Layout under the store URL::

    probes/experiment=<id>/run=<id>/step=<n>/<probe>-<shard:05d>.parquet   long-format probe rows
    checkpoints/experiment=<id>/run=<id>/step=<n>/commit.parquet          one row: the commit record
    runs/experiment=<id>/run=<id>/run.parquet                             one row per run
    items/experiment=<id>/run=<id>/items.parquet                          the run's items and exposures
    mia/experiment=<id>/run=<id>/mia.parquet                              membership inference + audit

Partition values live in the paths only (readers add them back as columns). A checkpoint becomes
visible when its commit record exists, which ``commit_checkpoint`` writes after every probe file
of that step: it lists those files and their total rows. ``read_probes`` reads exactly the listed
files of committed steps and refuses a step whose files are missing or hold other rows than its
record. Probe file names are deterministic and ``begin_checkpoint`` clears a step before it is
(re-)probed, so probing a checkpoint again replaces its rows instead of adding to them. Any reader
of hive Parquet works too (pandas, DuckDB, polars: a killed writer's temp file matches no
``*.parquet`` glob, see ``io.temp_path``), it just sees uncommitted rows; ``read_probes`` is the
safe path.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from taggant.pipeline import io
from taggant.pipeline.errors import DataError

SCHEMA_VERSION = 4
"""2: commit records list their files. 3: probe rows and commit records carry ``probe_config``.
4: probe rows carry ``eval_format``, the rendering they measured."""

PROBE_SCHEMA = pa.schema(
    [
        ("tokens_seen", pa.int64()),
        ("item_id", pa.string()),
        ("set", pa.string()),
        ("kind", pa.string()),
        ("dup_level", pa.int32()),
        ("probe", pa.string()),
        ("probe_version", pa.string()),
        ("probe_config", pa.string()),
        ("eval_format", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("schema_version", pa.int32()),
    ]
)
"""Columns stored in probe files; ``experiment``, ``run`` and ``step`` come from the path.
``probe_config`` is the hash of the probe pass that wrote the row (``pipeline.probe.run.
probe_config``: the probes' names and versions and every setting that changes a value).
``eval_format`` is the rendering of the item the row measured (``pipeline.eval_format``: its
own text, one of its per-copy variants, a test-set format): an item has one row per (probe,
eval_format, metric), and a reader picks a format (``fit.load`` reads ``canonical`` unless
asked)."""

CHECKPOINT_SCHEMA = pa.schema(
    [
        ("tokens_seen", pa.int64()),
        ("probes", pa.list_(pa.string())),
        ("probe_config", pa.string()),
        ("files", pa.list_(pa.string())),
        ("num_rows", pa.int64()),
        ("schema_version", pa.int32()),
    ]
)
"""A commit record: the versions of the probes that wrote the step, the hash of their
configuration (the ``probe_config`` of every row of the step), its probe files (names inside the
step's folder) and their total rows."""
ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("set", pa.string()),
        ("kind", pa.string()),
        ("dup_level", pa.int32()),
        ("phase_start", pa.float64()),
        ("phase_end", pa.float64()),
        ("first_step", pa.int64()),
        ("last_step", pa.int64()),
    ]
)
"""A run's items: their set's phase window (fractions of training) and the first and last step
that trained on them (-1 for controls and for every item of a standard run), so fits need nothing
but the store."""
MIA_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("set", pa.string()),
        ("dup_level", pa.int32()),
        ("attack", pa.string()),
        ("members", pa.int64()),
        ("controls", pa.int64()),
        ("auroc", pa.float64()),
        ("auroc_ci_low", pa.float64()),
        ("auroc_ci_high", pa.float64()),
        ("auroc_ci_reason", pa.string()),
        ("auroc_ci_method", pa.string()),
        ("auroc_p", pa.float64()),
        ("auroc_p_method", pa.string()),
        ("auroc_p_holm", pa.float64()),
        ("tpr_at_1pct_fpr", pa.float64()),
        ("tpr_at_1pct_fpr_ci_low", pa.float64()),
        ("tpr_at_1pct_fpr_ci_high", pa.float64()),
        ("tpr_at_1pct_fpr_false_positives", pa.int64()),
        ("tpr_at_1pct_fpr_reason", pa.string()),
        ("tpr_at_0p1pct_fpr", pa.float64()),
        ("tpr_at_0p1pct_fpr_ci_low", pa.float64()),
        ("tpr_at_0p1pct_fpr_ci_high", pa.float64()),
        ("tpr_at_0p1pct_fpr_false_positives", pa.int64()),
        ("tpr_at_0p1pct_fpr_reason", pa.string()),
        ("fpr", pa.list_(pa.float64())),
        ("tpr", pa.list_(pa.float64())),
        ("epsilon_lb", pa.float64()),
        ("epsilon_lb_per_copy", pa.float64()),
        ("audit_neighbour", pa.string()),
        ("audit_copies", pa.int64()),
        ("audit_delta", pa.float64()),
        ("audit_pairs", pa.int64()),
        ("audit_guesses", pa.int64()),
        ("audit_correct", pa.int64()),
        ("audit_confidence", pa.float64()),
        ("version", pa.string()),
    ]
)
"""A run's membership inference (``pipeline.mia``, ``mia.v2``), one row per (step, set, dup level,
attack): AUROC with its CI (``auroc_ci_method``), the one-sided randomization p-value of "members
score higher" (``auroc_p``, computed as ``auroc_p_method`` says) and its Holm adjustment over all
rows of the (experiment, run, step) (``auroc_p_holm``); TPR at 1% and 0.1% FPR with a
control-calibrated threshold, its CI and the controls above that threshold (all null with a
reason below 10/FPR controls); the empirical ROC; and the one-run audit's ε lower bound
(``pipeline.privacy_audit``) for ``audit_neighbour`` ("replace-one") datasets differing in all
``audit_copies`` (= dup level) copies of an item, at ``audit_delta``, with ``epsilon_lb_per_copy``
= ``epsilon_lb / (2·audit_copies)``, the add/remove bound per copy."""
PARTITIONS = pa.schema([("experiment", pa.string()), ("run", pa.string()), ("step", pa.int64())])


def _step_dir(url: str, experiment: str, run: str, step: int) -> str:
    return io.join(url, "probes", f"experiment={experiment}", f"run={run}", f"step={step}")


def _commit_path(url: str, experiment: str, run: str, step: int) -> str:
    return io.join(
        url,
        "checkpoints",
        f"experiment={experiment}",
        f"run={run}",
        f"step={step}",
        "commit.parquet",
    )


class StoreWriter:
    """Writes one experiment's rows; every method is idempotent for the same arguments."""

    def __init__(self, url: str, experiment: str):
        self.url = url
        self.experiment = experiment

    def write_run(self, run: str, meta: dict[str, Any]) -> None:
        """Record a run's metadata (model size, token budget, seed, perturbed, ...).

        Raises:
            ValueError: ``meta`` holds a partition column (``experiment``, ``run``): those live
                in the path only, or readers of hive Parquet (pandas) see two types for one column.
        """
        if {"experiment", "run"} & meta.keys():
            raise ValueError(f"run metadata {sorted(meta)} must not hold `experiment` or `run`")
        table = pa.Table.from_pylist([{**meta, "schema_version": SCHEMA_VERSION}])
        io.write_table(
            io.join(self.url, "runs", f"experiment={self.experiment}", f"run={run}", "run.parquet"),
            table,
        )

    def write_items(self, run: str, items: pa.Table) -> None:
        """Record the run's items (``ITEM_SCHEMA``): what was inserted, how often and when."""
        path = io.join(
            self.url, "items", f"experiment={self.experiment}", f"run={run}", "items.parquet"
        )
        io.write_table(path, items.select(ITEM_SCHEMA.names).cast(ITEM_SCHEMA).sort_by("item_id"))

    def write_mia(self, run: str, rows: pa.Table) -> None:
        """Record the run's membership inference (``MIA_SCHEMA``), replacing any earlier one."""
        path = io.join(
            self.url, "mia", f"experiment={self.experiment}", f"run={run}", "mia.parquet"
        )
        io.write_table(path, rows.select(MIA_SCHEMA.names).cast(MIA_SCHEMA))

    def begin_checkpoint(self, run: str, step: int) -> None:
        """Hide a step and drop its rows, so it can be probed (again) from nothing."""
        io.remove(_commit_path(self.url, self.experiment, run, step))
        io.remove(_step_dir(self.url, self.experiment, run, step))

    def write_probe_rows(self, run: str, step: int, probe: str, shard: int, rows: pa.Table) -> None:
        """Write the rows of one probe shard of a checkpoint (``PROBE_SCHEMA`` columns)."""
        path = io.join(
            _step_dir(self.url, self.experiment, run, step), f"{probe}-{shard:05d}.parquet"
        )
        io.write_table(path, rows.select(PROBE_SCHEMA.names).cast(PROBE_SCHEMA))

    def commit_checkpoint(
        self,
        run: str,
        step: int,
        tokens_seen: int,
        probes: list[str],
        probe_config: str,
        num_rows: int,
    ) -> None:
        """Make the step visible: written last, after all of its probe files, whichever writers
        wrote them. The record lists every probe file of the step's folder.

        Args:
            probes: the versions of the probes that wrote the rows (``registry.Probe.version``,
                e.g. ``loss.v1``).
            probe_config: the hash of the probe configuration the rows were written with (their
                ``probe_config`` column): a step probed with another one is probed again.
            num_rows: the rows written, checked against the files' footers.

        Raises:
            DataError: those files do not hold ``num_rows`` rows (a writer failed or another
                one wrote into the step); nothing is committed.
        """
        folder = _step_dir(self.url, self.experiment, run, step)
        files = [f.rsplit("/", 1)[-1] for f in io.glob(io.join(folder, "*.parquet"))]
        stored = sum(io.parquet_rows(io.join(folder, f)) for f in files)
        if stored != num_rows:
            raise DataError(
                f"run {run} step {step}: the probe files {files} in {folder} hold "
                f"{stored} rows, not the {num_rows} probed; probe the step again"
            )
        record = pa.Table.from_pylist(
            [
                {
                    "tokens_seen": tokens_seen,
                    "probes": sorted(probes),
                    "probe_config": probe_config,
                    "files": files,
                    "num_rows": num_rows,
                    "schema_version": SCHEMA_VERSION,
                }
            ],
            schema=CHECKPOINT_SCHEMA,
        )
        io.write_table(_commit_path(self.url, self.experiment, run, step), record)


def _dataset(url: str, table: str, schema: pa.Schema | None = None) -> ds.Dataset | None:
    fs, path = io.filesystem(io.join(url, table))
    if not fs.exists(path):
        return None
    partitions = (
        PARTITIONS if table in ("probes", "checkpoints") else pa.schema(list(PARTITIONS)[:2])
    )
    return ds.dataset(
        path,
        filesystem=fs,
        format="parquet",
        schema=schema,
        partitioning=ds.partitioning(partitions, flavor="hive"),
    )


def read_checkpoints(url: str, experiment: str | None = None) -> pa.Table:
    """Committed checkpoints: ``experiment, run, step`` and their commit records
    (``CHECKPOINT_SCHEMA``)."""
    schema = pa.unify_schemas([CHECKPOINT_SCHEMA, PARTITIONS])
    dataset = _dataset(url, "checkpoints", schema)
    if dataset is None:
        return schema.empty_table()
    flt = ds.field("experiment") == experiment if experiment else None
    return dataset.to_table(filter=flt).sort_by(
        [("experiment", "ascending"), ("run", "ascending"), ("step", "ascending")]
    )


def read_runs(url: str, experiment: str | None = None) -> pa.Table:
    """Run metadata, one row per run."""
    return _read_per_run(url, "runs", None, experiment)


def read_items(url: str, experiment: str | None = None) -> pa.Table:
    """Items of every run (``ITEM_SCHEMA`` plus ``experiment, run``)."""
    return _read_per_run(
        url, "items", pa.unify_schemas([ITEM_SCHEMA, pa.schema(list(PARTITIONS)[:2])]), experiment
    )


def read_mia(url: str, experiment: str | None = None) -> pa.Table:
    """Membership inference of every run (``MIA_SCHEMA`` plus ``experiment, run``)."""
    return _read_per_run(
        url, "mia", pa.unify_schemas([MIA_SCHEMA, pa.schema(list(PARTITIONS)[:2])]), experiment
    )


def _read_per_run(
    url: str, table: str, schema: pa.Schema | None, experiment: str | None
) -> pa.Table:
    dataset = _dataset(url, table, schema)
    if dataset is None:
        return schema.empty_table() if schema else pa.table({})
    flt = ds.field("experiment") == experiment if experiment else None
    return dataset.to_table(filter=flt).sort_by([("experiment", "ascending"), ("run", "ascending")])


def read_probes(
    url: str,
    filter: ds.Expression | None = None,
    columns: list[str] | None = None,
    probe_config: str | None = None,
) -> pa.Table:
    """Probe rows of committed checkpoints only, with ``experiment, run, step`` columns, all of
    one probe configuration per experiment.

    Args:
        filter: a pyarrow dataset expression, e.g. ``ds.field("probe") == "loss"``.
        columns: columns to return (all by default).
        probe_config: read only the rows written with this configuration
            (``pipeline.probe.run.probe_config`` of the spec's probes); ``None`` reads every row.

    Raises:
        DataError: a committed step's listed files are missing, hold other rows than its commit
            record says, or the record predates file lists (``schema_version`` < 2); the rows
            read hold more than one ``probe_config`` in one experiment (a probe setting changed
            and not every checkpoint was probed again): results of two settings never mix.
    """
    schema = pa.unify_schemas([PROBE_SCHEMA, PARTITIONS])
    if probe_config is not None:
        chosen = ds.field("probe_config") == probe_config
        filter = chosen if filter is None else filter & chosen
    files = _committed_files(url)
    if not files:
        return schema.empty_table() if columns is None else schema.empty_table().select(columns)
    fs, root = io.filesystem(io.join(url, "probes"))
    dataset = ds.dataset(
        files,
        filesystem=fs,
        format="parquet",
        schema=schema,
        partition_base_dir=root,
        partitioning=ds.partitioning(PARTITIONS, flavor="hive"),
    )
    rows = (
        dataset.to_table(filter=filter)
        .select(schema.names)
        .sort_by(
            [
                ("experiment", "ascending"),
                ("run", "ascending"),
                ("step", "ascending"),
                ("probe", "ascending"),
                ("item_id", "ascending"),
                ("eval_format", "ascending"),
                ("metric", "ascending"),
            ]
        )
    )
    _refuse_mixed_configs(rows)
    return rows.select(columns) if columns else rows


def _refuse_mixed_configs(rows: pa.Table) -> None:
    """Raise ``DataError`` naming the configurations (and their steps per run) of any experiment
    whose rows come from more than one probe configuration."""
    steps = rows.group_by(["experiment", "probe_config", "run"]).aggregate(
        [("step", "count_distinct")]
    )
    by_experiment: dict[str, dict[str | None, list[str]]] = {}
    for r in steps.sort_by([("run", "ascending")]).to_pylist():
        runs = by_experiment.setdefault(r["experiment"], {}).setdefault(r["probe_config"], [])
        runs.append(f"{r['run']}: {r['step_count_distinct']} steps")
    for experiment, configs in sorted(by_experiment.items()):
        if len(configs) > 1:
            shown = "; ".join(
                f"{config or 'none recorded'} ({', '.join(runs)})"
                for config, runs in sorted(configs.items(), key=lambda kv: kv[0] or "")
            )
            raise DataError(
                f"experiment {experiment}: its probe rows come from {len(configs)} probe "
                f"configurations: {shown}; run the probe stage again (taggant run) to re-probe "
                "every checkpoint with the spec's probe settings, or read one configuration with "
                "read_probes(..., probe_config=...) (checkpoints deleted by keep_last keep the "
                "rows of their old configuration)"
            )


def _committed_files(url: str) -> list[str]:
    """Paths (inside the store's filesystem) of the probe files of every committed step, after
    checking each step's files against its commit record."""
    paths = []
    for c in read_checkpoints(url).to_pylist():
        where = f"run {c['run']} step {c['step']} of experiment {c['experiment']}"
        if c["files"] is None:
            raise DataError(
                f"{where}: its commit record (schema_version "
                f"{c['schema_version']}) lists no files; the store predates "
                f"schema_version {SCHEMA_VERSION}: probe into a new store"
            )
        folder = _step_dir(url, c["experiment"], c["run"], c["step"])
        urls = [io.join(folder, f) for f in c["files"]]
        missing = [f for f, u in zip(c["files"], urls) if not io.exists(u)]
        if missing:
            raise DataError(
                f"{where}: its file {', '.join(missing)} in {folder} is missing; probe "
                "the step again (taggant run re-probes it once its commit record is "
                "removed)"
            )
        stored = sum(io.parquet_rows(u) for u in urls)
        if stored != c["num_rows"]:
            raise DataError(
                f"{where}: its files hold {stored} rows, its commit record "
                f"{c['num_rows']}; a file was replaced after the commit: probe the step "
                "again"
            )
        paths += [io.filesystem(u)[1] for u in urls]
    return paths
