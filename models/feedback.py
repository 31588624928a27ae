"""The feedback loop: inspection outcomes joined to their decisions become labelled history.

Only inspected consignments get a label, and most were inspected *because* rules or the model
picked them, so the history is a biased sample of traffic. The decision's ``random_pick`` flag
(exploration picks of #3, chosen at random whatever their score), its ``selection_propensity``
(how likely such a consignment was to be examined: 1 when rules or model held or inspected it,
the random selection rate when they released it) and ``model_version`` are kept on every
labelled row so ``retrain`` can weigh the rows back to all traffic.

Pure and batch-level: ``join_outcomes`` takes a batch of decoded outcomes and the decision
summaries the worker kept (``summary_from_decision``); ``LabelledHistory`` stores the result as
Parquet part files. Declarations are mapped onto the canonical columns (``schema.py``) by
the stream's ``stream.canonical_rows``, the one mapping for scoring and labelling alike.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from greenlane.models.schema import CANONICAL, DATE, LABEL, REQUIRED, REVENUE, conform
from greenlane.streams.domain.money import convert

HISTORY_ENV = "GREENLANE_HISTORY"
DEFAULT_HISTORY = "~/.cache/greenlane/history"
PRE_ARRIVAL = "PRE_ARRIVAL"

# Inspection result -> label. A seizure or a duty/tax adjustment is a finding (fraud = 1), no
# findings is 0. REFERRED is left unlabelled (None): the partner agency's finding is not known
# to customs, and guessing either way would teach the model something nobody observed. Such
# rows are kept in the history (not dropped) and ``greenlane.models.train`` skips unlabelled rows.
LABELS: dict[str, int | None] = {
    "NO_FINDINGS": 0,
    "SEIZED": 1,
    "DUTY_ADJUSTED": 1,
    "REFERRED": None,
}

# Why an outcome could not become a labelled row.
UNKNOWN_DECISION = "UNKNOWN_DECISION"  # no decision summary under its decision_id
WAYBILL_MISMATCH = "WAYBILL_MISMATCH"  # the outcome names another consignment than the decision
NOT_PRE_ARRIVAL = "NOT_PRE_ARRIVAL"  # a pre-loading decision: no declaration to learn from
INCOMPLETE_DECLARATION = "INCOMPLETE_DECLARATION"  # a required canonical value is missing
UNKNOWN_RESULT = "UNKNOWN_RESULT"  # a result this version does not know

# Columns a labelled row carries besides the canonical ones: provenance of the decision and of
# the outcome. ``random_pick``, ``selection_propensity`` and ``model_version`` let training and
# evaluation correct for selection bias.
FEEDBACK_COLUMNS: dict[str, pl.DataType] = {
    "decision_id": pl.String(),
    "house_waybill": pl.String(),
    "stage": pl.String(),
    "route": pl.String(),
    "risk_score": pl.Float64(),
    "random_pick": pl.Boolean(),
    "selection_propensity": pl.Float64(),
    "model_probability": pl.Float64(),
    "model_version": pl.String(),
    "result": pl.String(),
    "officer": pl.String(),
    "inspected_at": pl.Datetime("ms", "UTC"),
}
# What ``summary_from_decision`` copies from a RiskDecision (besides the declaration itself).
_DECISION_FIELDS = (
    "decision_id",
    "house_waybill",
    "stage",
    "route",
    "risk_score",
    "random_pick",
    "selection_propensity",
    "model_probability",
    "model_version",
    "destination_country",
    "filing_time",
)
_PROVENANCE = tuple(name for name in _DECISION_FIELDS if name in FEEDBACK_COLUMNS)
_FEATURE_ROLES = tuple(r for r in CANONICAL if r not in (DATE, LABEL, REVENUE))


# ------------------------------------------------------------------------ decision summaries


def _moment(value: int | dt.datetime) -> dt.datetime:
    """An Avro timestamp-millis, as the worker decodes it (epoch ms) or as fastavro does."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)


