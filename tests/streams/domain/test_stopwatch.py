from greenlane.streams.domain.stopwatch import Stopwatch


def test_parts_add_up_thread_cpu_and_take_starts_again():
    clock = Stopwatch()
    with clock.part("busy"):
        sum(i * i for i in range(200_000))
    clock.add("busy", 1.0)
    clock.add("other", 0.5)
    spent = clock.take()
    assert spent["busy"] > 1.0 and spent["other"] == 0.5
    assert clock.take() == {}


def test_a_part_that_raises_is_counted_all_the_same():
    clock = Stopwatch()
    try:
        with clock.part("failing"):
            raise ValueError("boom")
    except ValueError:
        pass
    assert "failing" in clock.take()
