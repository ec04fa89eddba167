"""What no commit names: generations an overwrite replaced, the arrays and temp files of writers that
died or lost a race before their manifest's rename, and anything else in the store's folders.

Readers never see garbage (a reader follows the manifests), so it is not a problem for `verify`, only
disk space: `verify` lists it, `lvmae store gc` removes it. A writer that is still writing has a
generation no manifest names yet, so collection spares anything modified in the last `min_age_s`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lvmae.store.layout import MANIFEST_DIR, SHARDS_DIR, Location
from lvmae.store.manifest import is_temp_file


@dataclass(frozen=True)
class Garbage:
    path: str  # relative to the store root; a folder ends in "/"
    what: str

    def __str__(self) -> str:
        return f"{self.path} ({self.what})"


def find_garbage(location: Location, generations: dict[str, str]) -> list[Garbage]:
    """Everything in the store that no commit names; `generations` maps each committed shard to the
    generation its manifest names."""
    found = []
    for name in location.listdir():
        if name.endswith(".partial"):
            found.append(Garbage(name, "zarr temp file of an interrupted write"))
        elif name not in ("zarr.json", SHARDS_DIR, MANIFEST_DIR):
            found.append(Garbage(name, "not part of a store"))
    for shard_id in location.listdir(SHARDS_DIR):
        if shard_id == "zarr.json":
            continue
        if shard_id.endswith(".partial"):
            found.append(Garbage(f"{SHARDS_DIR}/{shard_id}", "zarr temp file of an interrupted write"))
        elif shard_id not in generations:
            found.append(Garbage(f"{SHARDS_DIR}/{shard_id}/", "no manifest: a shard never committed"))
        else:
            for generation in location.listdir(SHARDS_DIR, shard_id):
                if generation != "zarr.json" and generation != generations[shard_id]:
                    found.append(
                        Garbage(
                            f"{SHARDS_DIR}/{shard_id}/{generation}",
                            "a generation no manifest names: replaced, or never committed",
                        )
                    )
    for name in location.listdir(MANIFEST_DIR):
        if is_temp_file(name):
            found.append(Garbage(f"{MANIFEST_DIR}/{name}", "temp file of a writer that died before its rename"))
        elif not name.endswith(".parquet"):
            found.append(Garbage(f"{MANIFEST_DIR}/{name}", "not a manifest"))
    root = location.root.rstrip("/") + "/"
    for shard_id, generation in sorted(generations.items()):
        for path in location.fs.find(location.path(SHARDS_DIR, shard_id, generation)):
            if path.endswith(".partial"):
                found.append(Garbage(path.removeprefix(root), "zarr temp file of an interrupted write"))
    return found


def newest_change(location: Location, garbage: Garbage) -> float:
    """When anything under `garbage` last changed (seconds since the epoch; 0 when unknown)."""
    path = location.path(garbage.path.rstrip("/"))
    stamps = [_mtime(info) for info in location.fs.find(path, withdirs=True, detail=True).values()]
    if location.fs.exists(path):
        stamps.append(_mtime(location.fs.info(path)))
    return max(stamps, default=0.0)


def _mtime(info: dict) -> float:
    stamp = info.get("mtime", info.get("LastModified", info.get("created", 0.0)))
    return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp or 0.0)


def collect(location: Location, garbage: list[Garbage], *, min_age_s: float) -> tuple[list[Garbage], list[Garbage]]:
    """Remove the garbage untouched for `min_age_s` seconds; returns (removed, spared as too recent)."""
    removed, spared = [], []
    now = time.time()
    for item in garbage:
        if now - newest_change(location, item) < min_age_s:
            spared.append(item)
            continue
        location.fs.rm(location.path(item.path.rstrip("/")), recursive=True)
        removed.append(item)
    return removed, spared
