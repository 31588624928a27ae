"""A small synthetic history shared by the model and history tests (generated once per session)."""

from __future__ import annotations

import pytest

from greenlane.models.features import default_spec
from greenlane.streams.devtools.history import generate_history


@pytest.fixture(scope="session")
def history():
    return generate_history(20_000, seed=11)


@pytest.fixture(scope="session")
def spec():
    return default_spec()
