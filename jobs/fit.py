"""The fit stage: the fit report and the standard plots from the store, into the stage folder."""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from taggant.pipeline import fit, io, mia, report, store
from taggant.pipeline.fit import DEFAULT_METRIC
from taggant.pipeline.spec import ExperimentSpec
from taggant.pipeline.stage import StageDecl

STAGE = StageDecl(
    name="fit",
    version=f"{fit.FIT_VERSION}+{mia.MIA_VERSION}",
    inputs=("probe",),  # reads the store, which the probe stage completes
    config=lambda spec: {"store": spec.store.url, "fit": spec.fit.model_dump(mode="json")},
    execute=lambda context: run(context.spec, context.folder),
)


def run(spec: ExperimentSpec, folder: str, metric: str = DEFAULT_METRIC) -> dict[str, Any]:
    """The ``FitReport`` of the experiment's store into the stage folder (its ``FILES``), every
    checkpoint's membership inference (ROC arrays included) into the store's ``mia`` table, and
    the plots (``FitReport.PLOTS``); returns the stage stats."""
    from taggant.pipeline import plots  # matplotlib: not imported when the graph is only built
    from taggant.pipeline.probe.registry import probe_config

    # only the rows of the spec's probe settings: rows of an older setting never enter the fit
    data = fit.load(spec.store.url, spec.name, probe_config(spec.probes))
    membership = mia.evaluate(data, confidence=spec.fit.confidence, delta=spec.fit.audit_delta)
    writer = store.StoreWriter(spec.store.url, spec.name)
    for run_name in sorted(set(membership.column("run").to_pylist())):
        writer.write_mia(run_name, membership.filter(pc.equal(membership["run"], run_name)))
    result = report.build(data, metric, spec.fit, membership=membership)
    result.write(folder)
    paths = [io.join(folder, name) for name in report.FitReport.PLOTS]
    plots.dose_response(result.levels, result.fits, metric, paths[0])
    plots.over_training(data, metric, paths[1])
    plots.auroc(result.membership, data.runs, paths[2])
    return {
        "metric": metric,
        "fits": len(result.fits),
        "level_rows": len(result.levels),
        "membership_rows": membership.num_rows,
        "skipped": len(result.skipped),
    }
