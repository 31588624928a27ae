"""Settings of the risk model (``models/settings/models.yaml``), validated when loaded.

Thresholds and knobs of the model are data, like the rest of greenlane's settings, so a customs
administration tunes them without touching code; a typo fails at load with file and key named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greenlane.streams.settings import ConfigError, build_section, read_yaml

SETTINGS_DIR = Path(__file__).parent / "settings"
MODELS_FILE = SETTINGS_DIR / "models.yaml"
REGISTRY_ENV = "GREENLANE_MODEL_REGISTRY"


@dataclass(frozen=True)
class FeatureSettings:
    history_roles: list
    value_norm_roles: list
    smoothing: float
    prior_rate: float
    prior_weight: float


@dataclass(frozen=True)
class TrainingSettings:
    validation_share: float
    test_share: float
    class_weight: str
    learning_rate: float
    max_iter: int
    max_leaf_nodes: int
    min_samples_leaf: int
    l2_regularization: float
    early_stopping: bool
    min_category_count: int
    max_categories: int
    seed: int


@dataclass(frozen=True)
class EvaluationSettings:
    budgets: list
    chart_max_percent: float


@dataclass(frozen=True)
class RegistrySettings:
    directory: str

    def path(self, env: dict[str, str] | None = None) -> Path:
        """The registry folder: GREENLANE_MODEL_REGISTRY when set, else the configured one."""
        env = dict(os.environ) if env is None else env
        return Path(os.path.expanduser(env.get(REGISTRY_ENV) or self.directory))


@dataclass(frozen=True)
class RetrainSettings:
    latest_days: int
    holdout_share: float
    min_random_picks: int
    min_findings: int
    max_training_weight: float


@dataclass(frozen=True)
class ModelSettings:
    features: FeatureSettings
    training: TrainingSettings
    evaluation: EvaluationSettings
    registry: RegistrySettings
    retrain: RetrainSettings


def _check(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"{where}: {what}")


def _strings(value: Any, where: str) -> None:
    _check(
        isinstance(value, list) and all(isinstance(v, str) and v for v in value),
        where,
        "expected a list of non-empty strings",
    )


def load_model_settings(path: Path | None = None) -> ModelSettings:
    """Read and check models.yaml (default: the shipped one)."""
    path = MODELS_FILE if path is None else Path(path)
    data = read_yaml(path, "model settings")
    _check(isinstance(data, dict), str(path), "expected a mapping")
    try:
        sections = {
            k: dict(data[k]) for k in ("features", "training", "evaluation", "registry", "retrain")
        }
    except KeyError as exc:
        raise ConfigError(f"{path}: missing section {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: every section must be a mapping") from exc
    features = build_section(FeatureSettings, sections["features"], f"{path}: features")
    training = build_section(TrainingSettings, sections["training"], f"{path}: training")
    evaluation = build_section(EvaluationSettings, sections["evaluation"], f"{path}: evaluation")
    registry = build_section(RegistrySettings, sections["registry"], f"{path}: registry")
    retrain = build_section(RetrainSettings, sections["retrain"], f"{path}: retrain")
    r = f"{path}: retrain"
    for key in ("latest_days", "min_random_picks", "min_findings"):
        value = getattr(retrain, key)
        _check(isinstance(value, int) and value >= 1, f"{r}.{key}", "a whole number >= 1")
    _check(0 < retrain.holdout_share < 1, f"{r}.holdout_share", "must be within (0, 1)")
    _check(retrain.max_training_weight >= 1, f"{r}.max_training_weight", "must be >= 1")
    f, t = f"{path}: features", f"{path}: training"
    _strings(features.history_roles, f"{f}.history_roles")
    _strings(features.value_norm_roles, f"{f}.value_norm_roles")
    _check(features.smoothing > 0, f"{f}.smoothing", "must be > 0")
    _check(0 < features.prior_rate < 1, f"{f}.prior_rate", "must be within (0, 1)")
    _check(features.prior_weight > 0, f"{f}.prior_weight", "must be > 0")
    for key in ("validation_share", "test_share"):
        _check(0 < getattr(training, key) < 0.5, f"{t}.{key}", "must be within (0, 0.5)")
    _check(training.class_weight in ("balanced", "none"), f"{t}.class_weight", "balanced or none")
    _check(training.max_categories <= 254, f"{t}.max_categories", "at most 254 (tree bins)")
    budgets = evaluation.budgets
    _check(
        isinstance(budgets, list)
        and bool(budgets)
        and all(isinstance(b, int | float) and 0 < b <= 100 for b in budgets),
        f"{path}: evaluation.budgets",
        "expected a list of percentages in (0, 100]",
    )
    return ModelSettings(features, training, evaluation, registry, retrain)
