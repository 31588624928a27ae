"""Local model registry: versioned artifacts with metadata, and which one is current.

Layout: ``<root>/<version>/model.joblib`` + ``metadata.json``, and ``<root>/CURRENT`` naming the
promoted version. Versions are numbered in order of creation (``v0001``...); a version folder is
claimed with an exclusive mkdir, and CURRENT replaced atomically, so a worker reading it while a
model is promoted sees either the old or the new version, never half a file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib

from greenlane.models.config import load_model_settings

ARTIFACT = "model.joblib"
METADATA = "metadata.json"
CURRENT = "CURRENT"
_VERSION = re.compile(r"^v(\d{4,})$")


class RegistryError(LookupError):
    """A version that does not exist, or a registry with nothing to load."""


def default_root() -> Path:
    """GREENLANE_MODEL_REGISTRY, else models.yaml's registry.directory."""
    return load_model_settings().registry.path()


class Registry:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(os.path.expanduser(str(root))) if root else default_root()

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def save(self, model: Any, metadata: dict[str, Any]) -> str:
        """Store a model as the next version (not promoted); returns the version."""
        self.root.mkdir(parents=True, exist_ok=True)
        number = int(self.versions()[-1][1:]) + 1 if self.versions() else 1
        while True:
            version = f"v{number:04d}"
            try:
                (self.root / version).mkdir()
                break
            except FileExistsError:
                number += 1
        folder = self.root / version
        joblib.dump(model, folder / ARTIFACT)
        meta = {
            "version": version,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **metadata,
        }
        (folder / METADATA).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        return version

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.root / version / METADATA
        if not path.is_file():
            raise RegistryError(f"{self.root}: no model version {version!r}")
        return json.loads(path.read_text())

    def list_models(self) -> list[dict[str, Any]]:
        """Metadata of every version, oldest first, with ``current`` set on the promoted one."""
        current = self.current()
        return [{**self.metadata(v), "current": v == current} for v in self.versions()]

    def current(self) -> str | None:
        path = self.root / CURRENT
        if not path.is_file():
            return None
        version = path.read_text().strip()
        return version if (self.root / version / ARTIFACT).is_file() else None

    def promote(self, version: str) -> None:
        """Make ``version`` the one the stream scores with."""
        if not (self.root / version / ARTIFACT).is_file():
            raise RegistryError(f"{self.root}: no model version {version!r} to promote")
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".current-")
        with os.fdopen(fd, "w") as fh:
            fh.write(version + "\n")
        os.replace(tmp, self.root / CURRENT)

    def load(self, version: str | None = None) -> Any:
        """The model of ``version`` (default: the current one)."""
        version = version or self.current()
        if version is None:
            raise RegistryError(f"{self.root}: no current model; train one first")
        path = self.root / version / ARTIFACT
        if not path.is_file():
            raise RegistryError(f"{self.root}: no model version {version!r}")
        return joblib.load(path)


def save_trained(
    registry: Any, model: Any, data: Any, mapping: Any, promote: bool
) -> tuple[str, bool]:
    """Save a trained model with where it came from; promote it if asked or if it is the first."""
    metadata = {**model.info, "data": str(data), "mapping": str(mapping) if mapping else None}
    version = registry.save(model, metadata)
    promoted = promote or registry.current() is None
    if promoted:
        registry.promote(version)
    return version, promoted
