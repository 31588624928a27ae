"""Offsets are committed only up to what greenlane answered: guards on Faust's commit
bookkeeping for the agent topics.

faust-streaming 0.15.3 can commit past a filing that no agent answered (seen in the two-worker
takeover test, about one run in ten, one filing each time):

- a message a stream takes from its queue while the flow is suspended, or one fetched in an
  earlier rebalance generation, is skipped *and acknowledged* (``Stream._py_aiter``);
- a jump in the fetched offsets is recorded as a gap that counts as acknowledged
  (``Consumer._add_gap``: meant for compacted or transactional topics, which ours are not), and
  a stale read offset drops the messages below it (``Consumer._drain_messages``);
- a hole of exactly one offset just after the committed offset does not stop the commit
  (``Consumer._new_offset`` tests ``min(acked) - committed > 1``).

Faust's sensors see a commit start and end, not whether it took: ``Consumer._commit_offsets``
is wrapped to count its answer (greenlane_offset_commits_total{result}).

So, on the guarded topics, only acknowledgements made through :func:`answering` count, gaps
are not filled, and nothing is committed past a hole. A hole then holds the partition's commit
back until :func:`holes` reports it and the worker reads the partition again from its committed
offset (a replay: the same decisions, by the replay log).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from faust.transport import consumer as faust_consumer

from greenlane.streams.runtime import metrics

_guarded: set[str] = set()
_answering: set[int] = set()  # id() of the messages the checkpoint is acknowledging now
upstream: dict[str, Any] = {}  # Faust's own methods, kept for the tests that pin them


def guard(topics: Iterable[str]) -> None:
    """Guard the commits of ``topics`` (the agent topics) in this process."""
    _guarded.update(topics)
    if not upstream:  # installed once per process
        _install(faust_consumer.Consumer)


def answering(ack: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """The stream's ``ack``, marked as an answer: the only acknowledgement that counts."""

    async def ack_answered(event: Any) -> Any:
        key = id(event.message)
        _answering.add(key)
        try:
            return await ack(event)
        finally:
            _answering.discard(key)

    return ack_answered


def holes(consumer: Any) -> dict[Any, int]:
    """Guarded partitions whose acknowledged offsets begin past the committed offset: the
    message at the committed offset was never answered. Returns tp -> committed offset."""
    found = {}
    for tp, acked in list(consumer._acked.items()):
        if tp.topic not in _guarded or not acked:
            continue
        committed = consumer._committed_offset.get(tp)
        if committed is not None and min(acked) > committed:
            found[tp] = committed
    return found


class Rereads:
    """When to read a partition again for a hole: the same hole at two beats running (a beat
    apart, the checkpoint has had time to acknowledge an answer in flight), and not again for
    the same offset within ``pause`` seconds (the re-read takes a while to reach it)."""

    def __init__(self, pause: float = 60.0) -> None:
        self.pause = pause
        self._seen: dict[Any, int] = {}
        self._reread: dict[Any, tuple[int, float]] = {}

    def due(self, found: Mapping[Any, int], now: float) -> list[tuple[Any, int]]:
        """``found``: this beat's :func:`holes`; returns the (tp, offset) to read again from."""
        due = []
        for tp, committed in found.items():
            last = self._reread.get(tp)
            if self._seen.get(tp) != committed:
                continue
            if last is not None and last[0] == committed and now - last[1] < self.pause:
                continue
            self._reread[tp] = (committed, now)
            due.append((tp, committed))
        self._seen = dict(found)
        return due


def _install(cls: Any) -> None:
    original_ack = upstream["ack"] = cls.ack
    original_new_offset = upstream["_new_offset"] = cls._new_offset
    original_add_gap = upstream["_add_gap"] = cls._add_gap
    original_commit_offsets = upstream["_commit_offsets"] = cls._commit_offsets

    def ack(self: Any, message: Any) -> bool:
        if message.topic in _guarded and id(message) not in _answering:
            return False  # skipped by Faust, not answered: it must be read again
        return original_ack(self, message)

    def _new_offset(self: Any, tp: Any) -> int | None:
        if tp.topic in _guarded:
            acked = self._acked.get(tp)
            committed = self._committed_offset.get(tp)
            if acked and committed is not None and min(acked) > committed:
                return None  # a hole at the committed offset: commit nothing past it
        return original_new_offset(self, tp)

    async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        if tp.topic in _guarded:
            return  # no compaction or transactions here: a gap is a skip, not an answer
        await original_add_gap(self, tp, offset_from, offset_to)

    async def _commit_offsets(self: Any, offsets: Mapping[Any, int], *args: Any, **kw: Any) -> bool:
        did_commit = await original_commit_offsets(self, offsets, *args, **kw)
        if offsets:  # Faust answers False for a commit refused by a rebalance or that failed
            metrics.OFFSET_COMMITS.labels("committed" if did_commit else "failed").inc()
        return did_commit

    cls.ack = ack
    cls._commit_offsets = _commit_offsets
    cls._new_offset = _new_offset
    cls._add_gap = _add_gap
