"""The manifest: one parquet file per committed shard, one row per video, written last.

A shard exists for readers exactly when `manifest/<shard_id>.parquet` exists, and it is the
generation of arrays its commit record names (`Commit`, in the file's parquet metadata). Writers put
the file there by writing a hidden temp file and renaming it (a rename is atomic on local
filesystems, and an object store shows an object only once it is whole), so a reader never sees half
a manifest. On a local filesystem the temp file and the folder are fsynced before and after the
rename (`foundation.files.atomic_write`); a writer that must not replace another's shard puts the
file in place with a hard link, which fails when the name exists.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lvmae.foundation.files import atomic_write_bytes
from lvmae.store.layout import MANIFEST_DIR, Location, StoreError, manifest_name, manifest_temp_prefix

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
        ("error_kind", pa.string()),  # "permanent" | "transient" for a failed video, null for an ok one
    ]
)
STATUSES = ("ok", "failed")
ERROR_KINDS = ("permanent", "transient")
COMMIT_KEY = b"lvmae.commit"


@dataclass
class Commit:
    """What one commit wrote, kept in its manifest: the generation folder its arrays are in, the
    per-segment shape and the data files (path below the array -> bytes) of each array, and the
    writer's own attributes. A reader checks the files are there: zarr would read a missing one as
    fill values, so only this record can tell "all zeros" from "lost"."""

    generation: str
    shapes: dict[str, list[int]] = field(default_factory=dict)  # array -> per-segment shape
    files: dict[str, dict[str, int]] = field(default_factory=dict)  # array -> {file below it: bytes}
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_table(cls, table: pa.Table, where: str) -> Commit:
        raw = (table.schema.metadata or {}).get(COMMIT_KEY)
        if raw is None:
            raise StoreError(f"{where}: no commit record in its parquet metadata (not written by this lvmae)")
        try:
            value = json.loads(raw)
            return cls(value["generation"], value["shapes"], value["files"], value.get("attrs", {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{where}: unreadable commit record ({exc})") from None


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


Listing = dict[str, tuple]
"""Committed shard ids, each with its manifest file's signature (size and modification stamp as the
filesystem reports them), which changes when a shard is overwritten."""


def committed(location: Location) -> Listing:
    """One listing of `manifest/`: the committed shards and their signatures."""
    suffix = ".parquet"
    return {
        name[: -len(suffix)]: tuple(info.get(key) for key in ("size", "mtime", "created", "ETag"))
        for name, info in location.entries(MANIFEST_DIR).items()
        if name.endswith(suffix) and not name.startswith(".")
    }


def committed_shard_ids(location: Location) -> set[str]:
    return set(committed(location))


def is_temp_file(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def write(location: Location, shard_id: str, table: pa.Table, commit: Commit, *, replace: bool) -> None:
    """Commit a shard: its manifest (rows plus the commit record) to a temp file, then renamed into
    place. With `replace` False the commit fails (StoreError) when the shard is already committed,
    even by a writer that got there a moment earlier."""
    fs = location.fs
    fs.makedirs(location.path(MANIFEST_DIR), exist_ok=True)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), COMMIT_KEY: commit.to_bytes()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    # A temp name of its own (one per attempt): two writers of a shard never share one.
    temp = location.path(MANIFEST_DIR, f"{manifest_temp_prefix(shard_id)}{uuid.uuid4().hex}.tmp")
    final = location.path(MANIFEST_DIR, manifest_name(shard_id))
    try:
        if location.is_local:
            atomic_write_bytes(final, buffer.getvalue(), temp=temp, exclusive=not replace)
            return
        if not replace and fs.exists(final):  # object stores have no atomic create-if-absent here
            raise FileExistsError(final)
        fs.pipe_file(temp, buffer.getvalue())
        fs.mv(temp, final)
    except FileExistsError:
        raise StoreError(
            f"shard {shard_id} was committed by another writer while this one ran; one writer per shard "
            "(this writer's arrays are left as an uncommitted generation: `lvmae store gc` removes it)"
        ) from None


def read(location: Location, shard_id: str) -> pa.Table:
    """A committed manifest, with its commit record in the schema metadata (`Commit.from_table`)."""
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
    tables = [t.replace_schema_metadata(None) for t in tables]
    if not tables:
        return COLUMNS.empty_table()
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(f"manifests of different shards disagree on a column's type: {exc}") from None
