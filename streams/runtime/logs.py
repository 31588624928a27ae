"""Log lines that repeat in bursts, kept readable: a broker that is away makes aiokafka log
every reconnection attempt (thousands of lines a minute); one line per kind and interval says
the same, with how many were left out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REPEAT_SECONDS = 30.0
NOISY_LOGGERS = ("aiokafka", "faust.transport")


class RepeatFilter(logging.Filter):
    """Lets the first record of each (logger, message template) through, then at most one
    per ``seconds``, telling how many similar ones it held back meanwhile."""

    def __init__(
        self, seconds: float = REPEAT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.seconds = seconds
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.seconds:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        held = last[1] if last is not None else 0
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} similar in the last {self.seconds:.0f} s not shown)"
        if len(self._seen) > 1000:  # templates, not values: stays small; bound it anyway
            self._seen.clear()
        return True


def quiet_repeats(
    prefixes: tuple[str, ...] = NOISY_LOGGERS, seconds: float = REPEAT_SECONDS
) -> int:
    """Attach one RepeatFilter to every logger named by ``prefixes`` that exists now (call it
    once the libraries are imported: a logger's filters see only its own records, so each
    module logger gets it). Returns how many loggers got it."""
    shared = RepeatFilter(seconds)
    names = [
        n
        for n in list(logging.root.manager.loggerDict)
        if any(n == p or n.startswith(p + ".") for p in prefixes)
    ]
    for name in names:
        logging.getLogger(name).addFilter(shared)
    return len(names)
