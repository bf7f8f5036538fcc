"""``demo-small``, the preset of cluster/README.md's trial, is the demo's spec with a tenth of its
training tokens and the insertion counts that fit them, under its own name and folders: it passes
``validate`` (preflight included), and no other field drifts from the demo's."""

from __future__ import annotations

from typing import Any

import yaml

from taggant.jobs.cli import EXPERIMENTS, main


def leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {
            k: v for key, sub in tree.items() for k, v in leaves(sub, f"{prefix}{key}.").items()
        }
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in leaves(sub, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): tree}


def test_demo_small_is_the_demo_with_fewer_tokens_and_insertions():
    demo = leaves(yaml.safe_load((EXPERIMENTS / "demo.yaml").read_text()))
    small = leaves(yaml.safe_load((EXPERIMENTS / "demo-small.yaml").read_text()))
    assert demo.keys() == small.keys()
    differ = {key for key in demo if demo[key] != small[key]}
    counts = {f"perturbations.{i}.count" for i in range(4)}
    assert differ == {"name", "work_dir", "store.url", "runs.train_tokens.0", *counts}
    assert small["runs.train_tokens.0"] * 10 == demo["runs.train_tokens.0"]
    assert all(small[key] < demo[key] for key in counts)
    assert small["work_dir"] != demo["work_dir"] and small["store.url"] != demo["store.url"]


def test_demo_small_validates(debian_corpus, capsys):
    corpus = f"corpus.paths=[{debian_corpus}/*.jsonl.zst]"
    assert main(["validate", str(EXPERIMENTS / "demo-small.yaml"), "--set", corpus]) == 0
    assert "valid — experiment 'demo-small'" in capsys.readouterr().out
