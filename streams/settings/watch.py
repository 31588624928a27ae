"""Settings a running worker re-reads when their files change: the last good set stays.

Every settings set that decides (targeting profiles, lists, lanes, revenue, quality, patterns)
is watched the same way: its files' fingerprint is checked at most every ``check_seconds``; a
changed set is loaded and validated whole, and only then put in force. A set that does not
validate is refused (logged and reported to ``on_reload``) and the previous one stays, so a
typo never stops assessment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from greenlane.streams.settings import ConfigError

T = TypeVar("T")
log = logging.getLogger("greenlane.settings")


def fingerprint(paths: Iterable[Path]) -> tuple:
    """Changes whenever one of ``paths`` (files, or folders: their files, recursively) is
    added, removed or edited."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file())
        elif p.exists():
            files.append(p)
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)


class Watched(Generic[T]):
    """One settings set in force, reloaded when its files change."""

    def __init__(
        self,
        name: str,
        paths: Callable[[], Iterable[Path]],
        load: Callable[[], T],
        check_seconds: float = 5.0,
        on_reload: Callable[[str, T | None, Exception | None], None] | None = None,
    ) -> None:
        """``paths``: the files and folders the set is read from; ``load``: reads and
        validates them (raises ConfigError); ``on_reload(name, set or None, error or None)``."""
        self.name = name
        self.paths = paths
        self.load = load
        self.check_seconds = check_seconds
        self.on_reload = on_reload
        self._print = fingerprint(paths())
        self.current: T = load()
        self._next_check = time.monotonic() + check_seconds

    def refresh(self) -> bool:
        """Reload if the files changed; True when a new set is in force."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.check_seconds
        try:
            current_print = fingerprint(self.paths())
        except OSError:
            return False  # a file replaced mid-write: look again next time
        if current_print == self._print:
            return False
        self._print = current_print
        try:
            loaded = self.load()
        except (ConfigError, OSError) as exc:
            log.error("%s settings not reloaded, keeping the last good set: %s", self.name, exc)
            if self.on_reload:
                self.on_reload(self.name, None, exc)
            return False
        log.warning("%s settings reloaded", self.name)
        self.current = loaded
        if self.on_reload:
            self.on_reload(self.name, loaded, None)
        return True
