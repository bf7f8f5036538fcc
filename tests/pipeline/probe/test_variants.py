"""Items with per-copy variants: probes write rows for the item's text (``canonical``) and for each
variant (``variant:<k>``), values by hand on the cycle model of ``test_run``; the store keeps both
and the fits read the canonical rows only."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest

from taggant.jobs.cli import main
from taggant.pipeline import fit, store
from taggant.pipeline.errors import DataError
from tests.pipeline.probe.test_run import LN2, SPACE, item, run

# After the space put before every item, "abcd abcd" follows the cycle (ln 2 a token); variant 0
# breaks it once ("abcd acd ": c after a costs 3 ln 2), variant 1 at every token ("aaaa aaaa").
# The controls (drawn with the members, so with variants too) break it at most tokens.
CANONICAL = "abcd abcd"
VARIANTS = ["abcd acd ", "aaaa aaaa"]
CONTROL = "dcba dcba"
CONTROL_VARIANTS = ["dcba dcbb", "dddd dddd"]


def _items() -> list[dict]:
    controls = [
        {**item(f"t/{i}", CONTROL, kind="text", dup_level=0), "variants": CONTROL_VARIANTS}
        for i in range(2)
    ]
    members = [
        {**item(f"t/{i}", CANONICAL, kind="text", dup_level=4), "variants": VARIANTS}
        for i in range(2, 4)
    ]
    return controls + members


def _nll_mean(text: str) -> float:
    """Mean NLL (nats) of ``text`` after a space under the cycle model."""
    vocab = "abcd "
    costs = [
        LN2 if vocab.index(b) == (vocab.index(a) + 1) % 5 else 3 * LN2
        for a, b in zip(" " + text, text)
    ]
    return sum(costs) / len(costs)


def test_rows_for_the_text_and_each_variant_and_the_fit_reads_the_text(tmp_path, capsys):
    rows = run(_items(), ["loss", "exact_match"], bos_id=SPACE)
    formats: dict[tuple[str, str], set[str]] = {}
    for r in rows.to_pylist():
        formats.setdefault((r["item_id"], r["probe"]), set()).add(r["eval_format"])
    assert formats[("t/2", "loss")] == {"canonical", "variant:0", "variant:1"}
    assert formats[("t/2", "exact_match")] == {"canonical", "variant:0", "variant:1"}
    assert formats[("t/0", "loss")] == {"canonical", "variant:0", "variant:1"}

    def nll(item_id: str, eval_format: str) -> float:
        [value] = [
            r["value"]
            for r in rows.to_pylist()
            if (r["item_id"], r["probe"], r["metric"], r["eval_format"])
            == (item_id, "loss", "nll_mean", eval_format)
        ]
        return value

    assert nll("t/2", "canonical") == pytest.approx(_nll_mean(CANONICAL), abs=1e-5)
    for k, text in enumerate(VARIANTS):
        assert nll("t/2", f"variant:{k}") == pytest.approx(_nll_mean(text), abs=1e-5)

    # Into the store, one file per probe; the fit's gaps come from the canonical rows only.
    writer = store.StoreWriter(str(tmp_path), "exp")
    writer.write_run(
        "r",
        {"model_size": "m", "train_tokens": 10, "num_params": 10, "perturbed": True, "seed": 0},
    )
    for name in ("loss", "exact_match"):
        writer.write_probe_rows("r", 10, name, 0, rows.filter(pc.equal(rows["probe"], name)))
    writer.commit_checkpoint("r", 10, 1234, ["loss", "exact_match"], "c", rows.num_rows)
    everything = fit.load(str(tmp_path), "exp", eval_format=None).probes
    assert set(everything["eval_format"]) == {"canonical", "variant:0", "variant:1"}
    canonical = fit.load(str(tmp_path), "exp")
    assert set(canonical.probes["eval_format"]) == {"canonical"}
    gaps = fit.scores(canonical.probes, "loss.nll_mean").set_index("item_id")["y"]
    expected = _nll_mean(CANONICAL) - _nll_mean(CONTROL)
    assert gaps[["t/2", "t/3"]].tolist() == pytest.approx([expected] * 2, abs=1e-5)
    with pytest.raises(DataError, match="3 eval_formats"):
        fit.scores(everything, "loss.nll_mean")

    # `taggant fit` reads the canonical rows unless asked for a variant, and says which.
    def level_gap(*options: str) -> tuple[float, list[str]]:
        assert main(["fit", "--store", str(tmp_path), *options, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        [members] = [r for r in out["levels"] if r["dup_level"] == 4]
        return members["mean"], out["eval_formats"]

    assert level_gap() == (pytest.approx(expected, abs=1e-5), ["canonical"])
    variant_gap = _nll_mean(VARIANTS[1]) - _nll_mean(CONTROL_VARIANTS[1])
    assert level_gap("--eval-format", "variant:1") == (
        pytest.approx(variant_gap, abs=1e-5),
        ["variant:1"],
    )


def test_probes_defined_on_the_canonical_text_write_canonical_rows_only():
    # exposure ranks the secret of the item's params among references built from its text: a
    # variant has no references of its own, so it is not measured there; loss is.
    canary = {
        **item("c/0", "d bcda", prefix_chars=2, params={"secret": "bcda", "log2_space": 8.0}),
        "variants": ["d bcdd", "d aaaa"],
    }
    rows = run([canary], ["loss", "exposure"], canary_references={"c": ["abcd", "aaaa"]})
    formats: dict[str, set[str]] = {}
    for r in rows.to_pylist():
        formats.setdefault(r["probe"], set()).add(r["eval_format"])
    assert formats == {"loss": {"canonical", "variant:0", "variant:1"}, "exposure": {"canonical"}}
