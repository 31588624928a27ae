import os
import subprocess
import sys

from greenlane.streams.devtools.bench_restart import MemorySampler, rss_mb


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
