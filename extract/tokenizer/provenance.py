"""The provenance file that ships beside a tokenizer checkpoint: how it was fitted and how it scores."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from store.identity import sha256_file


def provenance_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint).with_suffix(".provenance.json")


def read_provenance(checkpoint: str | Path) -> dict | None:
    path = provenance_path(checkpoint)
    return json.loads(path.read_text()) if path.is_file() else None


def write_provenance(checkpoint: str | Path, fit: dict, heldout: dict) -> dict:
    """Record the fit (command, settings, steps, time) and the held-out figures for `checkpoint`."""
    checkpoint = Path(checkpoint)
    blob = {
        "file": checkpoint.name,
        "sha256": sha256_file(checkpoint),
        "fit": fit,
        "heldout": heldout,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
    }
    provenance_path(checkpoint).write_text(json.dumps(blob, indent=2) + "\n")
    return blob
