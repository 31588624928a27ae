"""Liveness: a dead agent, a stalled one and a blocked loop are unhealthy; idling, a burst of
work and waiting for the broker are not."""

from __future__ import annotations

from greenlane.streams.runtime.health import Health, answered_next, forget_positions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def health() -> tuple[Health, Clock]:
    clock = Clock()
    return Health(stall_seconds=60, clock=clock), clock


def test_an_idle_worker_is_live_and_a_burst_of_work_is_not_a_stall() -> None:
    h, clock = health()
    a = h.agent("assess", "filings")
    h.beat({"filings": 0}, False, False)
    clock.now += 3600  # idle for an hour
    h.beat({"filings": 0}, False, False)
    assert h.live() == (True, "alive")
    h.beat({"filings": 500}, False, False)  # a burst arrives after the long idle time
    clock.now += 5
    a.progressed(clock(), {0: 10})
    h.beat({"filings": 200}, False, False)
    assert h.live()[0]


def test_messages_waiting_without_progress_make_the_worker_unhealthy() -> None:
    h, clock = health()
    h.agent("assess", "filings")
    h.beat({"filings": 7}, False, False)
    clock.now += 61
    h.beat({"filings": 7}, False, False)
    live, why = h.live()
    assert not live
    assert why == "agent assess has made no progress for 61 s with 7 messages waiting"


def test_waiting_for_the_broker_or_the_registry_is_not_a_stall() -> None:
    h, clock = health()
    a = h.agent("assess", "filings")
    h.beat({"filings": 7}, True, False)
    clock.now += 300
    h.beat({"filings": 7}, True, False)
    assert h.live()[0], "a restart would not bring the broker back"
    a.waiting_for = "schema registry unreachable"
    a.taken_since = clock()
    clock.now += 300
    h.beat({"filings": 7}, False, False)
    assert h.live()[0]


def test_an_agent_on_one_batch_for_too_long_is_unhealthy() -> None:
    h, clock = health()
    a = h.agent("assess", "filings")
    a.taken_since = clock()
    clock.now += 61
    h.beat({}, False, False)
    assert h.live() == (False, "agent assess has been on one batch for 61 s")


def test_a_dead_agent_is_unhealthy_unless_the_worker_is_stopping() -> None:
    h, _ = health()
    a = h.agent("assess", "filings")
    a.ended = "ValueError: boom"
    h.beat({}, False, False)
    assert h.live() == (False, "agent assess has stopped: ValueError: boom")
    h.beat({}, False, True)
    assert h.live()[0]


def test_a_blocked_event_loop_is_unhealthy() -> None:
    h, clock = health()
    h.agent("assess", "filings")
    assert h.live() == (True, "starting")
    h.beat({}, False, False)
    clock.now += 61  # no beat since: the loop that beats is stuck
    live, why = h.live()
    assert not live and why.startswith("event loop blocked")


def test_answered_offsets_are_what_lag_counts_from_until_a_rebalance() -> None:
    h, clock = health()
    a = h.agent("assess", "filings")
    a.progressed(clock(), {0: 99, 2: 10})
    a.progressed(clock(), {0: 50})  # an older batch confirmed later: not a step back
    h.agent("join", "outcomes").progressed(clock(), {0: 4})
    assert answered_next(h.agents) == {("filings", 0): 100, ("filings", 2): 11, ("outcomes", 0): 5}
    forget_positions(h.agents)
    assert answered_next(h.agents) == {}


def test_a_long_table_recovery_is_not_a_stall() -> None:
    h, clock = health()
    h.agent("assess", "filings")
    h.beat({"filings": 9000}, False, False, recovering=True)
    clock.now += 600
    h.beat({"filings": 9000}, False, False, recovering=True)
    assert h.live()[0]
