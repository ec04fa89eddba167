"""The manifest: one parquet file per committed shard, one row per video, written last.

A shard exists for readers exactly when `manifest/<shard_id>.parquet` exists. Writers put the file
there by writing a hidden temp file and renaming it (a rename is atomic on local filesystems, and an
object store shows an object only once it is whole), so a reader never sees half a manifest. On a
local filesystem the temp file and the folder are fsynced too (`foundation.files.atomic_write`).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from foundation.files import atomic_write_bytes
from store.layout import MANIFEST_DIR, Location, StoreError, manifest_name, manifest_temp_prefix

COLUMNS = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("duration", pa.float64()),  # seconds; null for a failed video
        ("fps", pa.float64()),  # null for a failed video
        ("n_segments", pa.int64()),  # 0 for a failed video
        ("shard_id", pa.string()),
        ("row_start", pa.int64()),  # first row of the video's segments in the shard's arrays
        ("status", pa.string()),  # "ok" | "failed"
        ("error", pa.string()),  # null for an ok video
    ]
)
STATUSES = ("ok", "failed")


def build_table(shard_id: str, rows: list[dict[str, Any]], extras: list[dict[str, Any]]) -> pa.Table:
    """Rows of the standard columns plus each row's extra columns (missing extras become nulls)."""
    table = pa.Table.from_pylist(rows, schema=COLUMNS)
    for key in dict.fromkeys(key for extra in extras for key in extra):
        try:
            column = pa.array([extra.get(key) for extra in extras])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise StoreError(f"shard {shard_id}: extra column {key!r} mixes types across videos: {exc}") from None
        table = table.append_column(key, column)
    return table


def committed(location: Location) -> dict[str, tuple]:
    """Committed shard ids, each with its manifest file's signature (size and modification stamp as the
    filesystem reports them), which changes when a shard is overwritten."""
    suffix = ".parquet"
    return {
        name[: -len(suffix)]: tuple(info.get(key) for key in ("size", "mtime", "created", "ETag"))
        for name, info in location.entries(MANIFEST_DIR).items()
        if name.endswith(suffix) and not name.startswith(".")
    }


def committed_shard_ids(location: Location) -> set[str]:
    return set(committed(location))


def stale_temp_files(location: Location, shard_id: str | None = None) -> list[str]:
    """Manifest temp files left by writers that died before their rename (of one shard, or all)."""
    prefix = manifest_temp_prefix(shard_id) if shard_id else "."
    return [name for name in location.listdir(MANIFEST_DIR) if name.startswith(prefix) and name.endswith(".tmp")]


def write(location: Location, shard_id: str, table: pa.Table) -> None:
    """Commit a shard: temp file, then rename. Leftover temp files of this shard are removed first
    (one writer per shard, so they can only come from an earlier run that died)."""
    fs = location.fs
    for name in stale_temp_files(location, shard_id):
        fs.rm(location.path(MANIFEST_DIR, name))
    fs.makedirs(location.path(MANIFEST_DIR), exist_ok=True)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    temp = location.path(MANIFEST_DIR, f"{manifest_temp_prefix(shard_id)}{uuid.uuid4().hex}.tmp")
    final = location.path(MANIFEST_DIR, manifest_name(shard_id))
    if location.is_local:
        atomic_write_bytes(final, buffer.getvalue(), temp=temp)
    else:
        fs.pipe_file(temp, buffer.getvalue())
        fs.mv(temp, final)


def remove(location: Location, shard_id: str) -> None:
    """Uncommit a shard (the first step of overwriting it)."""
    location.fs.rm(location.path(MANIFEST_DIR, manifest_name(shard_id)))


def read(location: Location, shard_id: str) -> pa.Table:
    path = location.path(MANIFEST_DIR, manifest_name(shard_id))
    try:
        with location.fs.open(path, "rb") as f:
            return pq.read_table(f)
    except FileNotFoundError:
        raise StoreError(f"shard {shard_id}: manifest {path} is gone (shard being overwritten?)") from None
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"shard {shard_id}: manifest {path} is unreadable: {exc}") from None


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    """All manifests as one table. Shards may carry different extra columns; missing ones become nulls
    and numeric types widen ("permissive" promotion)."""
    tables = list(tables)
    if not tables:
        return COLUMNS.empty_table()
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(f"manifests of different shards disagree on a column's type: {exc}") from None
