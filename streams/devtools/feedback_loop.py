"""The feedback loop, offline: simulated traffic through the batch core, officers examining what
it held or inspected, outcomes joined into labelled history: what ``make run`` does over
Kafka, in-process and over simulated months, to measure what retraining from feedback learns.

The traffic goes through ``Assessor.assess`` with the registry's model in force (rules, lists,
revenue, filing-partition patterns, lanes with their random picks and selection propensities),
in batches in arrival order, as one worker with one partition would take it; the seller-keyed
patterns (internal topics) are left out. Officers examine each consignment's latest held or
inspected decision (``officers.examine_decisions``) and ``feedback.join_outcomes`` makes the
labelled rows, the very path the worker takes. ``compare_retraining`` then trains on those rows
with and without the selection-bias correction and judges both, and the model in force, on
fresh traffic of the same world labelled by its ground truth: the unbiased yardstick a real
administration never has.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from greenlane.models.evaluate import budget_metrics
from greenlane.models.feedback import join_outcomes, labelled_frame
from greenlane.models.registry import Registry
from greenlane.models.retrain import BUDGET, retrain
from greenlane.models.stream import StreamScorer, declared_tax_rate
from greenlane.streams.core.pipeline import Assessor
from greenlane.streams.devtools.bench_core import ROLE_STAGE, in_process_codecs
from greenlane.streams.devtools.history import generate_history, load_history_settings
from greenlane.streams.devtools.officers import examine_decisions, load_officer_settings
from greenlane.streams.devtools.simulator import generate
from greenlane.streams.domain.batch import InboundMessage
from greenlane.streams.domain.state import Overlay
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.stages import quality
from greenlane.streams.stages.targeting import load_targeting_rules

BATCH = 1000
DAY_MS = 86_400_000
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Feedback:
    """What the loop produced: labelled rows (``LabelledHistory`` columns) and counts."""

    labelled: pl.DataFrame
    consignments: int  # pre-arrival declarations decided
    examined: int  # of which held or inspected (an outcome each)
    random_picks: int


def collect_feedback(
    registry: Registry,
    consignments: int,
    seed: int = 11,
    days: int = 120,
    progress: Callable[[str], None] = lambda _m: None,
) -> Feedback:
    """``consignments`` pre-arrival declarations (and their pre-loading filings) of simulated
    traffic over ``days`` days, decided with ``registry``'s current model; every held or
    inspected one examined by the officers and joined into labelled rows."""
    rules = quality.load_quality_rules()
    decoders, encoders = in_process_codecs()
    assessor = Assessor(rules, load_targeting_rules(), decoders, scorer=StreamScorer(registry))
    tables: dict[str, dict] = {"links": {}, "patterns": {}, "summaries": {}, "lanes": {}}
    latest: dict[str, dict] = {}  # house waybill -> latest pre-arrival decision
    truths, tax_rates = {}, {}
    filings = 2 * consignments + 100
    traffic = generate(
        filings,
        seed=seed,
        invalid_share=0.0,
        start_ms=int(START.timestamp() * 1000),
        mean_gap_ms=days * DAY_MS / filings,
    )
    batch: list = []
    seen = 0

    def decide(batch: list) -> None:
        for stage in (PRE_LOADING, PRE_ARRIVAL):
            part = [f for f in batch if ROLE_STAGE[f.role] == stage]
            if not part:
                continue
            messages = [
                InboundMessage(
                    f.key, encoders[stage].encode(f.value), "t", 0, i, f.value["filing_time"]
                )
                for i, f in enumerate(part)
            ]
            now_ms = max(f.value["filing_time"] for f in part)
            view = {name: Overlay(table) for name, table in tables.items()}
            out = assessor.assess(
                stage,
                messages,
                view["links"],
                now_ms,
                patterns=view["patterns"],
                summaries=view["summaries"],
                lanes=view["lanes"],
            )
            for name, overlay in view.items():
                overlay.commit_to(tables[name])
            for d in out.decisions:
                if d["stage"] == PRE_ARRIVAL:
                    known = latest.get(d["house_waybill"])
                    if known is None or d["revision"] >= known["revision"]:
                        latest[d["house_waybill"]] = d

    for filing in traffic:
        if filing.value is None:
            continue
        if filing.role == "pre_arrival" and filing.truth is not None:
            waybill = filing.value["house_waybill"]
            truths[waybill] = filing.truth
            tax_rates[waybill] = declared_tax_rate(filing.value, rules.reference_rates)
            seen += 1
        batch.append(filing)
        if len(batch) == BATCH:
            decide(batch)
            batch = []
            if seen % 20_000 < BATCH // 2:
                progress(f"{seen:,} consignments decided")
        if seen >= consignments:
            break
    decide(batch)
    decisions = list(latest.values())
    outcomes = examine_decisions(
        decisions,
        truths,
        tax_rates,
        load_officer_settings(),
        load_history_settings(),
        np.random.default_rng(seed),
        int(START.timestamp() * 1000) + days * DAY_MS,
    )
    rows, unmatched = join_outcomes(outcomes, tables["summaries"], rules.reference_rates)
    if unmatched:
        raise RuntimeError(f"{len(unmatched)} outcomes did not join: {unmatched[0]['detail']}")
    labelled = labelled_frame(rows).sort("date", maintain_order=True)
    return Feedback(
        labelled=labelled,
        consignments=len(decisions),
        examined=len(outcomes),
        random_picks=sum(bool(d.get("random_pick")) for d in decisions),
    )


def unbiased_yardstick(rows: int, seed: int) -> pl.DataFrame:
    """Fresh declarations of the same world, every one labelled by its ground truth (fraud or
    not, no inspection noise)."""
    frame = generate_history(rows, seed=seed, truth=True)
    return frame.with_columns(pl.col("mechanism").is_not_null().cast(pl.Int8).alias("fraud"))


def figures(model: Any, yardstick: pl.DataFrame, budget: float = BUDGET) -> dict[str, Any]:
    """ROC AUC and precision and recall at the budget, on the yardstick, scored as the stream
    would score it with this model: entity history from the model's own snapshot (what it
    learnt from), never from the yardstick's labels."""
    y = yardstick.get_column("fraud").to_numpy()
    return budget_metrics(y, model.score(yardstick, model.history), None, (budget,))


