"""The fit stage: scaling-law fits and the standard plots from the store, into the stage folder."""

from __future__ import annotations

from typing import Any

from taggant.pipeline import fit, io
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
    """Write ``fits.json``, ``levels.json`` (gap to controls per dup level, with CIs) and the
    plots ``dose_response.png`` and ``over_training.png``; returns the stage stats."""
    from taggant.pipeline import plots  # matplotlib: not imported when the graph is only built

    fits = fit.fit_store(spec.store.url, metric, spec.name)
    levels = fit.level_summary(spec.store.url, metric, spec.name)
    io.write_json(io.join(folder, "fits.json"), [f.to_dict() for f in fits])
    io.write_json(io.join(folder, "levels.json"), levels.to_dict(orient="records"))
    io.filesystem(folder)[0].makedirs(io.filesystem(folder)[1], exist_ok=True)
    plots.dose_response(spec.store.url, metric, io.join(folder, "dose_response.png"), spec.name)
    plots.over_training(spec.store.url, metric, io.join(folder, "over_training.png"), spec.name)
    return {"metric": metric, "fits": len(fits)}
