"""Render a ``FitReport`` on the console: the one renderer ``taggant run`` and ``taggant fit`` use.

Numbers carry the precision their interval supports (two significant digits of its width), runs
are named in full at any width (long names fold, never cut), and every table says what its
numbers are conditional on.
"""

from __future__ import annotations

import math
import sys

from rich.console import Console
from rich.table import Table

from taggant.pipeline.report import FitReport

ID = {"overflow": "fold"}
"""Columns fold a long value onto more lines instead of cutting it: a run name or a filter cut
short can make two rows look alike."""


def console() -> Console:
    """Stdout; wide when it is a file or pipe (rich would assume 80 columns and wrap the tables)."""
    return Console(width=None if sys.stdout.isatty() else 160)


def decimals(width: float | None) -> int:
    """Decimals that show two significant digits of an interval's ``width`` (3 without one)."""
    if width is None or not width > 0:
        return 3
    return max(0, 1 - math.floor(math.log10(width)))


def estimate(value: float | None, low: float | None, high: float | None) -> str:
    """``value [low, high]`` at the interval's precision; ``n/a`` for a missing value."""
    if value is None:
        return "n/a"
    if low is None:
        return f"{value:+.3f}"
    d = decimals(high - low)
    return f"{value:+.{d}f} [{low:+.{d}f}, {high:+.{d}f}]"


