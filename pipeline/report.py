"""The fit report: what ``taggant fit`` prints and the fit stage writes, built in one place.

One ``FitReport`` holds the level table (the gap to controls per dup level, the twin
difference-in-differences), the scaling-law fits, membership inference at each run's last
checkpoint, the pre-specified one-run audit, the sets left out and the audit's planning table.
The fit stage writes it to its folder (``FitReport.FILES`` names every file), ``taggant run``
reads it back, and ``taggant fit`` builds it straight from a store; ``jobs/report.py`` renders
it the same way for both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import pyarrow as pa

from taggant.pipeline import fit, io, mia, privacy_audit
from taggant.pipeline.spec import FitSpec


@dataclass(frozen=True, kw_only=True)
class FitReport:
    """A JSON-safe fit report; every missing value is ``None`` beside its reason.
    ``probe_configs`` are the probe settings (``store.PROBE_SCHEMA``'s hash) its rows came from:
    one per experiment read; ``eval_formats`` the rendering they measured (``pipeline.eval_format``:
    ``canonical``, the items' own texts, unless ``fit.load`` was asked for another)."""

    metric: str
    probe_configs: list[str]
    eval_formats: list[str]
    levels: list[dict]
    fits: list[dict]
    membership: list[dict]
    audit: list[dict]
    skipped: list[dict]
    pairs_needed: list[dict]

    FILES: ClassVar[dict[str, str]] = {
        "levels": "levels.json",
        "fits": "fits.json",
        "membership": "membership.json",
        "audit": "audit.json",
        "about": "report.json",
    }
    """Where each part lives in a stage folder; ``about`` holds the scalar parts."""
    PLOTS: ClassVar[tuple[str, ...]] = ("dose_response.png", "over_training.png", "auroc.png")
    TABLES: ClassVar[tuple[str, ...]] = ("levels", "fits", "membership", "audit")

    def to_dict(self) -> dict:
        return asdict(self)

    def write(self, folder: str) -> None:
        parts = self.to_dict()
        for name in self.TABLES:
            io.write_json(io.join(folder, self.FILES[name]), parts.pop(name))
        io.write_json(io.join(folder, self.FILES["about"]), parts)

    @classmethod
    def read(cls, folder: str) -> FitReport:
        parts = io.read_json(io.join(folder, cls.FILES["about"]))
        for name in cls.TABLES:
            parts[name] = io.read_json(io.join(folder, cls.FILES[name]))
        assert {f.name for f in fields(cls)} == parts.keys(), sorted(parts)
        return cls(**parts)


def build(
    data: fit.StoreData,
    metric: str,
    settings: FitSpec,
    *,
    membership: pa.Table | None = None,
    num_bootstrap: int = fit.NUM_BOOTSTRAP,
) -> FitReport:
    """The report of one read of a store. ``membership`` is ``mia.evaluate``'s table when the
    caller already has it (the fit stage evaluates every checkpoint for the store); otherwise the
    checkpoints the report needs are evaluated here. The audit rows are the pre-specified
    ``settings.audit_attack`` at ``settings.audit_step`` only, never a maximum over attacks or
    checkpoints."""
    if membership is None:
        membership = mia.evaluate(
            data,
            final_only=settings.audit_step == "last",
            confidence=settings.confidence,
            delta=settings.audit_delta,
        )
    return FitReport(
        metric=metric,
        probe_configs=sorted(set(data.probes.get("probe_config", []))),
        eval_formats=sorted(set(data.probes.get("eval_format", []))),
        levels=fit.level_summary(data, metric).to_dict(orient="records"),
        fits=[f.to_dict() for f in fit.fit_all(data, metric, num_bootstrap)],
        membership=mia.final_summary(membership),
        audit=mia.headline_audit(membership, settings.audit_attack, settings.audit_step),
        skipped=fit.without_controls(data, metric),
        pairs_needed=privacy_audit.pairs_needed_table(settings.confidence),
    )
