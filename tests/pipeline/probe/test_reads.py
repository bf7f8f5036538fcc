"""Each probe's ``reads`` declaration is all it needs: run alone, with only its fields computed,
a probe gives exactly the rows it gives beside every other probe (every field computed)."""

import numpy as np
import pytest
import torch

from taggant.pipeline.probe import registry, scoring
from tests.pipeline.probe.test_run import ALL, SPACE, run

REFERENCES = {"c": ["abcd", "abca", "aaaa"]}
TEACHER_FORCED = sorted(name for name, p in registry.PROBES.items() if not p.generates)
"""The probes that need no greedy decoder (the generation probes' values are tested against
``transformers`` in test_generation.py and test_views.py)."""


@pytest.mark.parametrize("name", TEACHER_FORCED)
def test_a_probe_alone_gives_the_rows_it_gives_beside_every_other(name):
    everything = run(ALL, TEACHER_FORCED, canary_references=REFERENCES, bos_id=SPACE)
    alone = run(ALL, [name], canary_references=REFERENCES, bos_id=SPACE)
    assert registry.PROBES[name].reads < frozenset(scoring.FIELDS)
    mine = [
        {k: v for k, v in r.items() if k != "probe_config"}
        for r in everything.to_pylist()
        if r["probe"] == name
    ]
    assert mine == [{k: v for k, v in r.items() if k != "probe_config"} for r in alone.to_pylist()]


def test_fields_not_asked_for_are_not_computed():
    [scores] = scoring.score(
        lambda ids: torch.zeros(*ids.shape, 5),
        [np.array([0, 1, 2])],
        [1],
        1,
        fields=frozenset({"correct"}),
    )
    assert scores.correct is not None and scores.logprob is not None
    assert scores.mean is None and scores.std is None and scores.topk_logprob is None
    assert scores[1:].mean is None and len(scores[1:]) == 1
