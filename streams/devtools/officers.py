"""Simulated officers of a targeting centre: they work the inspect and hold queues and file
what they found, from the simulated world's ground truth.

An INSPECT is a physical examination: any fraud mechanism can be found. A HOLD is, for a share
of them (``documentary_share``), only a documentary check: invoices and descriptions show an
undervaluation, a wrong HS code or a split, never a counterfeit or what is really in the box.
Examinations miss and err as the synthetic history's do (``fraud.examine``, with
history.yaml's ``label_noise`` and ``penalty_share``): one inspection service for both.

``examine_decisions`` is pure (decisions and truths in, InspectionOutcome records out);
``Officers`` keeps the queue, so an outcome is filed ``delay_seconds`` after the decision, against
the latest revision seen by then, once per consignment. ``make run`` feeds it from the
decision topics and publishes what it returns on the inspection-outcome topic, which the worker
joins into the labelled history ``greenlane retrain`` learns from.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from greenlane.streams.devtools.fraud import MECHANISMS, SEIZED_MECHANISMS, Truth, examine
from greenlane.streams.devtools.history import HistorySettings, load_history_settings
from greenlane.streams.devtools.simulator import SIMULATION_FILE
from greenlane.streams.settings import ConfigError, read_yaml

EXAMINED = ("INSPECT", "HOLD")
PHYSICAL = "physical inspection"
DOCUMENTARY = "documentary check"


@dataclass(frozen=True)
class OfficerSettings:
    """simulation.yaml ``officers``: how the targeting centre works its queues."""

    delay_seconds: float  # from the decision to its outcome
    documentary_share: float  # of holds, those only checked on documents
    documentary_finds: frozenset[str]  # mechanisms a documentary check can find
    teams: tuple[str, ...]  # who files outcomes (audit only)


def load_officer_settings(path: Path = SIMULATION_FILE) -> OfficerSettings:
    """Read and check the ``officers`` section; a mistake is one line naming file and field."""
    where = f"{path}: officers"
    data = (read_yaml(path, "simulation settings") or {}).get("officers")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: missing (delay_seconds, documentary_share, ...)")
    known = {"delay_seconds", "documentary_share", "documentary_finds", "teams"}
    if set(data) != known:
        missing, extra = sorted(known - set(data)), sorted(set(data) - known)
        raise ConfigError(f"{where}: missing {missing}, unknown {extra}")
    delay = data["delay_seconds"]
    if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
        raise ConfigError(f"{where}.delay_seconds: a number of seconds >= 0, not {delay!r}")
    share = data["documentary_share"]
    if not isinstance(share, int | float) or isinstance(share, bool) or not 0 <= share <= 1:
        raise ConfigError(f"{where}.documentary_share: a share 0..1, not {share!r}")
    finds = data["documentary_finds"]
    if not isinstance(finds, list) or not set(finds) <= set(MECHANISMS):
        raise ConfigError(f"{where}.documentary_finds: a list of {', '.join(MECHANISMS)}")
    teams = data["teams"]
    if not isinstance(teams, list) or not teams or not all(isinstance(t, str) for t in teams):
        raise ConfigError(f"{where}.teams: a non-empty list of names")
    return OfficerSettings(float(delay), float(share), frozenset(finds), tuple(teams))


def _result(found: bool, truth: Truth | None) -> str:
    if not found:
        return "NO_FINDINGS"
    if truth is not None and truth.mechanism in SEIZED_MECHANISMS:
        return "SEIZED"
    return "DUTY_ADJUSTED"


def examine_decisions(
    decisions: list[dict],
    truths: Mapping[str, Truth],
    tax_rates: Mapping[str, float | None],
    s: OfficerSettings,
    inspections: HistorySettings,
    rng: np.random.Generator,
    now_ms: int,
) -> list[dict]:
    """InspectionOutcome records for held or inspected pre-arrival decisions (others are
    skipped). ``truths`` and ``tax_rates`` by house waybill; a consignment the world does not
    know is examined as an honest one."""
    work = [d for d in decisions if d["stage"] == "PRE_ARRIVAL" and d["route"] in EXAMINED]
    if not work:
        return []
    draws = zip(work, rng.random(len(work)), strict=True)
    documentary = [d["route"] == "HOLD" and u < s.documentary_share for d, u in draws]
    truth = [truths.get(d["house_waybill"]) for d in work]
    found, recovered = examine(
        truth,
        np.array([tax_rates.get(d["house_waybill"]) or 0.0 for d in work]),
        rng.random(len(work)),
        inspections.label_noise["missed_fraud"],
        inspections.label_noise["false_finding"],
        inspections.penalty_share,
        [s.documentary_finds if doc else None for doc in documentary],
    )
    out = []
    for d, t, doc, hit, amount in zip(work, truth, documentary, found, recovered, strict=True):
        team = s.teams[zlib.crc32(d["house_waybill"].encode()) % len(s.teams)]
        out.append(
            {
                "decision_id": d["decision_id"],
                "house_waybill": d["house_waybill"],
                "officer": team,
                "result": _result(bool(hit), t),
                "recovered_revenue": float(amount),
                "currency": "EUR",
                "inspected_at": now_ms,
                "notes": DOCUMENTARY if doc else PHYSICAL,
            }
        )
    return out


class Officers:
    """The queue: each held or inspected consignment is examined once, ``delay_seconds`` after
    its first such decision, on the latest revision seen by then (a revision that releases it
    takes it off the queue)."""

    def __init__(
        self,
        settings: OfficerSettings | None = None,
        inspections: HistorySettings | None = None,
        seed: int = 0,
    ) -> None:
        self.settings = settings or load_officer_settings()
        self.inspections = inspections or load_history_settings()
        self.rng = np.random.default_rng(seed)
        self._latest: dict[str, dict] = {}  # house waybill -> latest decision, while queued
        self._due: list[tuple[float, str]] = []
        self._examined: set[str] = set()
        self._revision: dict[str, int] = {}  # house waybill -> latest revision read
        self.filed = 0

    @property
    def waiting(self) -> int:
        return len(self._latest)

    def receive(self, decisions: Iterable[dict[str, Any]], now: float) -> None:
        """Decoded decisions as they are read (any stage, any route)."""
        for d in decisions:
            if d.get("stage") != "PRE_ARRIVAL":
                continue
            waybill = d["house_waybill"]
            if waybill in self._examined or d["revision"] < self._revision.get(waybill, -1):
                continue  # the topics may deliver an older revision after a newer one
            self._revision[waybill] = d["revision"]
            if waybill in self._latest:
                self._latest[waybill] = d
            elif d["route"] in EXAMINED:
                self._latest[waybill] = d
                heapq.heappush(self._due, (now + self.settings.delay_seconds, waybill))

    def due(
        self,
        now: float,
        truths: Mapping[str, Truth],
        tax_rates: Mapping[str, float | None],
        now_ms: int,
    ) -> list[dict]:
        """Outcomes of the consignments whose delay has passed (released ones are dropped)."""
        ready = []
        while self._due and self._due[0][0] <= now:
            _, waybill = heapq.heappop(self._due)
            decision = self._latest.pop(waybill)
            self._examined.add(waybill)
            ready.append(decision)
        out = examine_decisions(
            ready, truths, tax_rates, self.settings, self.inspections, self.rng, now_ms
        )
        self.filed += len(out)
        return out


class OutcomeDesk:
    """Publishes the officers' outcomes on the inspection-outcome topic (Avro, Confluent wire
    format, keyed by house waybill), as a targeting centre's case system would."""

    def __init__(self, settings: Any, schema_id: int) -> None:
        from confluent_kafka import Producer

        from greenlane.streams.runtime.serde import WireEncoder, load_schema
        from greenlane.streams.settings import schema_path

        self.topic = settings.topics.name("inspection_outcome")
        self.encoder = WireEncoder(load_schema(schema_path("inspection_outcome")), schema_id)
        self.producer = Producer({**settings.as_admin(), "enable.idempotence": True})
        self.failed = 0

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failed += 1

    def file(self, outcomes: list[dict]) -> None:
        for record in outcomes:
            self.producer.produce(
                self.topic,
                self.encoder.encode(record),
                record["house_waybill"].encode(),
                on_delivery=self._delivered,
            )
        self.producer.poll(0)

    def close(self, timeout: float = 30.0) -> int:
        """Deliver what is queued; returns how many outcomes could not be delivered."""
        left = self.producer.flush(timeout)
        return left + self.failed
