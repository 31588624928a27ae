"""Pins models.fast_trees against the scikit-learn it runs on: bit-identical scores, and the
estimator's own path whenever the layout is not the one it knows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from greenlane.models import fast_trees


def _fitted(categorical: int, numeric: int = 5, seed: int = 3) -> HistGradientBoostingClassifier:
    rng = np.random.default_rng(seed)
    n = 3_000
    codes = rng.integers(0, 12, size=(n, categorical)).astype(float)
    codes[rng.random(codes.shape) < 0.05] = np.nan
    numbers = rng.normal(size=(n, numeric))
    numbers[rng.random(numbers.shape) < 0.05] = np.nan
    x = np.hstack([codes, numbers])
    signal = (
        np.nan_to_num(numbers[:, 0]) + (np.nan_to_num(codes[:, 0]) % 3 == 0) if categorical else 0
    )
    y = (signal + rng.normal(scale=0.5, size=n) > 0.8).astype(int)
    mask = [i < categorical for i in range(x.shape[1])]
    return HistGradientBoostingClassifier(
        max_iter=30, categorical_features=mask if categorical else None
    ).fit(x, y)


@pytest.fixture(scope="module")
def trees() -> HistGradientBoostingClassifier:
    return _fitted(categorical=3)


def test_scores_are_the_estimator_s_own_bit_for_bit(trees):
    assert fast_trees._fast_path(trees) is not None  # the layout of this scikit-learn is known
    rng = np.random.default_rng(11)
    x = rng.normal(size=(500, trees.n_features_in_)) * 4
    x[:, :3] = rng.integers(-2, 20, size=(500, 3))  # known codes, unseen ones, negatives
    x[rng.random(x.shape) < 0.1] = np.nan
    for rows in (x, x[:1], fast_trees.probe(trees, seed=4)):
        assert np.array_equal(
            fast_trees.decision_function(trees, rows), trees.decision_function(rows)
        )


def test_trees_without_categorical_features_keep_their_own_path():
    plain = _fitted(categorical=0)
    assert fast_trees._fast_path(plain) is None
    x = fast_trees.probe(plain)
    assert np.array_equal(fast_trees.decision_function(plain, x), plain.decision_function(x))


def test_a_layout_it_does_not_know_falls_back_to_the_estimator(trees, caplog):
    other = _fitted(categorical=2, seed=8)
    encoder = other._preprocessor.named_transformers_["encoder"]
    encoder.unknown_value = -1  # not what HistGradientBoosting sets: the module must not guess
    with caplog.at_level("WARNING", logger="greenlane.models"):
        assert fast_trees._fast_path(other) is None
    assert "own input checks" in caplog.text
    x = fast_trees.probe(trees)[:, : other.n_features_in_]
    assert np.array_equal(fast_trees.decision_function(other, x), other.decision_function(x))
