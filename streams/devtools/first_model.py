"""A first risk model for a fresh installation: trained on a synthetic history (`make run`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from greenlane.models.features import default_spec
from greenlane.models.registry import Registry, save_trained
from greenlane.models.train import train
from greenlane.streams.devtools.history import generate_history, write_history


def ensure_model(home: Path, rows: int = 100_000, seed: int = 7) -> str:
    """The registry's current model; on a first start, one trained on a synthetic history.

    What `make run` calls so the stream has a model from its first filing, with a progress bar
    (training 100,000 declarations takes about ten seconds here).
    """
    registry = Registry()
    current = registry.current()
    if current is not None:
        return current
    bar = _StageBar(["synthetic history", "features", "trees", "calibration", "evaluation"])
    version = train_first_model(registry, home / "training", rows, seed, bar.step)
    metrics = registry.metadata(version)["metrics"]
    bar.done(
        f"model {version}: precision@5% {metrics['precision@5%']:.3f}, "
        f"ROC AUC {metrics['roc_auc']:.3f}"
    )
    return version


def train_first_model(
    registry: Registry,
    folder: Path,
    rows: int = 100_000,
    seed: int = 7,
    progress: Callable[[str], None] = lambda _m: None,
) -> str:
    """Train on ``rows`` declarations of synthetic history (kept in ``folder``), save the model
    in ``registry`` and make it current; returns its version."""
    progress(f"no risk model yet: generating {rows:,} historical declarations")
    path = write_history(
        generate_history(rows, seed=seed), Path(folder) / f"synthetic-{rows}-seed{seed}.parquet"
    )
    model = train(pl.read_parquet(path), default_spec(), progress=progress)
    version, _ = save_trained(registry, model, path, None, promote=True)
    return version


class _StageBar:
    """A one-line progress bar over the named stages of a long task."""

    WIDTH = 24

    def __init__(self, stages: list[str]) -> None:
        self.stages = stages
        self.done_steps = 0
        self.started = time.monotonic()

    def step(self, message: str) -> None:
        self.done_steps = min(self.done_steps + 1, len(self.stages))
        self._draw(message)

    def _draw(self, message: str) -> None:
        filled = self.WIDTH * self.done_steps // len(self.stages)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        print(
            f"\r[{bar}] {time.monotonic() - self.started:5.1f} s  {message[:70]:<70}",
            end="",
            flush=True,
        )

    def done(self, message: str) -> None:
        self.done_steps = len(self.stages)
        self._draw(message)
        print(flush=True)
