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


def test_counters_with_known_labels_exist_at_zero_and_keep_their_counts():
    """A series that only appears with its first event hides that event from increase():
    known label values are there from the start, and counts already made are kept."""
    from prometheus_client import REGISTRY

    from greenlane.streams.runtime import metrics as m

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    assert value("greenlane_settings_reloads_total", settings="zz-set", result="refused") is None
    m.SETTINGS_RELOADS.labels("zz-set", "loaded").inc(3)
    m.initialise_known_labels(
        ["ZZ_STAGE"],
        ["ZZ_ROUTE"],
        ["zz-set"],
        ["zz-topic"],
        ["ZZ_STATUS"],
        ["zz_agency"],
        ["ZZ_CODE"],
    )
    assert value("greenlane_dead_letters_total", error_code="ZZ_CODE") == 0
    assert value("greenlane_settings_reloads_total", settings="zz-set", result="refused") == 0
    assert value("greenlane_settings_reloads_total", settings="zz-set", result="loaded") == 3
    assert value("greenlane_decisions_total", stage="ZZ_STAGE", route="ZZ_ROUTE") == 0
    assert value("greenlane_replayed_decisions_total", stage="ZZ_STAGE") == 0
    assert value("greenlane_messages_consumed_total", topic="zz-topic") == 0
    assert value("greenlane_carrier_responses_total", status="ZZ_STATUS") == 0
    assert value("greenlane_referrals_total", agency="zz_agency") == 0
    assert value("greenlane_reload_refused", what="zz-set") == 0
    assert value("greenlane_reload_refused", what="model") is not None
    for result in ("committed", "failed"):
        assert value("greenlane_offset_commits_total", result=result) is not None
    for result in ("joined", "dead_lettered"):
        assert value("greenlane_inspection_outcomes_total", result=result) is not None
    for result in ("promoted", "kept", "failed"):
        assert value("greenlane_scheduled_retrains_total", result=result) is not None


def test_a_refused_reload_is_counted_and_flagged_until_a_good_one_loads():
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("greenlane_settings_reloads_total", settings="zz-rr", result="refused")
    metrics.record_reload("zz-rr", ValueError("lanes.yaml: default.salt: empty"))
    assert value("greenlane_reload_refused", what="zz-rr") == 1
    assert (
        value("greenlane_settings_reloads_total", settings="zz-rr", result="refused") == before + 1
    )
    metrics.record_reload("zz-rr", None)
    assert value("greenlane_reload_refused", what="zz-rr") == 0
    models_before = value("greenlane_model_reloads_total", result="refused")
    metrics.record_reload("model", OSError("damaged"))
    assert value("greenlane_model_reloads_total", result="refused") == models_before + 1
    assert value("greenlane_reload_refused", what="model") == 1
    metrics.record_reload("model", None)
    assert value("greenlane_reload_refused", what="model") == 0
