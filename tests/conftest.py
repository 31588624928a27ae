"""Suite-wide: fixed test secrets, and a small synthetic history shared by the model and history
tests (generated once per session)."""

from __future__ import annotations

import os

import pytest

from greenlane.models.features import default_spec
from greenlane.streams.devtools.history import generate_history

# Fixed secrets for the suite, set before anything reads one (none is read on import; the
# worker processes the integration tests start inherit them): recorded decisions depend on the
# random-selection key. Test values, not secrets: a deployment's come from its environment.
TEST_SECRETS = {
    "GREENLANE_LANES_KEY": "greenlane-lanes-2026-example-not-secret",
    "GREENLANE_PSEUDONYMISATION_KEY": "greenlane-tests-pseudonyms-not-secret",
}
os.environ.update(TEST_SECRETS)


@pytest.fixture(scope="session")
def history():
    return generate_history(20_000, seed=11)


@pytest.fixture(scope="session")
def spec():
    return default_spec()
