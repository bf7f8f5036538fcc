"""Named slots for a Ray task's many returns and list arguments, free of Ray.

A Ray task that sends one object to each of Q partitions must return them as separate values
(``num_returns``), so that each consumer depends on its own object only; and Ray resolves the
object references among a task's top-level arguments only, so a list of them must travel spread.
Index arithmetic over those flat tuples hides the dataflow. Here a task's result is a frozen
dataclass whose `routed` fields hold one value per partition: `flat` spreads it into the values
the task returns (``num_returns`` = `width`), and `unflat` rebuilds the same dataclass from the
returned object references, so the driver names ``result.edges[q]``. On the way in, `Each` marks
a list argument that `spread` spreads and `gather` regroups in the worker; `call` is the whole
worker side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import field, fields
from typing import Any


def routed() -> Any:
    """Declares a result field holding a list with one value per partition: index q is what the
    task sends to partition q."""
    return field(metadata={"routed": True})


def _is_routed(f) -> bool:
    return f.metadata.get("routed", False)


def width(kind: type, partitions: int) -> int:
    """How many values `flat` gives for a result of dataclass type ``kind`` with ``partitions``
    partitions: ``partitions`` per routed field, one per other field."""
    return sum(partitions if _is_routed(f) else 1 for f in fields(kind))


def flat(result: Any) -> tuple:
    """``result``'s field values in declaration order, each routed field's list spread in place:
    the values a Ray task with ``num_returns=width(type(result), partitions)`` returns."""
    values: list = []
    for f in fields(result):
        value = getattr(result, f.name)
        values.extend(value if _is_routed(f) else [value])
    return tuple(values)


def unflat(kind: type, values: Sequence, partitions: int) -> Any:
    """The inverse of `flat`: a ``kind`` whose fields take ``values`` in order (``partitions``
    of them as a list for each routed field). The driver passes the object references of a task's
    returns, so each field names the reference of what it holds."""
    if len(values) != width(kind, partitions):
        raise ValueError(f"{len(values)} values for {kind.__name__} of {partitions} partitions")
    slots, at = {}, 0
    for f in fields(kind):
        if _is_routed(f):
            slots[f.name], at = list(values[at : at + partitions]), at + partitions
        else:
            slots[f.name], at = values[at], at + 1
    return kind(**slots)


class Each(tuple):
    """A list argument of a task whose items travel as separate task arguments: Ray resolves
    the object references among a task's top-level arguments only."""


def spread(args: Sequence) -> tuple[tuple, tuple]:
    """(shape, values): ``args`` with each `Each` spread into ``values``; ``shape`` has, per
    argument, None for a single value or the length of an `Each`. `gather` inverts it."""
    shape = tuple(len(a) if isinstance(a, Each) else None for a in args)
    values = tuple(v for a in args for v in (a if isinstance(a, Each) else (a,)))
    return shape, values


def gather(shape: Sequence, values: Sequence) -> list:
    """The arguments that `spread` gave ``shape`` and ``values`` from, each `Each` as a list."""
    args, at = [], 0
    for size in shape:
        if size is None:
            args.append(values[at])
            at += 1
        else:
            args.append(list(values[at : at + size]))
            at += size
    return args


def call(step: Callable, shape: Sequence, *values: Any) -> tuple:
    """Run ``step`` on the arguments `spread` into ``shape`` and ``values``; its result `flat`:
    the body of a task submitted with ``(step, shape, *values)``."""
    return flat(step(*gather(shape, values)))
