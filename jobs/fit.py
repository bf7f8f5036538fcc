"""The fit stage: scaling-law fits and the standard plots from the store, into the stage folder."""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from taggant.pipeline import fit, io, mia, privacy_audit, store
from taggant.pipeline.fit import DEFAULT_METRIC
from taggant.pipeline.spec import ExperimentSpec
from taggant.pipeline.stage import StageDecl

STAGE = StageDecl(
    name="fit",
    version=fit.FIT_VERSION,
    inputs=("probe",),  # reads the store, which the probe stage completes
    config=lambda spec: {"store": spec.store.url},
    execute=lambda context: run(context.spec, context.folder),
)


def run(spec: ExperimentSpec, folder: str, metric: str = DEFAULT_METRIC) -> dict[str, Any]:
    """Fits, gap to controls per dup level, membership inference and the one-run audit from the
    store, into the stage folder: ``fits.json``, ``levels.json``, ``membership.json`` (each run's
    last checkpoint; every checkpoint, ROC arrays included, goes to the store's ``mia`` table),
    and the plots ``dose_response.png``, ``over_training.png``, ``auroc.png``; returns the stage
    stats, which list the sets left out for want of controls."""
    from taggant.pipeline import plots  # matplotlib: not imported when the graph is only built

    data = fit.load(spec.store.url, spec.name)
    fits = fit.fit_all(data, metric)
    levels = fit.level_summary(data, metric)
    membership = mia.evaluate(data)
    writer = store.StoreWriter(spec.store.url, spec.name)
    for run_name in sorted(set(membership.column("run").to_pylist())):
        writer.write_mia(run_name, membership.filter(pc.equal(membership["run"], run_name)))
    summary = mia.final_summary(membership)
    io.write_json(io.join(folder, "fits.json"), [f.to_dict() for f in fits])
    io.write_json(io.join(folder, "levels.json"), levels.to_dict(orient="records"))
    io.write_json(io.join(folder, "membership.json"), summary)
    io.filesystem(folder)[0].makedirs(io.filesystem(folder)[1], exist_ok=True)
    plots.dose_response(levels, fits, metric, io.join(folder, "dose_response.png"))
    plots.over_training(data, metric, io.join(folder, "over_training.png"))
    plots.auroc(summary, data.runs, io.join(folder, "auroc.png"))
    return {
        "metric": metric,
        "fits": len(fits),
        "membership_rows": membership.num_rows,
        "skipped": fit.without_controls(data, metric),
        "pairs_needed": privacy_audit.pairs_needed_table(),
    }
