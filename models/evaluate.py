"""Evaluation the customs way: what an inspection budget of n% of declarations would catch.

Officers inspect the highest-scored n% of declarations; precision@n% is the share of those with
findings, recall@n% the share of all findings they catch, revenue@n% the share of recoverable
revenue they recover (Kim et al. 2020; Jeong et al. 2022). ROC AUC is kept for comparison.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score


def _order(score: np.ndarray) -> np.ndarray:
    """Highest score first; ties keep the input order, so results are reproducible."""
    return np.argsort(-np.asarray(score, dtype=float), kind="stable")


def at_budget(
    y: np.ndarray,
    score: np.ndarray,
    revenue: np.ndarray | None,
    percent: float,
    weight: np.ndarray | None = None,
) -> dict[str, float]:
    """precision, recall and revenue share when the top ``percent``% are inspected.

    ``weight``: how many declarations of all traffic each row stands for (inverse selection
    propensity, ``models.retrain``); the budget is then ``percent``% of the weight, and every
    figure a weighted share: an estimate for all traffic from a biased sample of it.
    """
    y = np.asarray(y, dtype=float)
    order = _order(score)
    if weight is None:
        w = np.ones(len(y))
        k = max(1, math.ceil(len(y) * percent / 100.0))
    else:
        w = np.asarray(weight, dtype=float)
        cumulative = np.cumsum(w[order])
        k = max(1, int(np.searchsorted(cumulative, cumulative[-1] * percent / 100.0)) + 1)
    top = order[:k]
    wy = w * y
    found = float(wy[top].sum())
    out = {
        "precision": found / float(w[top].sum()),
        "recall": found / wy.sum() if wy.sum() else 0.0,
    }
    if revenue is not None:
        recovered = w * np.nan_to_num(np.asarray(revenue, dtype=float))
        total = recovered.sum()
        out["revenue"] = float(recovered[top].sum() / total) if total > 0 else 0.0
    return out


def budget_metrics(
    y: np.ndarray,
    score: np.ndarray,
    revenue: np.ndarray | None = None,
    budgets: Sequence[float] = (1, 2, 5, 10),
    weight: np.ndarray | None = None,
) -> dict[str, float]:
    """Flat dict: precision@5%, recall@5%, revenue@5% ... roc_auc, declarations, frauds.

    Without revenue (None) the revenue figures are None: absent, not zero. ``weight``: see
    ``at_budget`` (ROC AUC weighted alike); declarations and frauds count rows.
    """
    y = np.asarray(y)
    out: dict[str, float | None] = {"declarations": len(y), "frauds": int(np.sum(y))}
    for n in budgets:
        for name, value in at_budget(y, score, revenue, n, weight).items():
            out[f"{name}@{n:g}%"] = round(value, 4)
        if revenue is None:
            out[f"revenue@{n:g}%"] = None
    out["roc_auc"] = (
        round(float(roc_auc_score(y, score, sample_weight=weight)), 4)
        if 0 < y.sum() < len(y)
        else None
    )
    return out


def format_metrics(
    metrics: dict[str, float | None], budgets: Sequence[float] = (1, 2, 5, 10)
) -> str:
    """A small table for the terminal; an absent figure is "—"."""
    lines = [f"{'budget':>8} {'precision':>10} {'recall':>8} {'revenue':>8}"]
    for n in budgets:
        row = [metrics.get(f"{m}@{n:g}%") for m in ("precision", "recall", "revenue")]
        cells = " ".join(f"{v:>9.3f}" if v is not None else f"{'—':>9}" for v in row)
        lines.append(f"{n:>7g}% {cells}")
    auc = metrics.get("roc_auc")
    lines.append(
        f"ROC AUC {'—' if auc is None else f'{auc:.3f}'}  "
        f"({metrics.get('frauds')} frauds in {metrics.get('declarations')} declarations)"
    )
    return "\n".join(lines)


def plot_budget_curve(
    y: np.ndarray,
    score: np.ndarray,
    revenue: np.ndarray | None,
    path: Path,
    max_percent: float = 20.0,
    title: str = "Risk model at inspection budgets",
) -> Path:
    """PNG of precision, recall and revenue share against the inspection rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = np.linspace(0.5, max_percent, 40)
    curves = [at_budget(y, score, revenue, r) for r in rates]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in ("precision", "recall", "revenue"):
        if name in curves[0]:
            ax.plot(rates, [c[name] for c in curves], label=name)
    base = float(np.mean(y)) if len(y) else 0.0
    ax.axhline(base, color="grey", linestyle=":", label=f"random precision ({base:.3f})")
    ax.set_xlabel("inspection rate (% of declarations)")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(metrics: dict, directory: Path, stem: str = "evaluation") -> Path:
    """metrics as ``<stem>.json`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
