"""Retraining on the feedback history: a candidate replaces the current model only if it is better
on an unbiased estimate for all traffic.

The latest period of labelled history is held out (models.yaml ``retrain``: the latest
``latest_days`` days, or the latest ``holdout_share`` of rows when the history is younger than
twice that); the candidate
learns from what came before (``train.py``, its own time-ordered split inside that) and both
models are judged on the held-out period the way customs judges them: precision at the
inspection budget (5%), ties broken by the share of recovered revenue. The candidate is always
stored in the registry, for the record, and promoted only when it wins; a tie keeps the current
model, and so does a held-out period with too few random picks or findings to tell
(``min_random_picks``, ``min_findings``). Both are judged only on held-out rows dated after
the current model's training window: one promoted by an earlier retrain learnt from that
retrain's held-out period too.

Selection bias. Labelled rows are examined consignments, almost all chosen *because* rules or
the model flagged them, often on evidence the model does not see (watchlists, brands, patterns):
learnt as they are, such rows teach that whatever they look like is fraud. Every decision
carries its ``selection_propensity`` (lanes: 1 when rules and model held or inspected it, the
random selection rate when they released it), so each labelled row is weighed by its inverse: a
random pick of released traffic stands for the 1/rate consignments like it that were released
unexamined (inverse-propensity weighting). Judging uses these weights, which makes the deciding
figures unbiased estimates for all traffic; training (trees, calibration) uses them capped at
``max_training_weight``, since a few hundred random picks at weight 200 would otherwise outweigh
everything else the trees could learn from. The random picks alone (a uniform sample) are
reported beside them. ``correct=False`` trains without the weights (for comparison); rows
without a propensity (decisions made before it existed) count once. A promoted candidate is
refit on all labelled history, the held-out period included, before it is saved.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from greenlane.models.config import RetrainSettings, TrainingSettings, load_model_settings
from greenlane.models.evaluate import at_budget, budget_metrics
from greenlane.models.features import FeatureSpec, default_spec, history_table
from greenlane.models.registry import Registry
from greenlane.models.schema import DATE, LABEL, recovered_revenue
from greenlane.models.train import train

BUDGET = 5.0  # percent of declarations inspected (the yardstick)


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
    corrected: bool = True  # the candidate learnt with inverse-propensity weights
    wins: bool = False  # the verdict, promoted or not (``promote=False``: a study)
    without_propensity: int = 0  # labelled rows that count once (no propensity recorded)


def selection_weights(labelled: pl.DataFrame) -> tuple[np.ndarray, int]:
    """Inverse selection propensity of each labelled row, and how many rows had none (they
    count once)."""
    if "selection_propensity" not in labelled.columns:
        return np.ones(labelled.height), labelled.height
    p = labelled.get_column("selection_propensity").cast(pl.Float64).to_numpy()
    known = np.isfinite(p) & (p > 0)
    return np.where(known, 1.0 / np.where(known, p, 1.0), 1.0), int((~known).sum())


def held_out(labelled: pl.DataFrame, latest_days: int, holdout_share: float) -> np.ndarray:
    """The rows judged on: the latest ``latest_days`` days, or the latest ``holdout_share``
    of rows (time order) when the history spans fewer than twice as many days."""
    day = labelled.get_column(DATE)
    first, last = day.min(), day.max()
    if (last - first).days + 1 >= 2 * latest_days:
        return (day >= last - dt.timedelta(days=latest_days - 1)).to_numpy()
    n = labelled.height
    return np.arange(n) >= n - max(1, math.ceil(n * holdout_share))


def unseen_by(model: Any, day: pl.Series) -> np.ndarray:
    """Rows dated after the end of ``model``'s training window: the only ones it can be judged
    on (a model promoted by an earlier retrain was refit on everything labelled then, that
    retrain's held-out period included). All rows when there is no model or no window."""
    window = (model.info.get("training_window") if model is not None else None) or [None, None]
    if window[1] is None:
        return np.ones(day.len(), dtype=bool)
    return (day > dt.date.fromisoformat(window[1])).to_numpy()


def _key(figures: dict[str, Any], budget: float) -> tuple[float, float]:
    return (figures[f"precision@{budget:g}%"], figures.get(f"revenue@{budget:g}%") or 0.0)


def judge(
    model: Any,
    labelled: pl.DataFrame,
    latest: np.ndarray,
    random: np.ndarray,
    budget: float,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """A model's figures at ``budget``% on the latest labelled rows, weighted by ``weights``
    (estimates for all traffic), and on their random picks alone.

    Each model scores with its own entity history snapshot (what it learnt from), as the
    stream would if it were in force: the held-out labels never reach the features.
    """
    held = labelled.filter(pl.Series(latest))
    score = model.score(held, model.history)
    y = held.get_column(LABEL).to_numpy().astype(int)
    revenue = recovered_revenue(held)
    w = None if weights is None else weights[latest]
    figures = budget_metrics(y, score, revenue, (budget,), w)
    if w is not None:  # the same rows, each counted once: what was examined
        examined = at_budget(y, score, None, budget)
        figures[f"examined_precision@{budget:g}%"] = round(examined["precision"], 4)
    picks = random[latest]
    if picks.any():
        sample = at_budget(y[picks], score[picks], None, budget)
        figures[f"random_precision@{budget:g}%"] = round(sample["precision"], 4)
        figures[f"random_recall@{budget:g}%"] = round(float(sample["recall"]), 4)
    return figures


def retrain(
    history: pl.DataFrame,
    registry: Registry,
    budget: float = BUDGET,
    latest_days: int | None = None,
    spec: FeatureSpec | None = None,
    settings: TrainingSettings | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    source: str = "feedback history",
    correct: bool = True,
    promote: bool = True,
    rules: RetrainSettings | None = None,
) -> RetrainResult:
    """Train a candidate on ``history`` (``LabelledHistory.read()``), promote it if it wins.

    ``latest_days`` overrides models.yaml's (``rules``, default the shipped ``retrain``).
    ``correct``: train with inverse-propensity weights (the default; False only to compare).
    Models are always judged on the weighted figures. ``promote=False`` stores the candidate
    without making it current, whatever the verdict (a study). Raises ValueError when the
    history cannot judge a candidate (no findings in the latest period, or too little before
    it for ``greenlane.models.train``).
    """
    model_settings = load_model_settings()
    rules = rules or model_settings.retrain
    latest_days = rules.latest_days if latest_days is None else latest_days
    if latest_days < 1:
        raise ValueError("latest_days must be >= 1")
    spec = spec or default_spec(model_settings.features)
    labelled = history.filter(pl.col(LABEL).is_not_null()).sort(DATE, maintain_order=True)
    if labelled.is_empty():
        raise ValueError("the labelled history is empty: no inspection outcomes yet")
    latest = held_out(labelled, latest_days, rules.holdout_share)
    day = labelled.get_column(DATE)
    cutoff, last = day.filter(pl.Series(latest)).min(), day.max()
    if labelled.get_column(LABEL).to_numpy()[latest].sum() == 0:
        raise ValueError(f"no findings since {cutoff}: nothing to judge a candidate on")
    random = (
        labelled.get_column("random_pick").fill_null(False).to_numpy().astype(bool)
        if "random_pick" in labelled.columns
        else np.zeros(labelled.height, dtype=bool)
    )
    weights, without = selection_weights(labelled)
    if without:
        progress(f"{without:,} labelled declarations have no selection propensity: they count once")

    before = labelled.filter(pl.Series(~latest))
    how = "weighted by inverse selection propensity" if correct else "unweighted"
    progress(f"candidate: training on {before.height:,} labelled declarations ({how})")
    capped = np.minimum(weights, rules.max_training_weight) if correct else None
    candidate = train(
        before, spec, settings, progress, weights=None if capped is None else capped[~latest]
    )
    current_version = registry.current()
    current = registry.load(current_version) if current_version is not None else None
    judged = latest & unseen_by(current, day)
    progress(f"judging on {int(judged.sum()):,} labelled declarations {cutoff} .. {last}")
    candidate_figures = (
        judge(candidate, labelled, judged, random, budget, weights)
        if judged.any()
        else {"declarations": 0, "frauds": 0}
    )
    current_figures = None
    picks = judged & random
    findings = int(labelled.get_column(LABEL).to_numpy()[judged].sum())
    if current is None:
        promoted, reason = True, "no current model"
    elif picks.sum() < rules.min_random_picks or findings < rules.min_findings:
        if judged.any():
            current_figures = judge(current, labelled, judged, random, budget, weights)
        promoted = False
        reason = (
            f"{int(picks.sum())} random picks and {findings} findings held out that "
            f"{current_version} has not learnt from, {rules.min_random_picks} and "
            f"{rules.min_findings} needed to judge on all traffic (models.yaml retrain): "
            f"{current_version} stays"
        )
    else:
        current_figures = judge(current, labelled, judged, random, budget, weights)
        promoted = _key(candidate_figures, budget) > _key(current_figures, budget)
        reason = (
            f"candidate beats {current_version} at {budget:g}% (weighted to all traffic)"
            if promoted
            else f"{current_version} is as good or better at {budget:g}% (weighted to all traffic)"
        )
    wins = promoted
    promoted = wins and promote
    if promoted:  # judged: now learn the latest period too
        progress(f"refitting the candidate on all {labelled.height:,} labelled declarations")
        judged = candidate.info
        candidate = train(labelled, spec, settings, progress, weights=capped)
        candidate.info["judged_as"] = {"rows": judged["rows"], "metrics": judged["metrics"]}
    # The stream starts from this snapshot: everything labelled, the held-out period included.
    candidate.history = history_table(labelled, spec)
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
        "corrected": correct,
        "without_propensity": without,
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
        corrected=correct,
        without_propensity=without,
        wins=wins,
    )


def format_result(result: RetrainResult) -> str:
    """Both models' figures side by side, and the decision, for the terminal."""
    b = f"{result.budget:g}%"
    names = (
        f"precision@{b}",
        f"revenue@{b}",
        f"recall@{b}",
        "roc_auc",
        f"examined_precision@{b}",
        f"random_precision@{b}",
    )
    start, end = result.latest_period
    lines = [
        f"latest period {start} .. {end}: {result.candidate.get('declarations')} labelled "
        f"declarations, {result.candidate.get('frauds')} with findings",
        "figures weighted by inverse selection propensity: estimates for all traffic "
        "(examined_: the examined rows, each once; random_: the random picks alone)",
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