def pvalue(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def render(report: FitReport, out: Console, source: str) -> None:
    """Print the level table, the fits, membership inference and the audit, in that order."""
    settings = ", ".join(report.probe_configs) or "none"
    formats = ", ".join(report.eval_formats) or "none"
    out.print(f"{report.metric} from {source}; probe settings {settings}; eval_format {formats}")
    levels(report.levels, report.metric, out)
    fits(report.fits, report.metric, out, source)
    membership(report.membership, out)
    audit(report.audit, report.pairs_needed, out)
    for row in report.skipped:
        out.print(f"skipped {row['experiment']}/{row['run']} set {row['set']}: {row['reason']}")


def levels(rows: list[dict], metric: str, out: Console) -> None:
    """Gap to controls per dup level at each run's last checkpoint, with the twin's
    difference-in-differences where a twin exists; ``*`` marks the primary estimate, whose
    p-value the Holm column adjusts."""
    if not rows:
        out.print(f"no level table: no rows for {metric}")
        return
    table = Table(
        title=f"{metric}: members − controls at each run's last checkpoint",
        caption="95% CIs resample items; p: permutation test (exact under the random split); "
        "DiD: (members − controls) of the run minus that of its standard twin; * the primary "
        "estimate, whose p the Holm column adjusts over each run's rows",
    )
    names = ("experiment", "run", "step", "set", "dup level", "members/controls")
    for name in (*names, "gap [95% CI]", "p", "DiD vs twin [95% CI]", "DiD p", "p Holm"):
        table.add_column(name, **ID)
    for r in rows:
        did = r["estimate"] == "did"
        gap = estimate(r["mean"], r["ci_low"], r["ci_high"])
        table.add_row(
            r["experiment"],
            r["run"],
            str(r["step"]),
            r["set"],
            str(r["dup_level"]),
            f"{r['n']}/{r['controls']}",
            "baseline" if r["dup_level"] == 0 else gap + ("" if did else " *"),
            pvalue(r["p"]),
            "—"
            if r["did"] is None
            else estimate(r["did"], r["did_ci_low"], r["did_ci_high"]) + " *",
            pvalue(r["did_p"]),
            pvalue(r["p_holm"]),
        )
    out.print(table)


def fits(rows: list[dict], metric: str, out: Console, source: str) -> None:
    """The scaling-law fits; a cross-run fit whose CI resamples items only is marked
    conditional on the runs trained, with what would lift that."""
    if not rows:
        out.print(f"no fit: {source} has no rows for {metric}")
        return
    table = Table(
        title=f"fits of {metric} − controls",
        caption="slope: change of the gap per 10× x; CI scope ‡ items only, conditional on "
        "the runs trained",
    )
    for name in ("fit", "experiment", "run", "set", "x", "slope [95% CI]", "r²", "n", "runs"):
        table.add_column(name, **ID)
    table.add_column("filter", **ID)
    notes = []
    for f in rows:
        conditional = f["ci_scope"] == "items" and f["run"] is None
        slope = estimate(f["slope"], f["ci_low"], f["ci_high"]) + (" ‡" if conditional else "")
        if f["name"] == "dilution":
            slope += (
                f"\nb_dup {estimate(f['dup_slope'], f['dup_slope_ci_low'], f['dup_slope_ci_high'])}"
            )
            slope += f"\nratio law p {pvalue(f['ratio_law_p'])}"
        table.add_row(
            f["name"],
            f["experiment"],
            f["run"] or "(across runs)",
            f["set"],
            f["x"],
            slope,
            "n/a" if f["r2"] is None else f"{f['r2']:.2f}",
            str(f["n"]),
            str(f["runs"]),
            f["filter"],
        )
        where = f"{f['name']} {f['experiment']}/{f['run'] or '*'} {f['set']}"
        for name, reason in f["reasons"].items():
            if name == "ci_scope" or (f.get(name) is None and name not in ("run", "step")):
                if name != "intercept":
                    notes.append(f"{where}: {name}: {reason}")
    out.print(table)
    for line in dict.fromkeys(notes):
        out.print(line)


def membership(rows: list[dict], out: Console) -> None:
    """AUROC per attack by dup level at each run's last checkpoint, with the exact Mann–Whitney
    p-value Holm-adjusted, and the loss attack's TPR at 1% FPR."""
    if not rows:
        out.print("no membership inference: no set has both members and controls")
        return
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        key = (r["experiment"], r["run"], r["step"], r["set"], r["dup_level"])
        groups.setdefault(key, {})[r["attack"]] = r
    table = Table(
        title="membership inference: members vs never-inserted controls",
        caption=(
            "AUROC [95% CI] (p Holm): " + MEMBERSHIP_METHOD + "; TPR@1%FPR of the loss attack"
        ),
    )
    names = ("experiment", "run", "step", "set", "dup level", "members/controls")
    for name in (*names, *[f"AUROC {a}" for a in attacks], "TPR@1%FPR"):
        table.add_column(name, **ID)
    reasons = set()
    for (experiment, run, step, set_name, level), by_attack in groups.items():
        first = next(iter(by_attack.values()))
        cells = []
        for a in attacks:
            r = by_attack.get(a)
            if r is None:
                cells.append("—")
                continue
            ci = (
                ""
                if r["auroc_ci_low"] is None
                else f" [{r['auroc_ci_low']:.2f}, {r['auroc_ci_high']:.2f}]"
            )
            cells.append(f"{r['auroc']:.2f}{ci} ({pvalue(r.get('auroc_p_holm'))})")
        loss = by_attack.get("loss")
        tpr = "—"
        if loss is not None:
            if loss["tpr_at_1pct_fpr"] is None:
                reasons.add(loss["tpr_at_1pct_fpr_reason"])
                tpr = "n/a"
            else:
                tpr = estimate(
                    loss["tpr_at_1pct_fpr"],
                    loss.get("tpr_at_1pct_fpr_ci_low"),
                    loss.get("tpr_at_1pct_fpr_ci_high"),
                )
        table.add_row(
            experiment,
            run,
            str(step),
            set_name,
            str(level),
            f"{first['members']}/{first['controls']}",
            *cells,
            tpr,
        )
    out.print(table)
    for reason in sorted(reasons):
        out.print(f"TPR@1%FPR n/a: {reason}")


MEMBERSHIP_METHOD = "logit-scale CI, exact Mann–Whitney p, Holm over each run's rows"


def audit(rows: list[dict], pairs_needed: list[dict], out: Console) -> None:
    """The one-run audit's ε lower bound at the pre-specified attack and checkpoint, with the
    neighbour relation, the copies it covers, δ and the per-copy bound."""
    for r in rows:
        out.print(
            f"ε ≥ {r['epsilon_lb']:.2f} ({r['experiment']}/{r['run']} step {r['step']} set "
            f"{r['set']} ×{r['dup_level']}, attack {r['attack']}): {r['audit_neighbour']} of "
            f"{r['audit_copies']} copies, δ = {r['audit_delta']:g}, {r['audit_confidence']:.0%}; "
            f"per copy ε ≥ {r['epsilon_lb_per_copy']:.3f}; "
            f"{r['audit_correct']}/{r['audit_guesses']} guesses right on {r['audit_pairs']} pairs"
        )
    if rows:
        out.print(
            "ε ≥: one-run audit (Steinke et al. 2023) at the attack and checkpoint fixed in the "
            "spec (fit.audit_attack, fit.audit_step); runs of one experiment share their split, "
            "so these bounds are not independent. A perfect attack certifies ε with "
            + ", ".join(f"{p['pairs']} pairs for ε {p['epsilon']:g}" for p in pairs_needed)
        )
