"""Reading the next steps' samples in a background thread while the current step computes.

``Prefetcher(load, keys, depth)`` calls ``load(key)`` for each key in order on its own thread and
hands the results out in that order (``get``); at most ``depth`` results wait in its queue, so
memory stays bounded whatever the reading speed. ``depth=0`` calls ``load`` in the caller's thread
instead (no thread at all): what comes out is the same either way, since the keys and their order
are fixed up front and ``load`` is called once per key.

Failure: an exception ``load`` raises on the thread is raised again by the ``get`` of that key in
the caller's thread, the same object with its traceback (a note names the thread and the key), so a
``DataError`` reaches the driver as itself. ``get`` never waits on a thread that has ended.

Shutdown: ``close`` (or leaving the ``with`` block, an interrupt included) stops the thread
within ``POLL_S`` of its current ``load``; the thread is a daemon, so one stuck inside ``load``
(a hung network mount) never keeps the process from exiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Generic, Self, TypeVar

T = TypeVar("T")

POLL_S = 0.1
"""How often a blocked queue operation checks whether the other side stopped or died."""


class Prefetcher(Generic[T]):
    """The results of ``load(key)`` for ``keys``, in order, read ``depth`` keys ahead.

    Args:
        load: reads one key; called once per key, in order, from one thread.
        keys: every key ``get`` will ask for, in the order it will ask.
        depth: results read ahead and held (the queue bound); 0 reads in ``get`` itself.
        name: the thread's name (shown in stack dumps).
    """

    def __init__(
        self, load: Callable[[int], T], keys: Iterable[int], depth: int, name: str = "prefetch"
    ):
        assert depth >= 0, depth
        self._load = load
        self._keys = list(keys)
        self._next = 0
        self._stop = threading.Event()
        self._queue: queue.Queue[tuple[int, T | None, BaseException | None]] | None = None
        self._thread: threading.Thread | None = None
        if depth and self._keys:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._read_ahead, name=name, daemon=True)
            self._thread.start()

    def get(self, key: int) -> T:
        """The result of ``load(key)``; ``key`` must be the next one of ``keys``.

        Raises:
            whatever ``load(key)`` raised, in this thread.
        """
        assert self._next < len(self._keys), f"{key} asked for after the last key"
        expected = self._keys[self._next]
        assert key == expected, f"asked for {key}, the next key is {expected}"
        self._next += 1
        if self._queue is None:
            return self._load(key)
        got, value, error = self._take()
        if error is not None:
            error.add_note(f"(raised in thread {self._thread.name!r} while reading key {got})")
            raise error
        assert got == key, (got, key)
        return value  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the thread (it ends after its current ``load``) and wait ``POLL_S`` for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=POLL_S)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------------

    def _read_ahead(self) -> None:
        for key in self._keys:
            try:
                item = (key, self._load(key), None)
            except BaseException as e:  # handed to the caller's thread, which raises it
                self._put((key, None, e))
                return
            if not self._put(item):
                return

    def _put(self, item: tuple[int, T | None, BaseException | None]) -> bool:
        """Queue ``item`` unless the reader closes first; whether it was queued."""
        assert self._queue is not None
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _take(self) -> tuple[int, T | None, BaseException | None]:
        assert self._queue is not None and self._thread is not None
        while True:
            try:
                return self._queue.get(timeout=POLL_S)
            except queue.Empty:
                # The thread queues a result or its exception before it ends; ended with nothing
                # queued means it was killed from outside (it cannot be by Python code).
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError(
                        f"thread {self._thread.name!r} ended without reading the next key; "
                        "this is a bug in the prefetcher"
                    ) from None
