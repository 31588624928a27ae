"""How good the live pipeline is, against the simulated world's ground truth.

The simulator knows what every consignment really is (``fraud.Truth``); the pipeline does not.
``scorecard`` joins the two: of the consignments the pipeline inspected or held, how many were
fraudulent (precision, the inspection *hit rate* customs reports), and of the fraudulent ones,
how many it stopped (recall). The model's own ranking is judged the way customs judges it (ROC
AUC, precision at the 5% inspection budget) next to the best any model could reach on this
traffic: fraud that leaves no trace in the data (``hidden``) cannot be told from honest
consignments, so a perfect model ranks every traced fraud first and the hidden ones at random.

Pure: decisions and truths in, figures out. ``greenlane scorecard`` feeds it from the decision
topics and the simulator's ground-truth file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from greenlane.models.evaluate import at_budget
from greenlane.models.stream import declared_tax_rate
from greenlane.streams.devtools.fraud import Truth

BUDGET = 5.0  # percent of declarations: the inspection budget the model is judged at
STOPPED = ("INSPECT", "HOLD")


@dataclass(frozen=True, slots=True)
class Decided:
    """What the pipeline last decided for a consignment's pre-arrival declaration."""

    house_waybill: str
    route: str  # RELEASE | HOLD | INSPECT
    revision: int
    model_probability: float | None


def latest(decisions: Iterable[Mapping[str, Any]]) -> dict[str, Decided]:
    """The latest revision of each consignment's pre-arrival decision (decoded RiskDecisions)."""
    out: dict[str, Decided] = {}
    for d in decisions:
        if d.get("stage") != "PRE_ARRIVAL":
            continue
        waybill = d["house_waybill"]
        known = out.get(waybill)
        if known is None or d["revision"] >= known.revision:
            out[waybill] = Decided(
                waybill, d["route"], int(d["revision"]), d.get("model_probability")
            )
    return out


