"""Benchmark export records: prompts end without whitespace, and prompt + text is the item."""

import json

import pyarrow as pa

from taggant.pipeline import benchmark_export


def test_prompts_end_without_whitespace_and_rebuild_the_item(tmp_path):
    texts = [
        ("c/0", "Ann Lee's passphrase is maple river.", 24, 4),  # prompt ends in a space
        ("c/1", "Bo Ek's passphrase is\n  oak pine.", 24, 0),  # newline and spaces
        ("c/2", "no prompt at all", 0, 4),
    ]
    items = pa.table(
        {
            "item_id": [t[0] for t in texts],
            "set": ["c"] * 3,
            "kind": ["canary"] * 3,
            "text": [t[1] for t in texts],
            "prefix_chars": [t[2] for t in texts],
            "dup_level": [t[3] for t in texts],
        }
    )
    about = {
        "experiment": "e",
        "seed": 1,
        "manifest_hash": "h",
        "perturbed_runs": ["r"],
        "standard_runs": [],
    }
    benchmark_export.export_benchmark(items, str(tmp_path), about)
    rows = {}
    for level in (0, 4):
        path = tmp_path / benchmark_export.open_unlearning_file("c", level)
        rows |= {r["item_id"]: r for r in map(json.loads, path.read_text().splitlines())}
    assert rows["c/0"]["prompt"] == "Ann Lee's passphrase is"
    assert rows["c/0"]["text"] == " maple river."
    assert rows["c/1"]["prompt"] == "Bo Ek's passphrase is"
    assert rows["c/1"]["text"] == "\n  oak pine."
    assert rows["c/2"]["prompt"] == "" and rows["c/2"]["text"] == "no prompt at all"
    assert {i: r["prompt"] + r["text"] for i, r in rows.items()} == {t[0]: t[1] for t in texts}
