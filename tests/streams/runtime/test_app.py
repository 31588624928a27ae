import subprocess
import sys


def test_a_worker_whose_shutdown_hangs_after_a_crash_exits_anyway():
    hung = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; from greenlane.streams.runtime.app import arm_exit_watchdog; "
            "arm_exit_watchdog(0.2); time.sleep(30)",
        ],
        capture_output=True,
        text=True,
        timeout=25,
    )
    assert hung.returncode == 1
    assert "did not stop within" in hung.stderr


def test_a_worker_whose_shutdown_hangs_after_a_stop_exits_cleanly_in_bounded_time():
    script = (
        "import time, types\n"
        "from greenlane.streams.runtime.app import watch_for_stop\n"
        "app = types.SimpleNamespace(should_stop=False, crashed=False)\n"
        "watch_for_stop(app, 0.3, poll=0.05)\n"
        "app.should_stop = True  # SIGTERM: and then the shutdown hangs\n"
        "time.sleep(30)\n"
    )
    hung = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=25
    )
    assert hung.returncode == 0
    assert "did not stop within 0 s of the stop" in hung.stderr


def test_a_batch_that_fails_is_tried_again_until_it_succeeds(monkeypatch):
    import asyncio

    from greenlane.streams.domain.batch import ServiceUnavailable
    from greenlane.streams.runtime import app, metrics
    from greenlane.streams.runtime.health import AgentProgress

    monkeypatch.setattr(app, "FIRST_RETRY_SECONDS", 0.001)
    failures = [ServiceUnavailable("registry away"), ValueError("defect"), None]
    tries = []
    progress = AgentProgress("agent-x", "t")
    seen_waiting = []

    async def attempt():
        tries.append(1)
        seen_waiting.append(progress.waiting_for)
        exc = failures.pop(0)
        if exc is not None:
            raise exc

    before = metrics.BATCH_RETRIES.labels("agent-x", "ServiceUnavailable")._value.get()
    asyncio.run(app.retrying("agent-x", attempt, lambda: False, 0.01, progress))
    assert len(tries) == 3
    assert seen_waiting == [None, "registry away", "registry away"]
    assert progress.waiting_for is None
    after = metrics.BATCH_RETRIES.labels("agent-x", "ServiceUnavailable")._value.get()
    assert after == before + 1


def test_retrying_stops_when_the_worker_stops():
    import asyncio

    import pytest

    from greenlane.streams.runtime import app

    async def attempt():
        raise ValueError("defect")

    with pytest.raises(ValueError):
        asyncio.run(app.retrying("agent-y", attempt, lambda: True, 0.01))


def test_the_scheduled_retrain_runs_the_command_and_counts_its_result(tmp_path, monkeypatch):
    import asyncio

    from greenlane.models.feedback import LabelledHistory
    from greenlane.models.registry import Registry
    from greenlane.streams.devtools.history import generate_history
    from greenlane.streams.runtime import app, metrics

    monkeypatch.setenv("GREENLANE_HISTORY", str(tmp_path / "history"))
    monkeypatch.setenv("GREENLANE_MODEL_REGISTRY", str(tmp_path / "models"))

    def count(result: str) -> float:
        return metrics.RETRAINS.labels(result)._value.get()

    failed = count("failed")
    assert asyncio.run(app.retrain_now(600)) == "failed"  # no outcomes yet: exit code 1
    assert count("failed") == failed + 1
    assert asyncio.run(app.retrain_now(0.01)) == "failed"  # killed: outlasted its timeout
    assert count("failed") == failed + 2
    with monkeypatch.context() as m:  # cannot even start
        m.setattr(app.sys, "executable", str(tmp_path / "no-python"))
        assert asyncio.run(app.retrain_now(600)) == "failed"
    assert count("failed") == failed + 3

    LabelledHistory().append(generate_history(3_000, seed=2))
    promoted = count("promoted")
    assert asyncio.run(app.retrain_now(600)) == "promoted"  # no current model: the first
    assert count("promoted") == promoted + 1
    assert Registry().current() == "v0001"


