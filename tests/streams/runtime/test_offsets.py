"""The commit guards on Faust's consumer (runtime.offsets), and the Faust behaviour behind them."""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace

import faust
import pytest
from faust.streams import Stream
from faust.types.tuples import TP, ConsumerMessage

from greenlane.streams.runtime import offsets

GUARDED = "it-offsets.filing"
OTHER = "it-offsets.changelog"


@pytest.fixture(scope="module")
def consumer():
    offsets.guard([GUARDED])
    app = faust.App("test-offsets", broker="kafka://127.0.0.1:1")
    app.topic(GUARDED)  # acks are enabled for topics the app knows
    app.topic(OTHER)
    c = app.consumer
    c.app.topics.acks_enabled_for = lambda topic: True
    return c


def fresh(c, tp: TP) -> None:
    for d in (c._acked, c._acked_index, c._committed_offset, c._gap):
        d.pop(tp, None)


def message(topic: str, offset: int) -> ConsumerMessage:
    return ConsumerMessage(topic, 0, offset, 0.0, 0, None, b"k", b"v", None)


def test_faust_skips_a_message_of_an_old_generation_and_acknowledges_it():
    # the reason for the ack guard: this line in Stream._py_aiter
    assert "do_ack or value is skipped_value" in inspect.getsource(Stream._py_aiter)


def test_faust_alone_commits_past_a_one_offset_hole(consumer):
    tp = TP(OTHER, 0)
    fresh(consumer, tp)
    consumer._committed_offset[tp] = 818
    consumer._acked[tp] = [819, 820]
    assert offsets.upstream["_new_offset"](consumer, tp) == 821  # 818 never answered


def test_nothing_is_committed_past_a_hole_on_a_guarded_topic(consumer):
    tp = TP(GUARDED, 0)
    fresh(consumer, tp)
    consumer._committed_offset[tp] = 818
    consumer._acked[tp] = [819, 820]
    assert consumer._new_offset(tp) is None
    assert offsets.holes(consumer) == {tp: 818}
    consumer._acked[tp] = [820, 818, 819]  # the hole answered
    assert consumer._new_offset(tp) == 821
    assert offsets.holes(consumer) == {}


def test_only_answered_messages_count_as_acknowledged(consumer):
    tp = TP(GUARDED, 0)
    fresh(consumer, tp)
    skipped, answered = message(GUARDED, 5), message(GUARDED, 6)
    assert consumer.ack(skipped) is False  # as Faust's skip path would
    assert not skipped.acked and consumer._acked[tp] == []

    async def stream_ack(event):
        return consumer.ack(event.message)

    asyncio.run(offsets.answering(stream_ack)(SimpleNamespace(message=answered)))
    assert answered.acked and consumer._acked[tp] == [6]
    fresh(consumer, TP(OTHER, 0))
    other = message(OTHER, 1)
    assert consumer.ack(other) is True  # other topics as Faust has them


def test_a_gap_in_fetched_offsets_is_not_counted_as_answered(consumer):
    tp, other = TP(GUARDED, 0), TP(OTHER, 0)
    fresh(consumer, tp)
    fresh(consumer, other)
    asyncio.run(consumer._add_gap(tp, 10, 20))
    asyncio.run(consumer._add_gap(other, 10, 20))
    assert not consumer._gap[tp]
    assert consumer._gap[other]  # unguarded topics keep Faust's gap filling


def test_a_hole_is_read_again_once_seen_twice_and_not_again_too_soon():
    r = offsets.Rereads(pause=60)
    tp = TP(GUARDED, 1)
    assert r.due({tp: 5}, now=0) == []  # first sight: an answer may be in flight
    assert r.due({tp: 5}, now=5) == [(tp, 5)]
    assert r.due({tp: 5}, now=10) == []  # being read again
    assert r.due({tp: 5}, now=70) == [(tp, 5)]  # still there a minute on: again
    assert r.due({tp: 9}, now=75) == []  # a new hole further on: seen once
    assert r.due({tp: 9}, now=80) == [(tp, 9)]
    assert r.due({}, now=85) == [] and r.due({tp: 9}, now=90) == []  # went away and came back


def test_commits_are_counted_by_what_faust_answers(consumer, monkeypatch):
    """Faust's sensors see a commit start and end only: the wrapped _commit_offsets counts
    whether it took (committed) or not (failed: refused after a rebalance, or an error)."""
    from greenlane.streams.runtime import metrics

    tp = TP(GUARDED, 3)
    answers = iter([True, False])

    async def commit(offsets):
        return next(answers)

    async def flush():
        return None

    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    monkeypatch.setattr(consumer, "_commit", commit)
    monkeypatch.setattr(consumer.app.producer, "flush", flush)
    monkeypatch.setattr(consumer.app.tables, "on_commit", lambda offsets: None)
    counted = {r: metrics.OFFSET_COMMITS.labels(r)._value.get() for r in ("committed", "failed")}
    assert asyncio.run(consumer._commit_offsets({tp: 10})) is True
    assert asyncio.run(consumer._commit_offsets({tp: 12})) is False
    revoked = TP(GUARDED, 4)  # not assigned here: Faust discards it and answers False
    assert asyncio.run(consumer._commit_offsets({revoked: 3})) is False
    after = {r: metrics.OFFSET_COMMITS.labels(r)._value.get() for r in ("committed", "failed")}
    assert after["committed"] - counted["committed"] == 1
    assert after["failed"] - counted["failed"] == 2
