import os
import subprocess
import sys
import time

from greenlane.streams.devtools.bench import (
    BrokerCpu,
    MemorySampler,
    cpu_by_part,
    gc_pauses,
    process_cpu_seconds,
    rss_mb,
)


def test_resident_memory_is_read_from_proc_and_gone_processes_give_none():
    assert rss_mb(os.getpid()) > 10  # this interpreter with pytest loaded
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert rss_mb(gone.pid) is None


def test_the_sampler_keeps_the_peak():
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; b = bytearray(80 << 20); time.sleep(1.0)"]
    )
    sampler = MemorySampler(child.pid, every=0.05)
    child.wait()
    figures = sampler.stop()
    assert figures["peak_rss_mb"] >= 80 and figures["peak_rss_mb"] >= figures["last_rss_mb"]


def test_cpu_by_part_is_per_filing_and_the_rest_is_the_process_less_the_parts():
    part = lambda name: (("part", name),)  # noqa: E731
    before = {
        "greenlane_cpu_seconds_total": {part("decode"): 1.0},
        "process_cpu_seconds_total": {(): 10.0},
    }
    after = {
        "greenlane_cpu_seconds_total": {part("decode"): 1.5, part("lists"): 0.25},
        "process_cpu_seconds_total": {(): 12.0},
    }
    figures = cpu_by_part(before, after, 10_000)
    assert figures == {
        "decode": 50.0,
        "lists": 25.0,
        "faust and the rest": 125.0,
        "process_total": 200.0,
    }
    assert list(figures)[:2] == ["decode", "lists"]  # the costliest part first


def test_gc_pauses_count_those_over_the_bound_between_two_scrapes():
    def buckets(counts: dict[str, float]) -> dict:
        return {
            "greenlane_gc_pause_seconds_bucket": {
                (("generation", "0"), ("le", le)): n for le, n in counts.items()
            }
        }

    before = buckets({"0.01": 5, "0.02": 5, "0.05": 5, "+Inf": 5})
    after = buckets({"0.01": 12, "0.02": 14, "0.05": 16, "+Inf": 16})
    assert gc_pauses(before, after) == {
        "gen0": {"pauses": 11, "over_20_ms": 2, "longest_ms_at_most": 50.0}
    }


def test_process_cpu_is_read_from_proc_and_gone_processes_give_none():
    spent = process_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn some CPU in this process
        pass
    assert process_cpu_seconds(os.getpid()) >= spent + 0.2
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert process_cpu_seconds(gone.pid) is None and process_cpu_seconds(None) is None


def test_broker_cores_are_its_cpu_over_the_wall_time(monkeypatch):
    readings = iter([10.0, 13.0])
    clock = iter([100.0, 102.0])
    monkeypatch.setattr("greenlane.streams.devtools.bench.infra.local_pid", lambda s, n: 42)
    monkeypatch.setattr(
        "greenlane.streams.devtools.bench.process_cpu_seconds", lambda pid: next(readings)
    )
    assert BrokerCpu(None, clock=lambda: next(clock)).cores() == 1.5
    monkeypatch.setattr("greenlane.streams.devtools.bench.infra.local_pid", lambda s, n: None)
    monkeypatch.setattr("greenlane.streams.devtools.bench.process_cpu_seconds", lambda pid: None)
    assert BrokerCpu(None).cores() is None  # an external broker: not measured