def read_truth(path: Path) -> dict[str, Truth]:
    """The simulator's ground-truth file (JSON lines, ``Truth.as_record``) by house waybill."""
    out: dict[str, Truth] = {}
    with Path(path).open(encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            out[r["house_waybill"]] = Truth(
                r["mechanism"],
                r["hidden"],
                r["true_value_eur"],
                r["declared_value_eur"],
                r.get("group"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines):  # the last line of a file still being written
                break
            raise ValueError(
                f"{path}: line {number} is not a ground-truth record ({exc})"
            ) from None
    return out


def _share(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def scorecard(decided: Mapping[str, Decided], truth: Mapping[str, Truth]) -> dict[str, Any]:
    """Precision and recall of inspect, hold and both; the model against the best possible."""
    joined = [(d, truth[w]) for w, d in decided.items() if w in truth]
    fraud = np.array([t.fraud for _, t in joined], dtype=bool)
    hidden = np.array([t.hidden for _, t in joined], dtype=bool)
    route = np.array([d.route for d, _ in joined])
    out: dict[str, Any] = {
        "declarations": len(joined),
        "frauds": int(fraud.sum()),
        "fraud_rate": _share(fraud.sum(), len(joined)),
        "hidden_share_of_fraud": _share((fraud & hidden).sum(), fraud.sum()),
    }
    for name, routes in (("inspect", ("INSPECT",)), ("hold", ("HOLD",)), ("stopped", STOPPED)):
        chosen = np.isin(route, routes)
        out[name] = {
            "consignments": int(chosen.sum()),
            "precision": _share((chosen & fraud).sum(), chosen.sum()),
            "recall": _share((chosen & fraud).sum(), fraud.sum()),
        }
    out["inspection_hit_rate"] = out["inspect"]["precision"]
    scored = np.array([d.model_probability is not None for d, _ in joined], dtype=bool)
    out["model"] = model_figures(
        np.array([d.model_probability or 0.0 for d, _ in joined])[scored],
        fraud[scored],
        hidden[scored],
    )
    return out


def model_figures(p: np.ndarray, fraud: np.ndarray, hidden: np.ndarray) -> dict[str, Any]:
    """ROC AUC and precision@5% of the model's probabilities, and the best any model could do.

    The best: every traced fraud ranked above everything else, hidden frauds among the honest
    consignments at random. Its AUC is 1 - h/2 for a hidden share h of fraud (a hidden fraud
    beats half the honest ones). At the budget of k declarations it finds min(T, k) of the T
    traced frauds, and fills what is left of the budget at random from the rest, whose fraud
    rate is that of the H hidden ones.
    """
    from sklearn.metrics import roc_auc_score

    n = len(p)
    if n == 0 or fraud.all() or not fraud.any():
        return {"declarations": n, "roc_auc": None, f"precision@{BUDGET:g}%": None}
    k = max(1, math.ceil(n * BUDGET / 100))  # as at_budget counts it
    traced, hidden_frauds = int((fraud & ~hidden).sum()), int((fraud & hidden).sum())
    rest = n - traced
    best_precision = (
        min(traced, k) + max(k - traced, 0) * (hidden_frauds / rest if rest else 0.0)
    ) / k
    precision = at_budget(fraud.astype(int), p, None, BUDGET)["precision"]
    h = (fraud & hidden).sum() / fraud.sum()
    return {
        "declarations": n,
        "roc_auc": round(float(roc_auc_score(fraud, p)), 4),
        "best_roc_auc": round(1 - h / 2, 4),
        f"precision@{BUDGET:g}%": round(precision, 4),
        f"best_precision@{BUDGET:g}%": round(best_precision, 4),
        "share_of_best_precision": round(precision / best_precision, 4) if best_precision else None,
    }


def format_scorecard(card: Mapping[str, Any]) -> str:
    """The scorecard as a few lines for the terminal."""

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}%"

    lines = [
        f"{card['declarations']:,} pre-arrival declarations with ground truth, "
        f"{card['frauds']:,} fraudulent ({pct(card['fraud_rate'])}; "
        f"{pct(card['hidden_share_of_fraud'])} of them leave no trace in the data)"
    ]
    for name in ("inspect", "hold", "stopped"):
        c = card[name]
        lines.append(
            f"  {name:8} {c['consignments']:>8,}  precision {pct(c['precision']):>6}  "
            f"recall {pct(c['recall']):>6}"
        )
    m = card["model"]
    if m.get("roc_auc") is not None:
        b = f"{BUDGET:g}%"
        lines.append(
            f"  model    ROC AUC {m['roc_auc']:.3f} (best possible {m['best_roc_auc']:.3f}); "
            f"precision@{b} {m[f'precision@{b}']:.3f} (best {m[f'best_precision@{b}']:.3f}, "
            f"{pct(m['share_of_best_precision'])} of it)"
        )
    return "\n".join(lines)


# -------------------------------------------------------------------- feeding it (runtime)


class TruthLog:
    """Keeps the ground truth of the filings the simulator sends, in memory and as JSON lines.

    ``tap`` passes filings through unchanged; each pre-arrival filing's truth is recorded (one
    per consignment). The file is what ``greenlane scorecard --truth`` reads later.
    """

    def __init__(self, path: Path, rates: Mapping[str, float] | None = None) -> None:
        from greenlane.streams.stages.quality import load_quality_rules

        self.rates = rates if rates is not None else load_quality_rules().reference_rates
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.truth: dict[str, Truth] = {}
        self.tax_rate: dict[str, float | None] = {}  # what the officers recover tax at

    def tap(self, filings: Iterable[Any]) -> Iterable[Any]:
        # line-buffered: the file is whole up to the last consignment handed over, at any time
        with self.path.open("w", encoding="utf-8", buffering=1) as out:
            for filing in filings:
                truth = filing.truth
                if truth is not None and filing.role == "pre_arrival":
                    waybill = filing.value["house_waybill"]
                    self.truth[waybill] = truth
                    self.tax_rate[waybill] = declared_tax_rate(filing.value, self.rates)
                    out.write(json.dumps(truth.as_record(waybill)) + "\n")
                yield filing


class DecisionTap:
    """Reads the release, hold and inspect topics (every partition, no consumer group) and keeps
    each consignment's latest pre-arrival decision. ``start="end"``: only decisions made from
    now on (a ``make run``); ``"beginning"``: everything the topics hold."""

    ROLES = ("release", "hold", "inspect")

    def __init__(
        self,
        settings: Any,
        start: str = "end",
        listener: Callable[[list[dict]], None] | None = None,
    ) -> None:
        """``listener``: given every batch of decoded decisions read (the simulated officers)."""
        from confluent_kafka import (
            OFFSET_BEGINNING,
            OFFSET_END,
            Consumer,
            KafkaException,
            TopicPartition,
        )

        from greenlane.streams.runtime import admin
        from greenlane.streams.runtime.serde import WireDecoder, load_schema
        from greenlane.streams.settings import ConfigError, schema_path

        self.consumer = Consumer(
            {
                **settings.as_admin(),
                "group.id": "greenlane-scorecard",  # never committed: assign(), not subscribe()
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        try:
            topics = [settings.topics.name(r) for r in self.ROLES]
            meta = self.consumer.list_topics(timeout=10)
            missing = [t for t in topics if t not in meta.topics]
            if missing:
                raise ConfigError(f"decision topics not on {settings.bootstrap_servers}: {missing}")
            offset = OFFSET_END if start == "end" else OFFSET_BEGINNING
            self.partitions = [
                TopicPartition(t, p, offset) for t in topics for p in meta.topics[t].partitions
            ]
            self.consumer.assign(self.partitions)
        except KafkaException as exc:
            self.consumer.close()
            raise ConfigError(
                f"{settings.bootstrap_servers}: cannot read decisions: {exc}"
            ) from None
        except ConfigError:
            self.consumer.close()
            raise
        self.decoder = WireDecoder(
            load_schema(schema_path("inspect")),
            admin.schema_fetcher(admin.registry_client(settings)),
        )
        self.decided: dict[str, Decided] = {}
        self.listener = listener

    def poll(self, seconds: float = 0.2, max_messages: int = 50_000) -> int:
        """Read what has arrived (up to ``max_messages``); returns how many were read."""
        messages = self.consumer.consume(max_messages, timeout=seconds)
        values = [m.value() for m in messages if m.error() is None]
        records = [r for r in self.decoder.decode_batch(values) if isinstance(r, dict)]
        if self.listener is not None and records:
            self.listener(records)
        for waybill, d in latest(records).items():
            known = self.decided.get(waybill)
            if known is None or d.revision >= known.revision:
                self.decided[waybill] = d
        return len(values)

    def read_to_end(self, idle_seconds: float = 3.0) -> None:
        """Poll until the topics have nothing new for ``idle_seconds``."""
        import time

        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_seconds:
            if self.poll(0.5):
                quiet_since = time.monotonic()

    def close(self) -> None:
        self.consumer.close()


def hit_rate(decided: Mapping[str, Decided], truth: Mapping[str, Truth]) -> float | None:
    """Share of inspected consignments that were fraudulent (the progress line's KPI)."""
    inspected = [truth[w].fraud for w, d in decided.items() if d.route == "INSPECT" and w in truth]
    return sum(inspected) / len(inspected) if inspected else None
