"""The one way development tools start a worker process: `greenlane run`, the benchmarks and the
integration tests all launch, await, stop and kill workers through :class:`WorkerProcess`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from greenlane.streams.devtools.progress import readiness

WORKER_COMMAND = (sys.executable, "-m", "greenlane.streams.cli", "worker")


def free_port() -> int:
    """A loopback port nobody listens on right now (for a worker's metrics, a test broker)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WorkerNotReady(RuntimeError):
    """The worker exited, or did not say it was ready in time."""


class WorkerProcess:
    """A `greenlane worker` subprocess with its log, and its /metrics and /ready endpoint."""

    def __init__(
        self,
        log: Path,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = ("--quiet",),
        metrics_url: str | None = None,
    ) -> None:
        self.log = log
        self.env = dict(env) if env is not None else None
        self.args = args
        self.metrics_url = metrics_url
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the worker is not started")
        return self.process.pid

    def start(self) -> WorkerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as fh:
            self.process = subprocess.Popen(
                [*WORKER_COMMAND, *self.args], env=self.env, stdout=fh, stderr=subprocess.STDOUT
            )
        return self

    def exited(self) -> int | None:
        """The exit code, or None while it runs."""
        return None if self.process is None else self.process.poll()

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Seconds until /ready answered 200; raises WorkerNotReady (with the log's end)."""
        if self.metrics_url is None:
            raise RuntimeError("no metrics URL to ask for readiness")
        started = time.monotonic()
        while not readiness(self.metrics_url, timeout=1.0)[0]:
            code = self.exited()
            if code is not None or time.monotonic() - started > timeout:
                why = f"exited with {code}" if code is not None else f"not ready in {timeout:g} s"
                raise WorkerNotReady(f"the worker {why}; log {self.log}:\n{self.tail()}")
            time.sleep(0.1)
        return time.monotonic() - started

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM (Faust commits and leaves the group), SIGKILL after ``timeout``; returns the
        seconds it took."""
        started = time.monotonic()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return time.monotonic() - started

    def kill9(self) -> None:
        """A crash: no commit, no goodbye to the group."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