def test_a_retrain_schedule_that_is_not_cron_is_refused(tmp_path):
    import pytest

    from greenlane.streams.settings import ConfigError, load_settings

    extra = tmp_path / "worker.toml"
    extra.write_text('[worker]\nretrain_cron = "every night"\n')
    with pytest.raises(ConfigError, match="retrain_cron 'every night' is not a cron expression"):
        load_settings(extra, env={})
    extra.write_text('[worker]\nretrain_cron = "0 3 * * *"\n')
    assert load_settings(extra, env={}).worker.retrain_cron == "0 3 * * *"


def test_a_batch_s_metrics_count_every_decision_response_and_dead_letter():
    """Counted per batch and added once per label set: the totals are those of the records."""
    import time

    from prometheus_client import REGISTRY, Counter

    from greenlane.streams.domain.batch import BatchOutcome, InboundMessage
    from greenlane.streams.runtime.app import record_metrics

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def decision(route: str, referrals: list[str], pick: bool, p: float | None) -> dict:
        return {
            "stage": "PRE_ARRIVAL",
            "route": route,
            "referrals": referrals,
            "random_pick": pick,
            "model_probability": p,
        }

    now_ms = int(time.time() * 1000)
    messages = [InboundMessage(b"k", b"v", "t", 0, i, now_ms - 1000) for i in range(3)]
    outcome = BatchOutcome(
        decisions=[
            decision("INSPECT", ["health-test", "ipr-test"], False, 0.9),
            decision("INSPECT", ["health-test"], True, None),
            decision("RELEASE", [], False, 0.1),
        ],
        decision_sources=[0, 1, 2],
        responses=[(b"k", {"status": "ACCEPTED"})] * 3 + [(b"k", {"status": "REJECTED"})],
        dead_letters=[(b"k", {"error_code": "TEST_CODE"})] * 2,
    )
    names = {
        "inspect": ("greenlane_decisions_total", {"stage": "PRE_ARRIVAL", "route": "INSPECT"}),
        "release": ("greenlane_decisions_total", {"stage": "PRE_ARRIVAL", "route": "RELEASE"}),
        "health": ("greenlane_referrals_total", {"agency": "health-test"}),
        "ipr": ("greenlane_referrals_total", {"agency": "ipr-test"}),
        "picks": ("greenlane_random_picks_total", {}),
        "dead": ("greenlane_dead_letters_total", {"error_code": "TEST_CODE"}),
        "rejected": ("greenlane_carrier_responses_total", {"status": "REJECTED"}),
        "latency": ("greenlane_decision_latency_seconds_count", {"stage": "PRE_ARRIVAL"}),
        "scores": ("greenlane_model_score_count", {}),
    }
    before = {k: value(n, **labels) for k, (n, labels) in names.items()}
    consumed = Counter("test_batch_consumed", "consumed in this test")
    record_metrics("PRE_ARRIVAL", outcome, time.perf_counter(), messages, consumed)
    grown = {k: value(n, **labels) - before[k] for k, (n, labels) in names.items()}
    assert grown == {
        "inspect": 2,
        "release": 1,
        "health": 2,
        "ipr": 1,
        "picks": 1,
        "dead": 2,
        "rejected": 1,
        "latency": 3,
        "scores": 2,
    }
    assert value("test_batch_consumed_total") == 3


def test_standby_replicas_are_a_setting_that_cannot_be_negative(tmp_path):
    import pytest

    from greenlane.streams.settings import ConfigError, load_settings

    assert load_settings(env={}).worker.standby_replicas == 1  # Faust's default, as before
    extra = tmp_path / "worker.toml"
    extra.write_text("[worker]\nstandby_replicas = -1\n")
    with pytest.raises(ConfigError, match=r"worker.toml: \[worker\] standby_replicas must be >= 0"):
        load_settings(extra, env={})
    extra.write_text("[worker]\nstandby_replicas = 0\n")
    assert load_settings(extra, env={}).worker.standby_replicas == 0
