"""The provenance file beside a shipped weights file: how it was made and how it scores.

`weights.pt` has `weights.provenance.json` next to it (the stand-in encoder's and the tokenizer's
both); what goes in is the fitting code's business, reading and writing it is done here once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lvmae.foundation.files import atomic_write_json


def provenance_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".provenance.json")


def read_provenance(weights: str | Path) -> dict[str, Any] | None:
    """The provenance of `weights`, or None when it has none."""
    path = provenance_path(weights)
    return json.loads(path.read_text()) if path.is_file() else None


def write_provenance(weights: str | Path, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write (atomically) and return `provenance` as the record of `weights`."""
    atomic_write_json(provenance_path(weights), provenance)
    return provenance


def lvmae_version() -> str:
    """The installed lvmae's version (what files it writes record), "0+unknown" from an uninstalled tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lvmae")
    except PackageNotFoundError:
        return "0+unknown"
