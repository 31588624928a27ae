"""Live progress for `make run`, read from the worker's own Prometheus endpoint.

Reading the metrics (rather than counting in the simulator) shows what operators will see in
Grafana, and proves the endpoint works on every run.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from greenlane.streams.runtime import metrics


def scrape(url: str, timeout: float = 2.0) -> dict[str, dict[tuple, float]]:
    """Sample name -> {sorted label items: value}; empty when the endpoint is not up yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


def readiness(metrics_url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """The worker's /ready answer next to its /metrics: (ready, reason)."""
    url = metrics_url.rsplit("/", 1)[0] + "/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200, resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode().strip()
    except OSError as exc:
        return False, f"not answering ({exc})"


def total(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if want <= set(k))


def histogram_quantile(samples: dict[str, dict[tuple, float]], name: str, q: float) -> float | None:
    """Upper bound of the bucket holding quantile q, over all label sets."""
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in samples.get(f"{name}_bucket", {}).items():
        le = dict(labels)["le"]
        buckets[float("inf") if le == "+Inf" else float(le)] += value
    if not buckets or buckets[max(buckets)] == 0:
        return None
    count = buckets[max(buckets)]
    for bound in sorted(buckets):
        if buckets[bound] >= q * count:
            return bound
    return None


def _bound(seconds: float | None) -> str:
    """A histogram bucket bound as text; the overflow bucket as '> the largest bound'."""
    if seconds is None:
        return "-"
    if seconds == float("inf"):
        return f"> {max(metrics.DECISION_LATENCY._upper_bounds[:-1]):g} s (backlog)"
    return f"≤ {seconds:g} s"


class LiveProgress:
    """Turns successive scrapes into one status line."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._last: tuple[float, float] | None = None  # (elapsed, decided)
        self.samples: dict[str, dict[tuple, float]] = {}

    def line(self, sent: int, elapsed: float) -> str:
        samples = scrape(self.url)
        if not samples:
            return f"{elapsed:6.0f}s  sent {sent:,}  (waiting for the worker's metrics…)"
        self.samples = samples
        decided = total(samples, "greenlane_decisions_total")
        rate = 0.0
        if self._last is not None and elapsed > self._last[0]:
            rate = (decided - self._last[1]) / (elapsed - self._last[0])
        self._last = (elapsed, decided)
        shares = (
            {
                route: 100 * total(samples, "greenlane_decisions_total", route=route) / decided
                for route in ("RELEASE", "HOLD", "INSPECT")
            }
            if decided
            else {}
        )
        split = " ".join(f"{r.lower()} {v:.1f}%" for r, v in shares.items()) or "no decisions yet"
        dead = total(samples, "greenlane_dead_letters_total")
        p95 = histogram_quantile(samples, "greenlane_decision_latency_seconds", 0.95)
        return (
            f"{elapsed:6.0f}s  sent {sent:,}  decided {decided:,.0f} ({rate:,.0f}/s)  {split}  "
            f"dead letters {dead:,.0f}  p95 latency {_bound(p95)}   "
        )

    def summary(self, sent: int, elapsed: float) -> str:
        s = self.samples
        decided = total(s, "greenlane_decisions_total")
        lines = [
            f"sent {sent:,} filings in {elapsed:.0f} s; {decided:,.0f} decisions; "
            f"{total(s, 'greenlane_dead_letters_total'):,.0f} dead letters"
        ]
        for stage in ("PRE_LOADING", "PRE_ARRIVAL"):
            parts = [
                f"{r.lower()} {total(s, 'greenlane_decisions_total', stage=stage, route=r):,.0f}"
                for r in ("RELEASE", "HOLD", "INSPECT")
            ]
            lines.append(f"  {stage.lower().replace('_', '-')}: " + ", ".join(parts))
        return "\n".join(lines)
