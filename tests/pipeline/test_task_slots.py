"""Named task slots: a result flattens into its task's returns and back, and list arguments
spread into separate task arguments and are regrouped in the worker."""

from dataclasses import dataclass

import pytest

from taggant.pipeline.task_slots import Each, call, flat, gather, routed, spread, unflat, width


@dataclass(frozen=True)
class Exchange:
    """Two routed fields around a plain one, to show declaration order is kept."""

    edges: list = routed()
    count: int
    requests: list = routed()


@dataclass(frozen=True)
class Tally:
    kept: int
    removed: int


def test_a_result_flattens_to_its_fields_in_order_with_routed_lists_spread_and_back():
    result = Exchange(edges=["e0", "e1"], count=7, requests=["r0", "r1"])
    assert width(Exchange, 2) == 5
    assert flat(result) == ("e0", "e1", 7, "r0", "r1")
    assert unflat(Exchange, ("e0", "e1", 7, "r0", "r1"), 2) == result
    assert width(Tally, 3) == 2  # no routed field: one value per field, whatever the partitions
    assert unflat(Tally, flat(Tally(kept=4, removed=1)), 3) == Tally(kept=4, removed=1)
    with pytest.raises(ValueError, match="4 values for Exchange of 2 partitions"):
        unflat(Exchange, ("e0", "e1", 7, "r0"), 2)


def test_each_spreads_into_separate_arguments_and_is_gathered_back_as_a_list():
    shape, values = spread((1, Each(["a", "b"]), "x", Each([])))
    assert shape == (None, 2, None, 0)
    assert values == (1, "a", "b", "x")
    assert gather(shape, values) == [1, ["a", "b"], "x", []]


def test_call_runs_the_step_on_the_gathered_arguments_and_flattens_its_result():
    def step(count: int, edges: list[str], requests: list[str]) -> Exchange:
        return Exchange(edges=edges[::-1], count=count, requests=requests)

    shape, values = spread((3, Each(["e0", "e1"]), Each(["r0", "r1"])))
    assert call(step, shape, *values) == ("e1", "e0", 3, "r0", "r1")
