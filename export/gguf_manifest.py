"""manifest.json of a GGUF policy export: what it holds, and its verification at load."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "medsam-agent-rt/gguf-policy"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


class ExportError(ValueError):
    """The checkpoint cannot be exported (unsupported architecture, bad config, failed check)."""


@dataclass(frozen=True)
class ExportedPolicy:
    directory: Path
    manifest: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.directory / self.manifest["files"]["model"]["name"]

    @property
    def mmproj_path(self) -> Path:
        return self.directory / self.manifest["files"]["mmproj"]["name"]


# ----------------------------------------------------------------------------- manifest


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in ("medsam-agent-rt", "gguf", "llama-cpp-python", "transformers", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def load_manifest(directory: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """manifest.json of an export; ``verify`` re-hashes the GGUF files against it."""
    directory = Path(directory)
    f = directory / MANIFEST_NAME
    if not f.is_file():
        raise FileNotFoundError(f"{directory} is not a GGUF policy export (no {MANIFEST_NAME})")
    manifest = json.loads(f.read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{f}: format {manifest.get('format')!r} v{manifest.get('format_version')}, "
            f"expected {FORMAT!r} v{FORMAT_VERSION}"
        )
    for role in ("model", "mmproj"):
        entry = manifest["files"][role]
        path = directory / entry["name"]
        if not path.is_file():
            raise FileNotFoundError(
                f"{directory}: the manifest's {role} file {path.name} is missing"
            )
        if verify and sha256_file(path) != entry["sha256"]:
            raise ExportError(
                f"{path} does not match its manifest sha256 (corrupted or replaced); re-export"
            )
    return manifest
