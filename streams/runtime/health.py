"""Liveness that means something: is every agent running, and is each one making progress on
the messages waiting for it?

The metrics endpoint runs on its own thread, so answering HTTP proves nothing about the event
loop. The worker therefore beats from the loop (``beat``, with each agent topic's lag) and the
endpoint judges the last beat: too old means the loop is blocked; an agent that has ended, or
that has had messages waiting for ``stall_seconds`` without finishing a batch, makes the worker
unhealthy. Waiting for the broker is not a stall: restarting would not bring the broker back,
so while the publisher waits for confirmations the worker stays live (and not ready).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass
class AgentProgress:
    """What one agent reports about itself (written on the event loop)."""

    name: str
    topic: str
    started: bool = False
    ended: str | None = None  # why the agent stopped, when it has
    last_progress: float = 0.0  # when it last finished (acknowledged) a batch
    waiting_since: float | None = None  # since when its topic has had messages waiting
    taken_since: float | None = None  # since when it has been on its current batch
    waiting_for: str | None = None  # a dependency it waits for (the registry), if any
    acked_next: dict[int, int] = field(default_factory=dict)  # partition -> next offset

    def progressed(self, now: float, offsets: Mapping[int, int]) -> None:
        """A batch is acknowledged; ``offsets``: partition -> highest offset in it."""
        self.last_progress = now
        for p, o in offsets.items():
            if o + 1 > self.acked_next.get(p, -1):
                self.acked_next[p] = o + 1


class Health:
    """The worker's liveness verdict from its agents' progress and the loop's beats."""

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.agents: dict[str, AgentProgress] = {}
        self.last_beat: float | None = None
        self.stalled: str | None = None  # the verdict of the last beat

    def agent(self, name: str, topic: str) -> AgentProgress:
        """Register (or find again, after a restart) an agent's progress record."""
        progress = self.agents.get(name)
        if progress is None:
            progress = self.agents[name] = AgentProgress(name, topic)
        progress.started, progress.ended = True, None
        progress.last_progress = self.clock()
        return progress

    def beat(
        self,
        lag: Mapping[str, int],
        waiting_for_broker: bool,
        stopping: bool,
        recovering: bool = False,
    ) -> None:
        """Called from the event loop: ``lag`` is the messages waiting per topic on this
        worker's partitions; ``recovering``: a rebalance or table recovery holds the agents
        (not a stall either, however long it takes)."""
        now = self.clock()
        self.last_beat = now
        verdict = None
        for a in self.agents.values():
            if a.ended is not None and not stopping:
                verdict = verdict or f"agent {a.name} has stopped: {a.ended}"
                continue
            excused = waiting_for_broker or stopping or recovering or a.waiting_for is not None
            busy = now - a.taken_since if a.taken_since is not None else 0.0
            if busy > self.stall_seconds and not excused:
                verdict = verdict or f"agent {a.name} has been on one batch for {busy:.0f} s"
            if lag.get(a.topic, 0) <= 0:
                a.waiting_since = None
                continue
            if a.waiting_since is None:
                a.waiting_since = now
            idle = now - max(a.waiting_since, a.last_progress)
            if idle > self.stall_seconds and not excused:
                verdict = verdict or (
                    f"agent {a.name} has made no progress for {idle:.0f} s with "
                    f"{lag[a.topic]:,} messages waiting"
                )
        self.stalled = verdict

    def live(self) -> tuple[bool, str]:
        """The verdict (any thread): (live, why)."""
        if self.last_beat is None:
            return True, "starting"
        silent = self.clock() - self.last_beat
        if silent > self.stall_seconds:
            return False, f"event loop blocked: no beat for {silent:.0f} s"
        if self.stalled is not None:
            return False, self.stalled
        return True, "alive"


def answered_next(agents: Mapping[str, AgentProgress]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset to answer, where an agent has answered since the
    last rebalance (runtime.lag counts the oldest undecided filing from there)."""
    return {(a.topic, p): n for a in agents.values() for p, n in a.acked_next.items()}


def forget_positions(agents: Mapping[str, AgentProgress]) -> None:
    """After a rebalance the partitions may be others': what was acknowledged on them before
    says nothing about them now."""
    for a in agents.values():
        a.acked_next.clear()
