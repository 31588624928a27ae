"""Training on history: time-ordered split, gradient-boosted trees, calibration on validation,
then the same trees refit on all of it.

Declarations are split by date (train, then validation, then test), never at random: the model
is judged on a period after the one it learnt from, as it will be used. Frauds are a few
percent, so they are weighted up (``class_weight``); the weighted scores are then calibrated on
the validation period with Platt scaling (monotone, so the ranking that decides inspections is
untouched) to give probabilities the stream can combine with rule scores. The test period's
figures are those of that model. The model saved is then refit on every labelled declaration,
the latest included, with the boosting rounds early stopping chose, and keeps the calibration
map fitted before: the newest fraud patterns are the ones it most needs to know. The map was
fitted to the earlier trees' scores, so the refit model's probabilities are calibrated only
approximately.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from greenlane.models import fast_trees
from greenlane.models.config import TrainingSettings, load_model_settings
from greenlane.models.drift import DriftReference, load_drift_settings
from greenlane.models.evaluate import budget_metrics
from greenlane.models.explain import feature_baseline
from greenlane.models.features import FeatureSpec, build_features, history_table
from greenlane.models.schema import DATE, LABEL, recovered_revenue


@dataclass
class CategoryCodes:
    """Categorical columns to integer codes the trees split on (scikit-learn style fit/transform).

    Frequent categories of the training period get codes 0..k-1; rare and unseen ones share
    code k ("other"), missing ones are NaN. Keeps every column within the trees' bin limit.
    Numeric columns the history never fills (``absent_``: no quantity column, say) become a
    constant the trees ignore: scikit-learn cannot bin a column that is all missing.
    """

    min_count: int = 20
    max_categories: int = 250
    vocabulary_: dict[str, dict[str, int]] = field(default_factory=dict)
    absent_: tuple[str, ...] = ()

    def fit(
        self, frame: pl.DataFrame, columns: tuple[str, ...], numeric: tuple[str, ...] = ()
    ) -> CategoryCodes:
        self.vocabulary_ = {}
        filled = frame.select(pl.col(numeric).fill_nan(None).count()).row(0) if numeric else ()
        self.absent_ = tuple(c for c, n in zip(numeric, filled, strict=True) if n == 0)
        for column in columns:
            counts = (
                frame.select(pl.col(column).drop_nulls().value_counts(sort=True))
                .unnest(column)
                .filter(pl.col("count") >= self.min_count)
                .head(self.max_categories - 1)
            )
            self.vocabulary_[column] = {v: i for i, v in enumerate(counts[column].to_list())}
        return self

    def transform(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            *(
                pl.col(column)
                .replace_strict(vocab, default=len(vocab), return_dtype=pl.Float64)
                .fill_null(float("nan"))
                .alias(column)
                if vocab
                else pl.lit(0.0).alias(column)
                for column, vocab in self.vocabulary_.items()
            ),
            *(pl.lit(0.0).alias(column) for column in self.absent_),
        )

    @property
    def unused(self) -> tuple[str, ...]:
        """Feature columns the training history left empty (categorical or numeric)."""
        return (*(c for c, v in self.vocabulary_.items() if not v), *self.absent_)


@dataclass
class PlattScaled:
    """Trees whose raw score is mapped to a probability by a logistic fit (Platt scaling).

    The map is kept apart from the trees so that they can be refit on all history after the
    map was fitted on a validation period they had not seen.
    """

    trees: HistGradientBoostingClassifier
    scaler: LogisticRegression

    @classmethod
    def fit(
        cls,
        trees: HistGradientBoostingClassifier,
        x: np.ndarray,
        y: np.ndarray,
        weight: np.ndarray | None = None,
    ):
        raw = trees.decision_function(x).reshape(-1, 1)
        return cls(trees, LogisticRegression(C=1e6).fit(raw, y, sample_weight=weight))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        raw = fast_trees.decision_function(self.trees, x)  # the trees' own, without checks
        return self.scaler.predict_proba(raw.reshape(-1, 1))


@dataclass
class RiskModel:
    """A trained model: features spec, category codes, calibrated trees, and its history.

    ``history`` is the entity-count snapshot at the end of the data it was trained on: the stream
    starts from it and adds what it learns.
    """

    spec: FeatureSpec
    codes: CategoryCodes
    calibrated: PlattScaled
    history: pl.DataFrame
    info: dict = field(default_factory=dict)

    def matrix(self, features: pl.DataFrame) -> np.ndarray:
        return self.codes.transform(features.select(self.spec.columns)).to_numpy()

    def predict_proba(self, features: pl.DataFrame) -> np.ndarray:
        """Probability of fraud for each row of a ``build_features`` frame."""
        return self.predict_encoded(self.matrix(features))

    def predict_encoded(self, matrix: np.ndarray) -> np.ndarray:
        """Probability of fraud for each row of a ``matrix`` of the features."""
        return self.calibrated.predict_proba(matrix)[:, 1]

    def score(self, frame: pl.DataFrame, history: pl.DataFrame | None = None) -> np.ndarray:
        """Probabilities for canonical rows; history from the frame itself when not given."""
        return self.predict_proba(build_features(frame, self.spec, history))


def time_split(
    frame: pl.DataFrame, validation_share: float, test_share: float
) -> tuple[date, date]:
    """First dates of the validation and test periods, splitting the distinct dates."""
    dates = frame.get_column(DATE).unique().sort()
    if dates.len() < 3:
        raise ValueError("a time-ordered split needs declarations on at least 3 distinct dates")
    n = dates.len()
    test_at = min(n - 1, max(2, round(n * (1 - test_share))))
    valid_at = min(test_at - 1, max(1, round(n * (1 - test_share - validation_share))))
    return dates[valid_at], dates[test_at]


def periods(
    frame: pl.DataFrame, validation_share: float, test_share: float
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Train, validation and test masks of a date-sorted frame, and their windows.

    Split by distinct dates (``time_split``); a history of fewer than 3 dates (hours of
    feedback from a simulation) is split by row order instead, which is time order too.
    """
    day = frame.get_column(DATE)
    if day.n_unique() >= 3:
        valid_from, test_from = time_split(frame, validation_share, test_share)
        masks = {
            "train": (day < valid_from).to_numpy(),
            "validation": ((day >= valid_from) & (day < test_from)).to_numpy(),
            "test": (day >= test_from).to_numpy(),
        }
        first, last = str(day.min()), str(day.max())
        windows = {
            "selection_window": [first, str(valid_from)],
            "validation_window": [str(valid_from), str(test_from)],
            "test_window": [str(test_from), last],
        }
        return masks, windows
    n = frame.height
    if n < 3:
        raise ValueError("a time-ordered split needs at least 3 labelled declarations")
    test_at = min(n - 1, max(2, round(n * (1 - test_share))))
    valid_at = min(test_at - 1, max(1, round(n * (1 - test_share - validation_share))))
    row = np.arange(n)
    masks = {"train": row < valid_at, "validation": (row >= valid_at) & (row < test_at)}
    masks["test"] = row >= test_at
    windows = {
        "selection_window": ["row 0", f"row {valid_at}"],
        "validation_window": [f"row {valid_at}", f"row {test_at}"],
        "test_window": [f"row {test_at}", f"row {n}"],
    }
    return masks, windows