def compare_retraining(
    first_model_rows: int = 100_000,
    consignments: int = 300_000,
    yardstick_rows: int = 30_000,
    folder: Path | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """The first model (as ``make run`` trains it), feedback collected with it in force, two
    candidates retrained from that feedback alone (with and without the correction), and all
    three judged on the unbiased yardstick."""
    import tempfile

    from greenlane.streams.devtools.first_model import train_first_model

    root = Path(folder or tempfile.mkdtemp(prefix="greenlane-loop-"))
    registry = Registry(root / "models")
    first = train_first_model(registry, root / "training", first_model_rows, progress=progress)
    progress(f"first model {first}; collecting feedback from {consignments:,} consignments")
    feedback = collect_feedback(registry, consignments, progress=progress)
    progress(
        f"{feedback.examined:,} examined of {feedback.consignments:,} "
        f"({feedback.random_picks:,} random picks); training the candidates"
    )
    out: dict[str, Any] = {
        "consignments": feedback.consignments,
        "examined": feedback.examined,
        "random_picks": feedback.random_picks,
        "labelled_fraud_rate": round(float(feedback.labelled["fraud"].mean()), 4),
    }
    candidates = {}
    for name, correct in (("corrected", True), ("uncorrected", False)):
        result = retrain(
            feedback.labelled, registry, correct=correct, promote=False, source=f"loop {name}"
        )
        candidates[name] = registry.load(result.candidate_version)
        out[f"{name}_retrain"] = {
            "version": result.candidate_version,
            "would_promote": result.wins,
            "reason": result.reason,
            "held_out": result.candidate,
            "first_model_held_out": result.current,
        }
    yardstick = unbiased_yardstick(yardstick_rows, seed=97)
    out["yardstick"] = {
        "rows": yardstick.height,
        "fraud_rate": round(float(yardstick["fraud"].mean()), 4),
    }
    out["first_model"] = figures(registry.load(first), yardstick)
    for name, model in candidates.items():
        out[name] = figures(model, yardstick)
    return out
