"""What every batch core shares: the replay log and isolation of a message that breaks a run."""

from greenlane.streams.core.outcomes import replay_logged, run_isolated
from greenlane.streams.domain.batch import BatchOutcome, Forward, InboundMessage
from tests.factories import NOW_MS


def msg(n: int, value: bytes) -> InboundMessage:
    return InboundMessage(b"k%d" % n, value, "internal", 1, n, NOW_MS)


def counting(table_index: int = 0):
    """A batch core that counts each message in a table and forwards the loud ones."""

    def run(batch, tables):
        out = BatchOutcome()
        for pos, m in enumerate(batch):
            if m.value == b"boom":
                raise RuntimeError("a defect")
            table = tables[table_index]
            table[m.value.decode()] = {"n": (table.get(m.value.decode()) or {"n": 0})["n"] + 1}
            if m.value.startswith(b"loud"):
                out.forwards.append(Forward("pattern_finding", m.key, 3, {"v": 1}, pos))
        return out

    return run


def test_a_message_that_breaks_the_run_is_dead_lettered_alone_and_the_rest_is_kept():
    table: dict = {}
    batch = [msg(0, b"a"), msg(1, b"boom"), msg(2, b"loud-c")]
    out = run_isolated(counting(), batch, [table], None, NOW_MS)
    assert table == {"a": {"n": 1}, "loud-c": {"n": 1}}
    [(key, dead)] = out.dead_letters
    assert key == b"k1" and dead["error_code"] == "ASSESSMENT_FAILED"
    assert "a defect" in dead["error_message"]
    assert out.responses == []  # an internal record has no carrier to answer
    assert [(f.source, f.partition) for f in out.forwards] == [(2, 3)]  # positions of the batch


def test_the_replay_log_republishes_forwards_and_counts_nothing_twice():
    table: dict = {}
    log: dict = {}
    batch = [msg(0, b"quiet"), msg(1, b"loud-x")]
    ids = ["id-quiet", "id-loud"]
    run = counting()

    def fresh(messages):
        return run(messages, [table])

    first = replay_logged(ids, batch, log, NOW_MS, fresh)
    assert set(log) == {"id-loud"}  # only what published something is logged
    again = replay_logged(ids, batch, log, NOW_MS + 1, fresh)
    assert again.forwards == first.forwards
    assert table["loud-x"] == {"n": 1}  # republished, not counted again
    assert table["quiet"] == {"n": 2}  # nothing logged: run again (a count that must be idempotent)
