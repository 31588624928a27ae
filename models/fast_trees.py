"""Scores of a fitted HistGradientBoostingClassifier without its per-call input checks: the one
module that touches scikit-learn internals (scikit-learn pinned in deploy/constraints.txt).

With categorical features, scikit-learn 1.9 sends every predict through a ColumnTransformer
(an OrdinalEncoder for the categorical columns, a check of the others) whose validation costs
about 2 ms a call whatever the number of rows: most of a small batch's model time, and paid
twice when the batch's scores are explained. :func:`decision_function` does the same mapping
with numpy and hands the trees the encoded layout they were fitted on. It is used only when it
gives bit-identical scores on a probe when first asked for a model; otherwise (another
scikit-learn, another layout) the estimator's own path runs. tests/models/test_fast_trees.py
pins it.
"""

from __future__ import annotations

import copy
import logging
import weakref
from typing import Any

import numpy as np

log = logging.getLogger("greenlane.models")

_PROBE_ROWS = 64


class _EncodedInput:
    """The estimator's own preprocessing, in numpy: categorical columns to their category's
    index (unknown or missing: NaN), then the numeric columns, as float64."""

    def __init__(self, trees: Any) -> None:
        pre = trees._preprocessor
        width = trees.n_features_in_
        encoder, self.categorical = _part(trees, "encoder")
        _, self.numeric = _part(trees, "numerical")
        k = len(self.categorical)
        if (
            type(encoder).__name__ != "OrdinalEncoder"
            or pre.output_indices_["encoder"] != slice(0, k)
            or pre.output_indices_["numerical"] != slice(k, width)
            or not np.isnan(encoder.unknown_value)
            or not np.isnan(encoder.encoded_missing_value)
            or len(self.categorical) + len(self.numeric) != width
        ):
            raise ValueError("not the preprocessing layout this module knows")
        self.categories = [np.asarray(c, dtype=np.float64) for c in encoder.categories_]
        self.bare = copy.copy(trees)
        self.bare._preprocessor = None  # inputs arrive encoded: only the shape is checked

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        out = np.empty_like(x)
        for j, (column, known) in enumerate(zip(self.categorical, self.categories, strict=True)):
            values = x[:, column]
            at = np.minimum(np.searchsorted(known, values), len(known) - 1)
            hit = known[at] == values  # NaN and unknown values never match
            out[:, j] = np.where(hit, at, np.nan)
        out[:, len(self.categorical) :] = x[:, self.numeric]
        return out

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self.bare.decision_function(self(x))


def _part(trees: Any, name: str) -> tuple[Any, np.ndarray]:
    """A part of the estimator's ColumnTransformer: (its transformer, its input columns)."""
    for part, transformer, columns in trees._preprocessor.transformers_:
        if part == name:
            columns = np.asarray(columns)
            if columns.dtype != bool:
                return transformer, np.arange(trees.n_features_in_)[columns]
            return transformer, np.flatnonzero(columns)
    raise ValueError(f"no {name!r} part in the preprocessing")


def probe(trees: Any, rows: int = _PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Inputs that visit every known category, an unknown one and a missing one in each
    categorical column, and numbers (some missing) in the others."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, size=(rows, trees.n_features_in_))
    x[rng.random(x.shape) < 0.1] = np.nan
    if trees._preprocessor is not None:
        encoder, categorical = _part(trees, "encoder")
        for column, known in zip(categorical, encoder.categories_, strict=True):
            choices = np.concatenate([np.asarray(known, dtype=np.float64), [np.nan, 1e9]])
            x[:, column] = rng.choice(choices, size=rows)
    return x


_FAST: weakref.WeakKeyDictionary[Any, _EncodedInput | None] = weakref.WeakKeyDictionary()


def _fast_path(trees: Any) -> _EncodedInput | None:
    if trees in _FAST:
        return _FAST[trees]
    fast = None
    if getattr(trees, "_preprocessor", None) is not None:
        try:
            candidate = _EncodedInput(trees)
            x = probe(trees)
            if np.array_equal(candidate.decision_function(x), trees.decision_function(x)):
                fast = candidate
            else:
                log.warning(
                    "model scores through scikit-learn's own input checks: the fast "
                    "path disagreed on the probe"
                )
        except Exception as exc:  # another scikit-learn layout: its own path is right
            log.warning("model scores through scikit-learn's own input checks: %s", exc)
    _FAST[trees] = fast
    return fast


def decision_function(trees: Any, x: np.ndarray) -> np.ndarray:
    """``trees.decision_function(x)``, bit for bit, without the per-call preprocessing."""
    fast = _fast_path(trees)
    if fast is None:
        return trees.decision_function(x)
    return fast.decision_function(x)
