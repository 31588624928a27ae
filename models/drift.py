"""Drift: does today's traffic still look like the window the model was trained on?

A population stability index (PSI) compares the share of declarations in each bin of a feature
(or of the model's score) now against the training window:
``PSI = sum((actual - expected) * ln(actual / expected))``, an empty bin counting as
``epsilon`` so the index stays finite. Usual reading (thresholds in
``models/settings/drift.yaml``): below 0.1 stable, 0.1 to 0.25 a moderate shift worth watching,
above 0.25 a significant shift: retrain or review the model.

``DriftReference`` holds the bins and training shares; it is JSON-able so it travels in the
model's metadata. ``DriftMonitor`` counts the stream's batches into the same bins in O(batch),
with optional exponential forgetting so the index follows the recent traffic, not all of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from greenlane.models.config import SETTINGS_DIR
from greenlane.streams.settings import ConfigError, build_section, read_yaml

DRIFT_FILE = SETTINGS_DIR / "drift.yaml"
NUMERIC, CATEGORICAL = "numeric", "categorical"


@dataclass(frozen=True)
class DriftSettings:
    columns: list
    bins: int
    half_life_rows: float
    epsilon: float
    thresholds: dict

    def level(self, psi: float) -> str:
        """``stable``, ``watch`` or ``act`` for a PSI value."""
        if psi > self.thresholds["act"]:
            return "act"
        return "watch" if psi > self.thresholds["watch"] else "stable"


def load_drift_settings(path: Path | None = None) -> DriftSettings:
    """Read and check drift.yaml (default: the shipped one)."""
    path = DRIFT_FILE if path is None else Path(path)
    data = read_yaml(path, "drift settings")
    where = str(path)
    settings = build_section(DriftSettings, data, where)

    def check(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{where}: {key}: {what}")

    columns = settings.columns
    check(
        isinstance(columns, list) and bool(columns) and all(isinstance(c, str) for c in columns),
        "columns",
        "expected a non-empty list of feature columns",
    )
    check(settings.bins >= 2, "bins", "must be >= 2")
    check(settings.half_life_rows >= 0, "half_life_rows", "must be >= 0 (0: never forget)")
    check(0 < settings.epsilon < 0.01, "epsilon", "must be within (0, 0.01)")
    thresholds = settings.thresholds
    check(
        isinstance(thresholds, dict)
        and set(thresholds) == {"watch", "act"}
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in thresholds.values())
        and 0 < thresholds["watch"] < thresholds["act"],
        "thresholds",
        "expected watch and act, 0 < watch < act",
    )
    return settings


@dataclass(frozen=True)
class Bins:
    """How one variable is binned: quantile cut points, or frequent categories.

    Numeric bins: ``len(cuts) + 1`` intervals, then a missing-value bin. Categorical bins: one per
    category, then "other" (rare and unseen categories), then missing.
    """

    kind: str
    cuts: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        inner = len(self.cuts) + 1 if self.kind == NUMERIC else len(self.categories) + 1
        return inner + 1

    @classmethod
    def fit(cls, values: pl.Series, bins: int) -> Bins:
        if values.dtype.is_numeric():
            known = values.cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
            if known.size == 0:
                return cls(NUMERIC)
            cuts = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1]))
            return cls(NUMERIC, cuts=tuple(float(c) for c in cuts))
        counts = (
            values.cast(pl.String)
            .drop_nulls()
            .value_counts(name="n")
            .sort(["n", values.name], descending=[True, False])
        )
        return cls(CATEGORICAL, categories=tuple(counts[values.name].head(bins - 1).to_list()))

    def expr(self, column: str) -> pl.Expr:
        """Bin of a categorical column as a polars expression (all columns in one select)."""
        missing, other = self.size - 1, len(self.categories)
        code = (
            pl.col(column).cast(pl.String).cast(pl.Enum(self.categories), strict=False)
            if self.categories
            else pl.lit(None, pl.UInt32)
        )
        return (
            pl.when(pl.col(column).is_null())
            .then(missing)
            .otherwise(code.to_physical().cast(pl.Int64).fill_null(other))  # unseen: other
            .alias(column)
        )

    def index(self, values: pl.Series) -> np.ndarray:
        """The bin of every value."""
        if self.kind == CATEGORICAL:
            return values.to_frame().select(self.expr(values.name)).to_series().to_numpy()
        x = values.cast(pl.Float64).to_numpy()
        idx = np.searchsorted(np.asarray(self.cuts, dtype=float), x, side="right")
        idx[np.isnan(x)] = self.size - 1
        return idx

    def count(self, values: pl.Series | np.ndarray) -> np.ndarray:
        """Observations per bin, of values or of their bin indices."""
        idx = values if isinstance(values, np.ndarray) else self.index(values)
        return np.bincount(idx, minlength=self.size).astype(float)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == NUMERIC:
            return {"kind": NUMERIC, "cuts": list(self.cuts)}
        return {"kind": CATEGORICAL, "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bins:
        return cls(data["kind"], tuple(data.get("cuts", ())), tuple(data.get("categories", ())))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.full_like(counts, np.nan)


def psi(actual: np.ndarray, expected: np.ndarray, epsilon: float = 1e-4) -> float:
    """Population stability index of two share vectors over the same bins."""
    if np.isnan(actual).any():
        return math.nan
    a, e = np.clip(actual, epsilon, None), np.clip(expected, epsilon, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftReference:
    """Bins and training-window shares of the key features and of the score."""

    bins: dict[str, Bins]
    expected: dict[str, np.ndarray]
    score_bins: Bins
    score_expected: np.ndarray
    rows: int
    epsilon: float = 1e-4

    @classmethod
    def from_frame(
        cls,
        features: pl.DataFrame,
        scores: np.ndarray,
        columns: list[str] | tuple[str, ...],
        bins: int = 10,
        epsilon: float = 1e-4,
    ) -> DriftReference:
        """From the training window's feature frame and the model's scores of it."""
        absent = [c for c in columns if c not in features.columns]
        if absent:
            raise ValueError(f"drift columns not among the model's features: {absent}")
        fitted = {c: Bins.fit(features.get_column(c), bins) for c in columns}
        score = pl.Series("score", np.asarray(scores, dtype=float))
        score_bins = Bins.fit(score, bins)
        return cls(
            bins=fitted,
            expected={c: _shares(b.count(features.get_column(c))) for c, b in fitted.items()},
            score_bins=score_bins,
            score_expected=_shares(score_bins.count(score)),
            rows=features.height,
            epsilon=epsilon,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the model's metadata."""
        return {
            "rows": self.rows,
            "epsilon": self.epsilon,
            "features": {
                c: {**b.to_dict(), "expected": self.expected[c].tolist()}
                for c, b in self.bins.items()
            },
            "score": {**self.score_bins.to_dict(), "expected": self.score_expected.tolist()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReference:
        features = data["features"]
        return cls(
            bins={c: Bins.from_dict(v) for c, v in features.items()},
            expected={c: np.asarray(v["expected"], dtype=float) for c, v in features.items()},
            score_bins=Bins.from_dict(data["score"]),
            score_expected=np.asarray(data["score"]["expected"], dtype=float),
            rows=int(data["rows"]),
            epsilon=float(data["epsilon"]),
        )


class DriftMonitor:
    """Counts the stream's batches into the reference bins; PSI and score histogram on demand.

    ``half_life_rows`` > 0: the weight of past declarations halves every that many declarations,
    so the index reflects recent traffic (0 keeps everything since the model was loaded).
    ``score_buckets``: upper bounds of the exported score histogram (default: the reference's
    quantile cuts); the last bucket is open-ended.
    """

    def __init__(
        self,
        reference: DriftReference,
        half_life_rows: float = 0.0,
        score_buckets: list[float] | tuple[float, ...] | None = None,
    ):
        self.reference = reference
        self.half_life_rows = half_life_rows
        self.counts = {c: np.zeros(b.size) for c, b in reference.bins.items()}
        self.score_counts = np.zeros(reference.score_bins.size)
        cuts = reference.score_bins.cuts if score_buckets is None else score_buckets
        self._hist_bins = Bins(NUMERIC, cuts=tuple(float(b) for b in sorted(cuts)))
        self.hist_counts = np.zeros(self._hist_bins.size - 1)  # scores are never missing
        self.rows = 0.0  # weighted number of declarations counted

    def update(self, features: pl.DataFrame, scores: np.ndarray) -> None:
        """Add one batch (its model feature frame and scores)."""
        n = features.height
        if n == 0:
            return
        keep = 0.5 ** (n / self.half_life_rows) if self.half_life_rows > 0 else 1.0
        bins = self.reference.bins
        categorical = [bins[c].expr(c) for c in bins if bins[c].kind == CATEGORICAL]
        coded = features.select(categorical) if categorical else pl.DataFrame()
        for column, b in bins.items():
            values = coded.get_column(column).to_numpy() if column in coded.columns else None
            self.counts[column] *= keep
            self.counts[column] += b.count(
                features.get_column(column) if values is None else values
            )
        score = pl.Series("score", np.asarray(scores, dtype=float))
        self.score_counts *= keep
        self.score_counts += self.reference.score_bins.count(score)
        self.hist_counts *= keep
        self.hist_counts += self._hist_bins.count(score)[:-1]
        self.rows = self.rows * keep + n

    def psi(self) -> dict[str, float]:
        """PSI of every key feature (NaN before any batch)."""
        eps = self.reference.epsilon
        return {
            c: psi(_shares(counts), self.reference.expected[c], eps)
            for c, counts in self.counts.items()
        }

    def score_psi(self) -> float:
        ref = self.reference
        return psi(_shares(self.score_counts), ref.score_expected, ref.epsilon)

    def score_histogram(self) -> tuple[list[float], np.ndarray]:
        """Upper bounds of the score buckets (last: +inf) and the (weighted) count in each."""
        return [*self._hist_bins.cuts, math.inf], self.hist_counts.copy()