def fingerprint(frame: pl.DataFrame) -> str:
    """A short hash of the data (as CSV text, stable across library versions)."""
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()[:16]


def _weights(y: np.ndarray, how: str, rows: np.ndarray | None = None) -> np.ndarray | None:
    """Class weights (``balanced``: frauds as heavy in all as clean rows), times the rows' own
    weights (``rows``: inverse selection propensities) when given."""
    rows = None if rows is None else np.asarray(rows, dtype=float)
    if how != "balanced" or y.sum() == 0:
        return rows
    w = np.ones(len(y)) if rows is None else rows
    positive = w.sum() / (2.0 * w[y == 1].sum())
    negative = w.sum() / (2.0 * w[y == 0].sum()) if (y == 0).any() else 1.0
    return w * np.where(y == 1, positive, negative)


def _drift_reference(features: pl.DataFrame, scores: np.ndarray) -> dict:
    """The training window's distribution of the watched features and of the scores."""
    s = load_drift_settings()
    return DriftReference.from_frame(features, scores, s.columns, s.bins, s.epsilon).to_dict()


def train(
    frame: pl.DataFrame,
    spec: FeatureSpec,
    settings: TrainingSettings | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    budgets: tuple[float, ...] = (1, 2, 5, 10),
    weights: np.ndarray | None = None,
) -> RiskModel:
    """Fit on a canonical, labelled history; metrics of the held-out test period in ``info``.

    ``weights``: per row of ``frame``, how many declarations of all traffic it stands for
    (``retrain``: inverse selection propensities, so that trees, calibration and test figures
    describe all traffic, not only what was inspected); None: every row counts once.
    """
    settings = settings or load_model_settings().training
    labelled = pl.col(LABEL).is_not_null()
    if weights is not None:
        weights = np.asarray(weights, dtype=float)[frame.select(labelled).to_series().to_numpy()]
        frame = frame.filter(labelled).with_columns(pl.Series("_weight", weights))
        frame = frame.sort(DATE, maintain_order=True)
        weights = frame.get_column("_weight").to_numpy()
        frame = frame.drop("_weight")
    else:
        frame = frame.filter(labelled).sort(DATE, maintain_order=True)
    started = time.perf_counter()
    progress(f"features of {frame.height:,} declarations")
    features = build_features(frame, spec)
    split, windows = periods(frame, settings.validation_share, settings.test_share)
    day = frame.get_column(DATE)
    y = frame.get_column(LABEL).to_numpy().astype(int)
    for name, mask in split.items():
        if y[mask].sum() == 0:
            raise ValueError(f"the {name} period has no fraud: more history is needed")
    codes = CategoryCodes(settings.min_category_count, settings.max_categories)
    codes.fit(features.filter(pl.Series(split["train"])), spec.categorical, spec.numeric)
    if codes.unused:
        progress(f"not in this history, so not used: {', '.join(codes.unused)}")
    matrix = codes.transform(features).to_numpy()
    tr, va, te = split["train"], split["validation"], split["test"]

    def part(mask: np.ndarray) -> np.ndarray | None:
        return None if weights is None else weights[mask]

    valid_from = windows["validation_window"][0]
    progress(f"training trees on {tr.sum():,} declarations before {valid_from}")
    trees = _trees(settings, len(spec.categorical), matrix.shape[1], settings.early_stopping)
    trees.fit(matrix[tr], y[tr], sample_weight=_weights(y[tr], settings.class_weight, part(tr)))
    progress(f"calibrating on {va.sum():,} declarations from {valid_from}")
    calibrated = PlattScaled.fit(trees, matrix[va], y[va], part(va))
    score = calibrated.predict_proba(matrix[te])[:, 1]
    revenue = recovered_revenue(frame)
    metrics = budget_metrics(
        y[te], score, None if revenue is None else revenue[te], budgets, part(te)
    )
    rounds = int(trees.n_iter_)
    progress(f"refitting {rounds} boosting rounds on all {frame.height:,} declarations")
    codes.fit(features, spec.categorical, spec.numeric)  # categories new in the latest period
    matrix = codes.transform(features).to_numpy()
    final = _trees(settings, len(spec.categorical), matrix.shape[1], False, rounds)
    final.fit(matrix, y, sample_weight=_weights(y, settings.class_weight, weights))
    calibrated = PlattScaled(final, calibrated.scaler)
    elapsed = time.perf_counter() - started
    progress(f"trained in {elapsed:.1f} s")
    info = {
        "features": list(spec.columns),
        "categorical": list(spec.categorical),
        "unused_features": list(codes.unused),
        # the saved model learnt from all of it; the three windows below chose and judged it
        "training_window": [str(day.min()), str(day.max())],
        **windows,
        "rows": {"all": frame.height, **{name: int(mask.sum()) for name, mask in split.items()}},
        "weighted": weights is not None,
        "fraud_rate": round(float(y.mean()), 5),
        "data_fingerprint": fingerprint(frame),
        "metrics": metrics,
        "training_seconds": round(elapsed, 2),
        "boosting_rounds": rounds,
        # what the stream needs to explain scores and to watch for drift
        "baseline": feature_baseline(features),
        "drift": _drift_reference(features, calibrated.predict_proba(matrix)[:, 1]),
    }
    return RiskModel(spec, codes, calibrated, history_table(frame, spec), info)


def _trees(
    settings: TrainingSettings,
    n_categorical: int,
    n_columns: int,
    early_stopping: bool | str,
    rounds: int | None = None,
) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        learning_rate=settings.learning_rate,
        max_iter=rounds or settings.max_iter,
        max_leaf_nodes=settings.max_leaf_nodes,
        min_samples_leaf=settings.min_samples_leaf,
        l2_regularization=settings.l2_regularization,
        early_stopping=early_stopping,
        categorical_features=[i < n_categorical for i in range(n_columns)],
        random_state=settings.seed,
    )
