import logging

from greenlane.streams.runtime.logs import RepeatFilter, quiet_repeats


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, level: int = logging.ERROR, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, ("x",), None)


def test_a_burst_of_the_same_error_is_one_line_per_interval_with_the_count() -> None:
    clock = Clock()
    f = RepeatFilter(30, clock)
    passed = [f.filter(record("Unable connect to node with id %s")) for _ in range(500)]
    assert passed.count(True) == 1
    clock.now = 31
    again = record("Unable connect to node with id %s")
    assert f.filter(again)
    assert again.msg.endswith("(499 similar in the last 30 s not shown)")


def test_other_messages_and_info_lines_are_not_held_back() -> None:
    f = RepeatFilter(30, Clock())
    assert f.filter(record("Unable connect to node with id %s"))
    assert f.filter(record("Failed fetch messages from %s"))
    assert all(f.filter(record("Joined group", logging.INFO)) for _ in range(5))


def test_every_aiokafka_module_logger_gets_the_filter() -> None:
    import aiokafka.conn  # noqa: F401

    assert quiet_repeats(("aiokafka",)) > 1
    assert any(isinstance(x, RepeatFilter) for x in logging.getLogger("aiokafka.conn").filters)
