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
