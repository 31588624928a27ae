"""Synthetic history of inspected declarations, drawn from the carrier simulator's own world.

A customs administration trains on its own history; until it has one, greenlane needs a history
of the traffic it will see. So the history *is* that traffic: the simulator (``simulator.py``,
its fraud in ``fraud.py``) runs over a year of days, each pre-arrival declaration becomes a
canonical row through ``models.stream.canonical_rows``, the very mapping the stream scores
with, and its label is what an inspection of it found (the ground truth, blurred by
``label_noise``). Same sellers, buyers, carriers and fraud mechanisms as live traffic, and the
same features by construction. Revenue recovered on a finding is the tax on the undeclared
value (for a split parcel, on its own value, which the split kept under the threshold) plus a
penalty. Settings: ``models/settings/history.yaml``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from greenlane.models.config import SETTINGS_DIR
from greenlane.models.schema import CANONICAL, LABEL, REVENUE, conform
from greenlane.streams.devtools.fraud import examine
from greenlane.streams.devtools.simulator import Catalogue, default_catalogue, generate
from greenlane.streams.settings import ConfigError, read_yaml

HISTORY_FILE = SETTINGS_DIR / "history.yaml"
_DAY_MS = 86_400_000
_MESSAGES_PER_DECLARATION = 1.97  # most consignments fly: a pre-loading filing as well


@dataclass(frozen=True)
class HistorySettings:
    start_date: dt.date
    days: int
    risky_share: float
    label_noise: dict[str, float]
    penalty_share: float


def load_history_settings(path: Path | None = None) -> HistorySettings:
    """Read and check history.yaml; errors name the file and the key."""
    path = HISTORY_FILE if path is None else Path(path)
    data = read_yaml(path, "history settings")
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    known = {"start_date", "days", "risky_share", "label_noise", "penalty_share"}
    if set(data) != known:
        raise ConfigError(f"{where}: expected exactly the keys {sorted(known)}")

    def share(value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ConfigError(f"{where}: {key}: expected a share in [0, 1], got {value!r}")
        return float(value)

    try:
        start = dt.date.fromisoformat(str(data["start_date"]))
    except ValueError as exc:
        raise ConfigError(f"{where}: start_date: expected YYYY-MM-DD") from exc
    days = data["days"]
    if isinstance(days, bool) or not isinstance(days, int) or days < 3:
        raise ConfigError(f"{where}: days: expected a whole number of days >= 3")
    noise = data["label_noise"]
    if not isinstance(noise, dict) or set(noise) != {"missed_fraud", "false_finding"}:
        raise ConfigError(f"{where}: label_noise: expected {{missed_fraud: .., false_finding: ..}}")
    return HistorySettings(
        start_date=start,
        days=days,
        risky_share=share(data["risky_share"], "risky_share"),
        label_noise={k: share(v, f"label_noise.{k}") for k, v in noise.items()},
        penalty_share=share(data["penalty_share"], "penalty_share"),
    )


def generate_history(
    rows: int,
    seed: int = 7,
    settings: HistorySettings | None = None,
    catalogue: Catalogue | None = None,
    truth: bool = False,
) -> pl.DataFrame:
    """``rows`` labelled declarations in canonical columns, sorted by date; same seed, same rows.

    ``truth=True`` adds the ground truth (``mechanism``, ``hidden``) for tests and measurement.
    """
    from greenlane.models.stream import canonical_rows
    from greenlane.streams.stages.quality import load_quality_rules

    if rows < 1:
        raise ValueError("rows must be >= 1")
    s = settings or load_history_settings()
    start = dt.datetime.combine(s.start_date, dt.time(), dt.UTC)
    gap = s.days * _DAY_MS / (rows * _MESSAGES_PER_DECLARATION)
    end_ms = int(start.timestamp() * 1000) + s.days * _DAY_MS
    records, truths = [], []
    traffic = generate(
        int(rows * 3) + 100,
        seed=seed,
        risky_share=s.risky_share,
        invalid_share=0.0,
        start_ms=int(start.timestamp() * 1000),
        catalogue=catalogue or default_catalogue(),
        mean_gap_ms=gap,
    )
    for filing in traffic:
        if filing.role != "pre_arrival" or filing.truth is None:
            continue
        if filing.value["filing_time"] >= end_ms and len(records) >= rows:
            break
        records.append(filing.value)
        truths.append(filing.truth)
        if len(records) == rows:
            break
    frame = canonical_rows(records, load_quality_rules().reference_rates)
    return _labelled(frame, truths, s, np.random.default_rng(seed), truth)


def _labelled(frame: pl.DataFrame, truths: list, s: HistorySettings, rng, with_truth: bool):
    """What inspections found (the truth, with misses and false findings), and what it
    recovered: tax on the undeclared value plus a penalty."""
    found, recovered = examine(
        truths,
        frame["tax_rate"].fill_null(0.0).to_numpy(),
        rng.random(frame.height),
        s.label_noise["missed_fraud"],
        s.label_noise["false_finding"],
        s.penalty_share,
    )
    columns = [pl.Series(LABEL, found.astype(np.int8)), pl.Series(REVENUE, recovered)]
    truth_columns = {"mechanism": pl.String(), "hidden": pl.Boolean()} if with_truth else {}
    if with_truth:
        columns += [
            pl.Series("mechanism", [t.mechanism for t in truths], dtype=pl.String),
            pl.Series("hidden", [t.hidden for t in truths], dtype=pl.Boolean),
        ]
    return conform(frame.with_columns(columns).sort("date", maintain_order=True), truth_columns)


def write_history(frame: pl.DataFrame, path: Path) -> Path:
    """Write as Parquet (``.parquet``) or CSV (anything else)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
    return path


__all__ = ["CANONICAL", "generate_history", "load_history_settings", "write_history"]
