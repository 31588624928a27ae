"""Why the model scored a consignment high: top feature contributions, in an officer's words.

Gradient-boosted trees of scikit-learn have no SHAP values, so a contribution is measured by
occlusion: the probability of the row minus its probability with that one feature set to a
*typical* value (the training period's median, or most frequent category). A positive number is
how much that feature, as declared, raised the risk above a typical declaration. It costs one
extra model row per explained row and feature, so all of them are stacked into one matrix and
scored in a single ``predict_proba`` call; only the rows worth explaining (those above the
model's floor, say) are passed.

The typical values (``feature_baseline``) are computed once from the training features and kept
in the model's ``info["baseline"]``; labels and the reporting threshold are data
(``models/settings/explain.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from greenlane.models.config import SETTINGS_DIR
from greenlane.models.features import _slug
from greenlane.streams.settings import ConfigError, read_yaml

if TYPE_CHECKING:  # greenlane.models.train uses this module: no import at run time
    from greenlane.models.train import RiskModel

EXPLAIN_FILE = SETTINGS_DIR / "explain.yaml"
BASELINE_KEY = "baseline"  # where a model's info keeps its typical feature values
_TEMPLATES = {"rate": "_rate", "log_n": "_log_n"}  # suffix templates of entity-history columns


@dataclass(frozen=True)
class FeatureLabels:
    """Officer-readable names of feature columns, and the reporting threshold."""

    features: dict[str, str]
    entities: dict[str, str]  # entity slug (as in column names) -> label
    templates: dict[str, str]
    min_contribution: float

    def label(self, column: str) -> str:
        """The label of a feature column; its name in words when none is configured."""
        if column in self.features:
            return self.features[column]
        for template, suffix in _TEMPLATES.items():
            entity = self.entities.get(column.removesuffix(suffix))
            if column.endswith(suffix) and entity:
                return self.templates[template].format(entity=entity)
        if column.startswith("value_vs_") and column.endswith("_norm"):
            entity = self.entities.get(column.removeprefix("value_vs_").removesuffix("_norm"))
            if entity:
                return self.templates["norm"].format(entity=entity)
        return column.replace("_", " ")


def _labels_map(data: Any, where: str) -> dict[str, str]:
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in data.items()
    ):
        raise ConfigError(f"{where}: expected a mapping of names to non-empty labels")
    return dict(data)


@cache
def load_feature_labels(path: Path | None = None) -> FeatureLabels:
    """Read and check explain.yaml (default: the shipped one); cached, it is read per batch."""
    path = EXPLAIN_FILE if path is None else Path(path)
    data = read_yaml(path, "feature labels")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping")
    missing = {"features", "entities", "templates", "reason"} - set(data)
    if missing:
        raise ConfigError(f"{path}: missing section(s) {sorted(missing)}")
    features = _labels_map(data["features"], f"{path}: features")
    entities = _labels_map(data["entities"], f"{path}: entities")
    templates = _labels_map(data["templates"], f"{path}: templates")
    for name in (*_TEMPLATES, "norm"):
        if "{entity}" not in templates.get(name, ""):
            raise ConfigError(f"{path}: templates.{name}: expected a label with {{entity}}")
    reason = data["reason"]
    threshold = reason.get("min_contribution") if isinstance(reason, dict) else None
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or threshold < 0:
        raise ConfigError(f"{path}: reason.min_contribution: expected a number >= 0")
    return FeatureLabels(
        features=features,
        entities={_slug(role): label for role, label in entities.items()},
        templates=templates,
        min_contribution=float(threshold),
    )


def feature_baseline(features: pl.DataFrame) -> dict[str, str | float | None]:
    """Typical value of every feature column: median (numeric) or most frequent (categorical).

    JSON-able; compute it on the training period's features and keep it in ``info["baseline"]``.
    """
    baseline: dict[str, str | float | None] = {}
    for name, column in features.to_dict().items():
        known = column.drop_nulls()
        if known.dtype.is_numeric():
            known = known.cast(pl.Float64).drop_nans()
            baseline[name] = float(known.median()) if known.len() else None  # type: ignore[arg-type]
        else:
            baseline[name] = known.mode().sort()[0] if known.len() else None
    return baseline


def top_contributions(
    model: RiskModel,
    features: pl.DataFrame,
    probabilities: np.ndarray,
    rows: np.ndarray,
    k: int = 3,
    baseline: dict[str, Any] | None = None,
    matrix: np.ndarray | None = None,
    typical: np.ndarray | None = None,
) -> list[list[tuple[str, float]]]:
    """Per explained row, up to ``k`` (feature column, contribution) pairs, largest first.

    ``features`` is the model's feature frame of the batch and ``probabilities`` the model's
    probabilities of it (``model.predict_proba(features)``); ``rows`` the indices to explain.
    Only positive contributions are listed (what raised the risk); ties keep the model's column
    order, so the same row always gets the same explanation. ``baseline`` defaults to the
    model's ``info["baseline"]``. A stream that explains batch after batch passes
    ``matrix``, the ``model.matrix(features)`` it scored the batch from, and ``typical``, the
    model's ``typical_row``: each is a category transform less per batch.
    """
    rows = np.asarray(rows, dtype=np.intp)
    if rows.size == 0:
        return []
    columns = model.spec.columns
    chosen = features.select(columns)
    base = typical_row(model, chosen.schema, baseline) if typical is None else typical
    explained = model.matrix(chosen[rows]) if matrix is None else matrix[rows]
    m, d = explained.shape
    same = (explained == base) | (np.isnan(explained) & np.isnan(base))
    stacked = np.repeat(explained, d, axis=0)
    feature = np.tile(np.arange(d), m)
    stacked[np.arange(m * d), feature] = base[feature]
    keep = ~same.ravel()  # a feature already typical contributes nothing: not scored
    contribution = np.zeros(m * d)
    if keep.any():
        replaced = model.predict_encoded(stacked[keep])
        p = np.asarray(probabilities, dtype=float)[rows]
        contribution[keep] = np.repeat(p, d)[keep] - replaced
    contribution = contribution.reshape(m, d)
    order = np.argsort(-contribution, axis=1, kind="stable")[:, : max(k, 0)]
    return [
        [(columns[j], float(contribution[i, j])) for j in order[i] if contribution[i, j] > 0]
        for i in range(m)
    ]


def typical_row(
    model: RiskModel, schema: pl.Schema, baseline: dict[str, Any] | None = None
) -> np.ndarray:
    """The baseline declaration as a model matrix row (the occlusion values), for feature
    columns of ``schema``; ``baseline`` defaults to the model's ``info["baseline"]``."""
    if baseline is None:
        if BASELINE_KEY not in model.info:
            raise KeyError(
                "model has no info['baseline']: compute it with feature_baseline() on the "
                "training features"
            )
        baseline = model.info[BASELINE_KEY]
    typical = pl.DataFrame([[baseline.get(c) for c in schema]], schema=schema, orient="row")
    return model.matrix(typical)[0]


def format_evidence(
    contributions: list[tuple[str, float]],
    probability: float | None = None,
    labels: FeatureLabels | None = None,
) -> str:
    """The evidence text of a model reason, e.g.
    ``model probability 0.42; seller's past fraud rate +0.21, declared value per kg +0.08``.
    """
    labels = labels or load_feature_labels()
    shown = [
        f"{labels.label(column)} {value:+.2f}"
        for column, value in contributions
        if value >= labels.min_contribution
    ]
    head = f"model probability {probability:.2f}" if probability is not None else "model"
    return f"{head}; " + (", ".join(shown) if shown else "no single feature stands out")