def summaries_from_decisions(
    decisions: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    reference_rates: Mapping[str, float],
    rows: Sequence[Mapping[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    """What the worker keeps per decision (keyed by decision_id) until its outcome arrives.

    ``records[i]`` is the decoded filing ``decisions[i]`` assessed. Pre-arrival declarations are
    mapped with the stream's own ``stream.canonical_row``, so a labelled row holds exactly what
    the model scored; ``rows``: those rows when the caller built them already (the worker
    builds them once per batch), None where not. JSON-safe (the date an ISO string,
    filing_time epoch ms) for any table serialiser; a pre-loading decision keeps only its
    decision fields (the join reports it).
    """
    from greenlane.models.stream import canonical_row

    built = rows or [None] * len(decisions)
    declared = {
        i: built[i] or canonical_row(records[i], reference_rates)
        for i, d in enumerate(decisions)
        if d.get("stage") == PRE_ARRIVAL
    }
    out = []
    for i, decision in enumerate(decisions):
        summary = {name: decision.get(name) for name in _DECISION_FIELDS}
        summary["filing_time"] = int(_moment(decision["filing_time"]).timestamp() * 1000)
        summary["random_pick"] = bool(decision.get("random_pick"))
        row = declared.get(i)
        if row is not None:
            summary |= {role: row[role] for role in _FEATURE_ROLES}
            summary[DATE] = row[DATE].isoformat()
        out.append(summary)
    return out


def summary_from_decision(
    decision: Mapping[str, Any],
    record: Mapping[str, Any],
    reference_rates: Mapping[str, float],
) -> dict[str, Any]:
    """``summaries_from_decisions`` for one decision (prefer the batch call in a worker)."""
    return summaries_from_decisions([decision], [record], reference_rates)[0]


# ------------------------------------------------------------------------ the join


def _unmatched(outcome: Mapping[str, Any], reason: str, detail: str) -> dict[str, Any]:
    return {
        "outcome": outcome,
        "reason": reason,
        "detail": detail,
    }  # the object itself: callers find its message by identity


def _revenue_in_reference(amount: float, currency: str, rates: Mapping[str, float]) -> float | None:
    """Revenue found, in the reference currency (none found is 0 whatever the currency)."""
    return 0.0 if not amount else convert(amount, currency, rates)


def join_outcomes(
    outcomes: Sequence[Mapping[str, Any]],
    decisions: Mapping[str, Mapping[str, Any]],
    reference_rates: Mapping[str, float] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(labelled rows, unmatched outcomes) for a batch of decoded InspectionOutcome records.

    ``decisions`` maps decision_id to ``summary_from_decision`` output. A labelled row has the
    canonical columns (label and revenue recovered in the reference currency, None when the
    outcome's currency has no reference rate) plus ``FEEDBACK_COLUMNS``. Every outcome that
    cannot be joined comes back as ``{"outcome", "reason", "detail"}``: nothing is dropped
    silently. ``reference_rates`` default to quality.toml's.
    """
    if reference_rates is None:
        from greenlane.streams.stages.quality import load_quality_rules

        reference_rates = load_quality_rules().reference_rates
    rows: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    for outcome in outcomes:
        decision_id = outcome.get("decision_id")
        summary = decisions.get(decision_id) if decision_id else None
        result = outcome.get("result")
        if result not in LABELS:
            unmatched.append(_unmatched(outcome, UNKNOWN_RESULT, f"result {result!r}"))
            continue
        if summary is None:
            unmatched.append(
                _unmatched(outcome, UNKNOWN_DECISION, f"no decision {decision_id!r} kept")
            )
            continue
        if summary.get("house_waybill") != outcome.get("house_waybill"):
            detail = (
                f"outcome for {outcome.get('house_waybill')!r}, "
                f"decision {decision_id} for {summary.get('house_waybill')!r}"
            )
            unmatched.append(_unmatched(outcome, WAYBILL_MISMATCH, detail))
            continue
        if summary.get("stage") != PRE_ARRIVAL:
            detail = f"decision {decision_id} assessed a {summary.get('stage')} filing"
            unmatched.append(_unmatched(outcome, NOT_PRE_ARRIVAL, detail))
            continue
        missing = [r for r in REQUIRED if r != LABEL and summary.get(r) is None]
        if missing:
            detail = f"decision {decision_id} lacks {missing}"
            unmatched.append(_unmatched(outcome, INCOMPLETE_DECLARATION, detail))
            continue
        day = summary[DATE]
        rows.append(
            {
                **{role: summary.get(role) for role in _FEATURE_ROLES},
                DATE: dt.date.fromisoformat(day) if isinstance(day, str) else day,
                LABEL: LABELS[result],
                REVENUE: _revenue_in_reference(
                    float(outcome.get("recovered_revenue") or 0.0),
                    outcome.get("currency", ""),
                    reference_rates,
                ),
                **{name: summary.get(name) for name in _PROVENANCE},
                "random_pick": bool(summary.get("random_pick")),
                "result": result,
                "officer": outcome.get("officer"),
                "inspected_at": _moment(outcome["inspected_at"]),
            }
        )
    return rows, unmatched


def labelled_frame(rows: Sequence[Mapping[str, Any]] | pl.DataFrame) -> pl.DataFrame:
    """Labelled rows as a frame of fixed columns and dtypes (canonical + ``FEEDBACK_COLUMNS``)."""
    frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows, infer_schema_length=None)
    return conform(frame, FEEDBACK_COLUMNS)


# ------------------------------------------------------------------------ storage


def default_history_folder(env: Mapping[str, str] | None = None) -> Path:
    """GREENLANE_HISTORY when set, else ~/.cache/greenlane/history."""
    env = os.environ if env is None else env
    return Path(os.path.expanduser(env.get(HISTORY_ENV) or DEFAULT_HISTORY))


class LabelledHistory:
    """Labelled declarations as Parquet part files, one per flush, named by time of writing.

    Append-only and written atomically (temporary file, then rename), so a reader never sees
    half a part. Kafka delivers at least once and an officer may correct an outcome, so ``read``
    keeps one row per decision: the one written last.
    """

    def __init__(self, folder: Path | str | None = None):
        self.folder = Path(os.path.expanduser(str(folder))) if folder else default_history_folder()

    def parts(self) -> list[Path]:
        """Part files, oldest first."""
        return sorted(self.folder.glob("part-*.parquet")) if self.folder.is_dir() else []

    def append(self, rows: Sequence[Mapping[str, Any]] | pl.DataFrame) -> Path | None:
        """Write one part file of ``rows``; None when there is nothing to write."""
        frame = labelled_frame(rows) if len(rows) else None
        if frame is None:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.folder / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".part-", suffix=".tmp")
        os.close(fd)
        frame.write_parquet(tmp)
        os.replace(tmp, path)
        return path

    def read(self) -> pl.DataFrame:
        """Every labelled row, one per decision (the latest written), sorted by date."""
        parts = self.parts()
        frame = pl.concat([labelled_frame(pl.read_parquet(p)) for p in parts]) if parts else None
        if frame is None:
            return labelled_frame(pl.DataFrame()).clear()
        latest = pl.col("decision_id").is_null() | pl.col("decision_id").is_last_distinct()
        return frame.filter(latest).sort(DATE, maintain_order=True)
