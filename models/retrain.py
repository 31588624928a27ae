"""Retraining on the feedback history: a candidate replaces the current model only if it is better.

The latest ``latest_days`` of labelled history are held out; the candidate learns from what came
before (``train.py``, its own time-ordered split inside that) and both models are judged on
the held-out period the way customs judges them: precision at the inspection budget (5%), ties
broken by the share of recovered revenue. The candidate is always stored in the registry, for the
record, and promoted only when it wins; a tie keeps the current model.

Selection bias, kept simple. Labelled rows are inspected consignments, mostly chosen by the
rules or the model in force, so figures on them describe the inspected population, not all
traffic. Both models are ranked on the same labelled rows, so the comparison between them is
paired and fair, and that is what decides. The random picks (``random_pick``: selected
whatever their score) are a uniform sample of traffic: their fraud rate is an unbiased estimate
of the base rate, and precision and recall at the budget among them are unbiased estimates of
what the model would achieve on all traffic. They are reported next to the deciding figures,
not used to decide, because they are few.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from greenlane.models.config import TrainingSettings, load_model_settings
from greenlane.models.evaluate import at_budget, budget_metrics
from greenlane.models.features import FeatureSpec, default_spec, history_table
from greenlane.models.registry import Registry
from greenlane.models.schema import DATE, LABEL, recovered_revenue
from greenlane.models.train import train

BUDGET = 5.0  # percent of declarations inspected (the yardstick)
LATEST_DAYS = 30  # held-out period the candidate and the current model are judged on


@dataclass
class RetrainResult:
    """Both models' figures on the latest period, and what was decided."""

    promoted: bool
    reason: str
    candidate_version: str
    current_version: str | None  # the model in force before retraining
    latest_period: tuple[dt.date, dt.date]
    budget: float
    candidate: dict[str, Any]
    current: dict[str, Any] | None
    random_picks: int  # labelled random picks in the latest period
    base_rate: float | None  # their fraud rate: unbiased estimate for all traffic
    training_rows: int


def _key(figures: dict[str, Any], budget: float) -> tuple[float, float]:
    return (figures[f"precision@{budget:g}%"], figures.get(f"revenue@{budget:g}%") or 0.0)


def judge(
    model: Any, labelled: pl.DataFrame, latest: np.ndarray, random: np.ndarray, budget: float
) -> dict[str, Any]:
    """A model's figures at ``budget``% on the latest labelled rows, and on their random picks.

    Entity history comes from the labelled history itself (rows see earlier dates only), the
    same for both models, so only what they learnt differs.
    """
    score = model.score(labelled)
    y = labelled.get_column(LABEL).to_numpy().astype(int)
    revenue = recovered_revenue(labelled)
    figures = budget_metrics(
        y[latest], score[latest], None if revenue is None else revenue[latest], (budget,)
    )
    picks = latest & random
    if picks.any():
        sample = at_budget(y[picks], score[picks], None, budget)
        figures[f"random_precision@{budget:g}%"] = round(sample["precision"], 4)
        figures[f"random_recall@{budget:g}%"] = round(float(sample["recall"]), 4)
    return figures


def retrain(
    history: pl.DataFrame,
    registry: Registry,
    budget: float = BUDGET,
    latest_days: int = LATEST_DAYS,
    spec: FeatureSpec | None = None,
    settings: TrainingSettings | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    source: str = "feedback history",
) -> RetrainResult:
    """Train a candidate on ``history`` (``LabelledHistory.read()``), promote it if it wins.

    Raises ValueError when the history cannot judge a candidate (no findings in the latest
    period, or too little before it for ``greenlane.models.train``).
    """
    if latest_days < 1:
        raise ValueError("latest_days must be >= 1")
    spec = spec or default_spec(load_model_settings().features)
    labelled = history.filter(pl.col(LABEL).is_not_null()).sort(DATE, maintain_order=True)
    if labelled.is_empty():
        raise ValueError("the labelled history is empty: no inspection outcomes yet")
    last = labelled.get_column(DATE).max()
    cutoff = last - dt.timedelta(days=latest_days - 1)
    day = labelled.get_column(DATE)
    latest = (day >= cutoff).to_numpy()
    if labelled.get_column(LABEL).to_numpy()[latest].sum() == 0:
        raise ValueError(f"no findings since {cutoff}: nothing to judge a candidate on")
    random = (
        labelled.get_column("random_pick").fill_null(False).to_numpy().astype(bool)
        if "random_pick" in labelled.columns
        else np.zeros(labelled.height, dtype=bool)
    )

    before = labelled.filter(pl.Series(~latest))
    progress(f"candidate: training on {before.height:,} labelled declarations before {cutoff}")
    candidate = train(before, spec, settings, progress)
    progress(f"judging on {int(latest.sum()):,} labelled declarations {cutoff} .. {last}")
    candidate_figures = judge(candidate, labelled, latest, random, budget)
    current_version = registry.current()
    current_figures = None
    if current_version is None:
        promoted, reason = True, "no current model"
    else:
        current_figures = judge(registry.load(current_version), labelled, latest, random, budget)
        promoted = _key(candidate_figures, budget) > _key(current_figures, budget)
        reason = (
            f"candidate beats {current_version} at {budget:g}%"
            if promoted
            else f"{current_version} is as good or better at {budget:g}%"
        )
    # The stream starts from this snapshot: everything labelled, the held-out period included.
    candidate.history = history_table(labelled, spec)
    picks = latest & random
    y = labelled.get_column(LABEL).to_numpy()
    base_rate = round(float(y[picks].mean()), 4) if picks.any() else None
    summary = {
        "latest_period": [str(cutoff), str(last)],
        "budget": budget,
        "candidate": candidate_figures,
        "current": current_figures,
        "against": current_version,
        "promoted": promoted,
        "reason": reason,
        "random_picks": int(picks.sum()),
        "base_rate": base_rate,
    }
    version = registry.save(candidate, {**candidate.info, "data": source, "retrain": summary})
    if promoted:
        registry.promote(version)
    return RetrainResult(
        promoted=promoted,
        reason=reason,
        candidate_version=version,
        current_version=current_version,
        latest_period=(cutoff, last),
        budget=budget,
        candidate=candidate_figures,
        current=current_figures,
        random_picks=int(picks.sum()),
        base_rate=base_rate,
        training_rows=before.height,
    )


def format_result(result: RetrainResult) -> str:
    """Both models' figures side by side, and the decision, for the terminal."""
    b = f"{result.budget:g}%"
    names = (f"precision@{b}", f"revenue@{b}", f"recall@{b}", "roc_auc", f"random_precision@{b}")
    start, end = result.latest_period
    lines = [
        f"latest period {start} .. {end}: {result.candidate.get('declarations')} labelled "
        f"declarations, {result.candidate.get('frauds')} with findings",
        f"{'':26}{'candidate':>12}{'current':>12}",
    ]
    for name in names:
        row = [result.candidate.get(name), (result.current or {}).get(name)]
        cells = "".join(f"{v:>12.3f}" if v is not None else f"{'—':>12}" for v in row)
        lines.append(f"{name:26}{cells}")
    base = "—" if result.base_rate is None else f"{result.base_rate:.3f}"
    lines.append(f"random picks in the period: {result.random_picks} (fraud rate {base})")
    verdict = "promoted to current" if result.promoted else "not promoted"
    lines.append(f"candidate {result.candidate_version}: {verdict} ({result.reason})")
    return "\n".join(lines)
