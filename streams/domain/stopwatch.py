"""CPU time by part of the work, measured where the work happens and read by the runtime.

The batch core stays pure: it only adds thread CPU seconds to named parts of a ``Stopwatch``
it was given; the worker takes the totals after each batch and exports them
(``greenlane_cpu_seconds_total{part}``), so ``make bench`` can say what a filing costs in
the running worker, part by part, not only in an in-process bench.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Thread CPU seconds per part; ``take()`` hands them over and starts again."""

    __slots__ = ("_spent",)

    def __init__(self) -> None:
        self._spent: dict[str, float] = {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            self.add(name, time.thread_time() - started)

    def add(self, name: str, seconds: float) -> None:
        self._spent[name] = self._spent.get(name, 0.0) + seconds

    def take(self) -> dict[str, float]:
        spent, self._spent = self._spent, {}
        return spent
