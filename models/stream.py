"""The risk model in the stream: canonical rows from decoded filings, one vectorised score per
micro-batch, and the model in force swapped when the registry promotes another.

Features come from ``features.build_features`` exactly as in training; only the entity
history differs in origin: a snapshot (the model's own, from its training data) instead of the
training frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from greenlane.models.config import SETTINGS_DIR
from greenlane.models.drift import DriftMonitor, DriftReference, load_drift_settings
from greenlane.models.explain import (
    format_evidence,
    load_feature_labels,
    top_contributions,
    typical_row,
)
from greenlane.models.features import build_features, index_history
from greenlane.models.mapping import filing_value
from greenlane.models.registry import Registry, RegistryError
from greenlane.models.schema import CANONICAL, OUTCOMES, conform
from greenlane.streams.domain.money import convert
from greenlane.streams.domain.stopwatch import Stopwatch
from greenlane.streams.settings import ConfigError, build_section, read_yaml
from greenlane.streams.settings.secrets import pseudonymiser
from greenlane.streams.stages.revenue import (
    RevenueSettings,
    load_revenue_settings,
    nominal_tax_rate,
)

log = logging.getLogger("greenlane.model")
MODEL_REASON = "M_RISK_MODEL"


@dataclass(frozen=True)
class ScoringSettings:
    # Points the model adds to the risk score at probability 1.0 (linear in the probability).
    weight: float
    # Probabilities below this add nothing: the model speaks when it has something to say.
    floor: float
    # How often the worker looks for a newly promoted model.
    check_seconds: float
    # Whether the model's reason code is shown to carriers.
    carrier_visible: bool
    # Scores at or above this are explained by their top feature contributions.
    explain_above: float
    top_features: int


def load_scoring_settings(path: Path | None = None) -> ScoringSettings:
    """Read models/settings/scoring.yaml (how the model's probability joins the rule score)."""
    path = path or SETTINGS_DIR / "scoring.yaml"
    data = read_yaml(path, "scoring settings")
    settings = build_section(ScoringSettings, data or {}, str(path))
    if settings.weight < 0 or not 0 <= settings.floor < 1 or settings.check_seconds <= 0:
        raise ConfigError(f"{path}: weight >= 0, 0 <= floor < 1 and check_seconds > 0 expected")
    return settings


def _line_values(items: Sequence[dict], rates: Mapping[str, float]) -> list[float]:
    """Each item line's value in the reference currency (NaN when its currency has no rate)."""
    converted = (convert(i["value"], i["currency"], rates) for i in items)
    return [float("nan") if v is None else v for v in converted]


def _main_line(items: Sequence[dict], values: list[float]) -> dict:
    """The most valuable item line (the first when no value converts): its HS code, origin
    and duty stand for the declaration's."""
    best, highest = 0, None
    for k, v in enumerate(values):
        if v == v and (highest is None or v > highest):  # v != v: NaN
            best, highest = k, v
    return items[best]


def declared_tax_rate(record: dict, rates: Mapping[str, float]) -> float | None:
    """A declaration's ``tax_rate``, as ``canonical_rows`` gives it, for one record (the
    simulated officers recover tax at it)."""
    items = record["items"]
    main = _main_line(items, _line_values(items, rates))
    return nominal_tax_rate(_revenue_settings(), record["destination_country"], main["hs_code"])


def canonical_row(record: dict, rates: Mapping[str, float]) -> dict[str, Any]:
    """One pre-arrival declaration (a decoded Avro dict) as a canonical history row, no label.

    Weights, quantities and values (in the reference currency) are summed over item lines; HS
    code and origin are those of the most valuable line, seller and importer are keyed digests
    (``domain.pseudonyms``), and the tax rate is that line's duty
    plus the destination's VAT (``revenue.nominal_tax_rate``, of the shipped revenue
    settings). The filing names no declarant, so ``declarant_id`` is missing. Plain Python:
    the worker builds these once per batch, for the model and for the decision summaries.
    """
    items = record["items"]
    values = _line_values(items, rates)
    main = _main_line(items, values)
    seller, consignee = record["seller"], record["consignee"]
    party = pseudonymiser().party
    destination = record["destination_country"]
    known = [v for v in values if v == v]  # NaN: a currency without a rate
    return {
        "date": datetime.fromtimestamp(record["filing_time"] / 1000, UTC).date(),
        # keyed digests, never the parties in clear (the summaries and the labelled history
        # keep these); models.mapping gives an administration's own ids the same ones
        "seller_id": party("seller", seller["party_id"], seller["name"], seller["country"]),
        "importer_id": party(
            "importer", consignee["party_id"], consignee["name"], consignee["address"]
        ),
        "declarant_id": None,  # the data set names no declarant (nor does the history)
        "carrier_id": record["carrier_id"],
        "hs_code": main["hs_code"],
        "origin": main["origin_country"],
        "departure_country": seller["country"],
        "destination": destination,
        "net_mass_kg": float(sum(i["net_weight_kg"] for i in items)),
        "quantity": float(sum(i["quantity"] for i in items)),
        "value": float(sum(known)),
        "tax_rate": nominal_tax_rate(_revenue_settings(), destination, main["hs_code"]),
        "description": " ".join(i["description"] for i in items),
        "platform": record["platform"],
    }


def canonical_rows(
    records: Sequence[dict],
    rates: Mapping[str, float],
    extras: Sequence[tuple[str, str]] = (),
    rows: Sequence[dict[str, Any]] | None = None,
) -> pl.DataFrame:
    """Pre-arrival declarations as a frame of canonical history rows (``canonical_row``),
    no label; ``rows``: those rows when already built. ``extras`` (column, filing field) are
    a model's extra features, read from those fields."""
    if rows is None:
        rows = [canonical_row(r, rates) for r in records]
    frame = pl.from_dicts(rows, schema=_ROW_SCHEMA) if rows else _EMPTY_ROWS
    frame = conform(frame)
    if extras:
        frame = frame.with_columns(
            pl.Series(name, [filing_value(r, path) for r in records], strict=False)
            for name, path in extras
        )
    return frame


# the columns of canonical_row, in its order
_ROW_SCHEMA = {name: dtype for name, dtype in CANONICAL.items() if name not in OUTCOMES}
_EMPTY_ROWS = pl.DataFrame(schema=_ROW_SCHEMA)


@cache
def _revenue_settings() -> RevenueSettings:
    return load_revenue_settings()


@dataclass(frozen=True, slots=True)
class ModelPart:
    """What the model adds to one decision."""

    version: str
    probability: float
    reason: dict | None  # None below the floor


class StreamScorer:
    """The model in force in a worker, checked against the registry every few seconds."""

    def __init__(
        self,
        registry: Registry | None = None,
        settings: ScoringSettings | None = None,
        on_reload: Callable[[str, Exception | None], None] | None = None,
    ) -> None:
        self.registry = registry or Registry()
        # told of each model version taken (None) or refused (the error), once per version
        self.on_reload = on_reload or (lambda version, error: None)
        self.refused: str | None = None  # the version last refused: not retried
        self.settings = settings or load_scoring_settings()
        self.version: str | None = None
        self.model: Any = None
        self.monitor: DriftMonitor | None = None  # the live distribution vs the training window
        self.labels = load_feature_labels()
        self.stopwatch = Stopwatch()  # the worker's, once an Assessor holds this scorer
        self._next_check = 0.0
        # (model, feature dtypes, the model's typical_row): computed once, not per batch
        self._typical: tuple[Any, tuple, np.ndarray] | None = None
        self.refresh()

    def refresh(self) -> bool:
        """Load the registry's current model if it changed; True when a new one is in force."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.settings.check_seconds
        try:
            current = self.registry.current()
            if current is not None and current == self.version and self.refused:
                self.refused = None  # rolled back to the model in force: nothing refused now
                self.on_reload(current, None)
                return False
            if current is None or current in (self.version, self.refused):
                return False
        except (RegistryError, OSError, ValueError) as exc:
            log.error("model registry not readable, keeping %s: %s", self.version, exc)
            return False
        try:
            model = self.registry.load(current)
        except Exception as exc:  # a damaged artifact must not stop the stream: keep scoring
            log.error("model %s refused, keeping %s: %s", current, self.version, exc)
            self.refused = current
            self.on_reload(current, exc)
            return False
        self.model, self.version = model, current
        self.on_reload(current, None)
        self.history = index_history(model.history)
        drift = model.info.get("drift")
        self.monitor = (
            DriftMonitor(DriftReference.from_dict(drift), load_drift_settings().half_life_rows)
            if drift
            else None
        )
        log.warning("risk model %s in force", current)
        return True

    def score(
        self,
        records: Sequence[dict],
        rates: Mapping[str, float],
        rows: Sequence[dict[str, Any]] | None = None,
    ) -> list[ModelPart | None]:
        """One vectorised call for the batch; None for every record when no model exists yet.
        ``rows``: the records' ``canonical_row``s when the caller has built them already."""
        if self.model is None or not records:
            return [None] * len(records)
        model = self.model
        part = self.stopwatch.part
        with part("model rows"):
            frame = canonical_rows(records, rates, model.spec.extra_filing, rows)
        with part("model features"):
            features = build_features(frame, model.spec, self.history)
        with part("model predict"):
            matrix = model.matrix(features)
            probabilities = model.predict_encoded(matrix)
            if self.monitor is not None:
                self.monitor.update(features, probabilities)
        s = self.settings
        with part("model explanations"):
            evidence = {
                int(i): f"{format_evidence(c, float(probabilities[i]), self.labels)} "
                f"(model {self.version})"
                for i, c in zip(*self._explained(features, matrix, probabilities), strict=True)
            }
        out: list[ModelPart | None] = []
        for i, p in enumerate(probabilities.tolist()):
            reason = None
            if p >= s.floor:
                reason = {
                    "code": MODEL_REASON,
                    "description": "Risk model: likelihood of a finding at inspection",
                    "contribution": round(s.weight * p, 3),
                    "evidence": evidence.get(i, f"probability {p:.3f} (model {self.version})"),
                    "carrier_visible": s.carrier_visible,
                }
            out.append(ModelPart(self.version, p, reason))
        return out

    def _explained(
        self, features: pl.DataFrame, matrix: np.ndarray, probabilities: np.ndarray
    ) -> tuple[Any, list]:
        """(row indices, top contributions) for the scores worth explaining."""
        rows = np.flatnonzero(probabilities >= self.settings.explain_above)
        if rows.size == 0 or "baseline" not in self.model.info:
            return [], []
        schema = features.select(self.model.spec.columns).schema
        dtypes = tuple(schema.items())  # the same batch after batch, as a rule
        cached = self._typical
        if cached is None or cached[0] is not self.model or cached[1] != dtypes:
            cached = self._typical = (self.model, dtypes, typical_row(self.model, schema))
        return rows, top_contributions(
            self.model,
            features,
            probabilities,
            rows,
            self.settings.top_features,
            matrix=matrix,
            typical=cached[2],
        )
