"""Checking a store: every committed shard readable and consistent with its manifest; leftovers listed.

Problems make a store unfit to read; each is a record of its shard, the array (or None for the
manifest) and what is wrong, which the CLI formats. Orphans are what writers that died before
committing left behind (shard folders without a manifest, temp files). Readers never see them and
re-running the shard replaces them, so they are listed but are not problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import zarr

from lvmae.foundation.progress import bar
from lvmae.store import manifest
from lvmae.store.garbage import find_garbage
from lvmae.store.identity import StoreIdentity
from lvmae.store.layout import ARRAYS, Location, StoreError, array_names
from lvmae.store.manifest import Commit

READ_BLOCK_BYTES = 64 << 20
"""Verify reads each array in blocks of about this many bytes, so memory stays bounded."""


class VerifiedStore(Protocol):
    """What verify reads of a store (`store.Store` is one)."""

    location: Location
    identity: StoreIdentity

    @property
    def uri(self) -> str: ...

    def committed_shards(self) -> set[str]: ...

    def commit_of(self, shard_id: str) -> Commit: ...

    def shard_array(self, shard_id: str, name: str) -> zarr.Array: ...

    def read_rows(self, shard_id: str, name: str, start: int, stop: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Problem:
    shard: str
    array: str | None  # None: the manifest, or the shard as a whole
    message: str

    def __str__(self) -> str:
        return f"shard {self.shard}: {self.message}"


@dataclass
class VerifyReport:
    uri: str
    shards: int = 0
    videos: int = 0
    segments: int = 0
    problems: list[Problem] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    """Paths relative to the store root, each with what it is."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem_shards(self) -> list[str]:
        return sorted({problem.shard for problem in self.problems})


def verify(store: VerifiedStore) -> VerifyReport:
    report = VerifyReport(uri=store.uri)
    committed = sorted(store.committed_shards())
    ok_videos: dict[str, str] = {}  # video id -> shard that has it
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}  # array -> (per-segment shape, shard)
    for shard_id in bar(committed, desc="verify", unit="shard"):
        report.problems += _check_shard(store, shard_id, ok_videos, shapes, report)
        report.shards += 1
    generations = {}
    for shard_id in committed:
        try:
            generations[shard_id] = store.commit_of(shard_id).generation
        except StoreError:
            continue  # its manifest is reported above; its files are not listed as garbage
    report.orphans = [str(g) for g in find_garbage(store.location, generations)]
    return report


def _check_shard(
    store: VerifiedStore,
    shard_id: str,
    ok_videos: dict[str, str],
    shapes: dict[str, tuple[tuple[int, ...], str]],
    report: VerifyReport,
) -> list[Problem]:
    def problem(message: str, array: str | None = None) -> Problem:
        return Problem(shard_id, array, message)

    try:
        table = manifest.read(store.location, shard_id)
    except StoreError as exc:
        return [problem(str(exc).removeprefix(f"shard {shard_id}: "))]
    missing = [name for name in manifest.COLUMNS.names if name not in table.column_names]
    if missing:
        return [problem(f"manifest lacks columns {missing}")]
    problems: list[Problem] = []
    rows = table.select(manifest.COLUMNS.names).to_pylist()
    report.videos += len(rows)
    total = 0
    for row in sorted(rows, key=lambda r: (r["status"] != "ok", r["row_start"])):
        video = row["video_id"]
        if row["shard_id"] != shard_id:
            problems.append(problem(f"video {video!r}: manifest row names shard {row['shard_id']!r}"))
        if row["status"] not in manifest.STATUSES:
            problems.append(problem(f"video {video!r}: status {row['status']!r} is not one of {manifest.STATUSES}"))
        elif row["status"] == "failed":
            if row["n_segments"] != 0:
                problems.append(problem(f"video {video!r} failed but claims {row['n_segments']} segments"))
            continue
        # Ok videos fill the shard's rows one after another, in row order.
        if row["row_start"] != total or row["n_segments"] < 1:
            problems.append(
                problem(
                    f"video {video!r}: rows [{row['row_start']}, +{row['n_segments']}) do not "
                    f"follow the previous video's end at row {total}"
                )
            )
        total = max(total, row["row_start"] + row["n_segments"])
        if video in ok_videos:
            problems.append(problem(f"video {video!r} is also committed in shard {ok_videos[video]}"))
        ok_videos.setdefault(video, shard_id)
    report.segments += total
    if total:
        for name in array_names(store.identity.has_tokenizer):
            message = _check_array(store, shard_id, name, total, shapes)
            if message:
                problems.append(problem(message, name))
    return problems


def _check_array(
    store: VerifiedStore, shard_id: str, name: str, total: int, shapes: dict[str, tuple[tuple[int, ...], str]]
) -> str | None:
    """What is wrong with one array of a shard, or None."""
    try:
        array = store.shard_array(shard_id, name)
    except StoreError as exc:
        return str(exc).removeprefix(f"shard {shard_id}: ")
    spec = ARRAYS[name]
    if array.shape[0] != total:
        return f"{name} has {array.shape[0]} rows; the manifest's ok videos have {total} segments"
    if array.dtype != spec.dtype:
        return f"{name} is {array.dtype}; expected {spec.dtype}"
    per_segment = tuple(array.shape[1:])
    template = spec.template
    if len(per_segment) != len(template) or any(
        want is not None and got != want for got, want in zip(per_segment, template)
    ):
        return f"{name} rows have shape {per_segment}; expected {spec.trailing}"
    seen, where = shapes.setdefault(name, (per_segment, shard_id))
    if seen != per_segment:
        return f"{name} rows have shape {per_segment} but shard {where}'s have {seen}"
    row_bytes = int(np.prod(per_segment, dtype=np.int64)) * spec.dtype.itemsize
    step = max(1, READ_BLOCK_BYTES // row_bytes // array.chunks[0]) * array.chunks[0]
    for start in range(0, total, step):
        stop = min(start + step, total)
        try:
            block = np.asarray(array[start:stop])
            # Readers go through store.direct, not zarr: both must give the same bytes.
            same = store.read_rows(shard_id, name, start, stop).tobytes() == block.tobytes()
        # Any failure here (a checksum mismatch, a truncated file, a codec error) is what verify exists
        # to report, whatever its type.
        except Exception as exc:  # noqa: BLE001
            return f"{name} rows [{start}, {stop}) are unreadable: {exc}"
        if not same:
            return (
                f"{name} rows [{start}, {stop}) read differently through zarr and through the store's "
                "direct reader (store.direct)"
            )
    return None
