import gc

from greenlane.streams.runtime import metrics


def _pauses(generation: str) -> float:
    """How many pauses the histogram holds for ``generation``."""
    return sum(b.get() for b in metrics.GC_PAUSE.labels(generation)._buckets)


def test_every_collector_pause_is_timed_once_however_often_it_is_watched():
    metrics.watch_gc()
    metrics.watch_gc()
    assert sum(getattr(cb, "greenlane", False) for cb in gc.callbacks) == 1
    before = _pauses("2")
    gc.collect()
    after = _pauses("2")
    assert after == before + 1
    assert metrics.GC_PAUSE_MAX.labels("2")._value.get() > 0


def test_cpu_parts_add_to_their_counters():
    before = metrics.CPU_SECONDS.labels("test part")._value.get()
    metrics.add_cpu({"test part": 0.25})
    assert metrics.CPU_SECONDS.labels("test part")._value.get() == before + 0.25
