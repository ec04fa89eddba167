"""Writing one shard: collect videos, then commit data first and the manifest last.

Shape letters as in `store.layout`: `n` segments of a video, `D` embedding width, `(t, h, w)` token grid.

A writer holds its shard in memory until the `with` block ends (about 4 KiB a segment at D=512 with a
3×16×16 token grid), because zarr writes a sharded array efficiently only whole: writing part of a
zarr shard is a read-modify-write of its file.

A commit writes its arrays into a fresh generation folder (`store.layout`), syncs them to disk (local
stores), records the files it wrote and puts the manifest in place: that rename is the only commit
point. Nothing committed is touched before it, so a failed or killed overwrite leaves the previous
shard readable, and two writers of one shard each commit a whole shard of their own (the later
rename wins) or, without `overwrite`, the second is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import zarr

from lvmae.foundation.files import fsync_dir, fsync_file, fsync_tree
from lvmae.store import manifest
from lvmae.store.identity import StoreIdentity
from lvmae.store.layout import (
    ARRAYS,
    SHARDS_DIR,
    Location,
    StoreError,
    array_encoding,
    array_names,
    check_shard_id,
    new_generation,
    shard_path,
)


class ShardHost(Protocol):
    """What a writer needs of the store it writes into; `Store.shard_writer` hands it one."""

    location: Location
    identity: StoreIdentity

    def check_identity_on_storage(self) -> None:
        """Raise StoreError unless the store's root still holds this writer's identity."""

    def check_dims(self, shard_id: str, shapes: dict[str, tuple[int, ...]], listing: manifest.Listing) -> None:
        """Raise StoreError when per-segment shapes differ from the committed shards' (of `listing`)."""

    def forget_shard(self, shard_id: str) -> None:
        """Drop what readers cached about a shard that has just been rewritten."""

    def group(self) -> zarr.Group:
        """The store's root group, writable."""

    def writer_closed(self, shard_id: str) -> None: ...


def _array(value: Any, name: str, video_id: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """`value` as a fresh array of `name`'s stored dtype, checked against `shape` (None: any size)."""
    arr = np.asarray(value)
    if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
        letters = ", ".join(str(size) for size in ("n", *ARRAYS[name].trailing))
        raise StoreError(
            f"video {video_id!r}: {name} has shape {arr.shape}; expected ({letters}) = "
            f"({', '.join('?' if size is None else str(size) for size in shape)})"
        )
    dtype = ARRAYS[name].dtype
    if dtype.kind == "i":
        if arr.dtype.kind not in "iu":
            raise StoreError(f"video {video_id!r}: {name} must be integers; got {arr.dtype}")
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise StoreError(
                f"video {video_id!r}: {name} has values in [{arr.min()}, {arr.max()}], outside "
                f"{dtype}'s [{info.min}, {info.max}]"
            )
    # A copy in the stored dtype: the caller may reuse its buffers before the commit. Overflow to inf in
    # a float16 cast is reported just below, as an error naming the video, not as a numpy warning.
    with np.errstate(over="ignore"):
        out = np.array(arr, dtype=dtype)
    if dtype.kind == "f" and not np.isfinite(out).all():
        raise StoreError(
            f"video {video_id!r}: {name} has values that are not finite as {dtype} (NaN, inf, or too large)"
        )
    return out


def _text(value: Any) -> str:
    """`value` as text parquet can hold: a file name that is not UTF-8 (held by Python with surrogate
    escapes) keeps its undecodable bytes as \\x escapes, shown, not lost in an encoding error."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


class ShardWriter:
    """The only writer of one shard. Use as a context manager (from `Store.shard_writer`): leaving the
    block normally commits, leaving it by an exception commits nothing."""

    def __init__(self, store: ShardHost, shard_id: str, *, overwrite: bool = False, attrs: Mapping | None = None):
        self.store = store
        self.shard_id = check_shard_id(shard_id)
        self.overwrite = overwrite
        self.attrs = dict(attrs or {})  # JSON data kept in the commit record (e.g. what the shard came from)
        self.committed = False
        self.generation: str | None = None  # of the commit, once made
        self._names = array_names(store.identity.has_tokenizer)
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in self._names}
        self._rows: list[dict[str, Any]] = []
        self._extras: list[dict[str, Any]] = []
        self._n = 0
        self._dims: dict[str, tuple[int, ...]] = {}  # per-segment shape of each array, fixed by the first video

    @property
    def n_segments(self) -> int:
        return self._n

    @property
    def n_videos(self) -> int:
        return len(self._rows)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            self.store.writer_closed(self.shard_id)

    # ---------------------------------------------------------------------------------------------

    def _check_video(self, video_id: Any, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        if self.committed:
            raise StoreError(f"shard {self.shard_id}: already committed; open a new writer to add videos")
        if not isinstance(video_id, str) or not video_id:
            raise StoreError(f"shard {self.shard_id}: video_id must be a non-empty string; got {video_id!r}")
        if any(row["video_id"] == video_id for row in self._rows):
            raise StoreError(f"shard {self.shard_id}: video {video_id!r} was already added to this shard")
        extra = dict(extra or {})
        clash = sorted(set(extra) & set(manifest.COLUMNS.names))
        if clash:
            raise StoreError(f"video {video_id!r}: extra columns {clash} clash with the manifest's own columns")
        return extra

    def add_video(
        self,
        *,
        video_id: str,
        uri: str,
        duration: float,
        fps: float,
        emb: Any,
        codes: Any = None,
        scores: Any = None,
        importance: Any,
        span: Any,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Add the segments of one video in time order: `emb (n, D)`, `codes`/`scores (n, t, h, w)` (exactly
        when the store has a tokenizer), `importance (n,)`, `span (n, 2)` seconds; `extra` scalars become
        manifest columns. A video without segments is a failure: record it with `add_failed`."""
        extra = self._check_video(video_id, extra)
        emb_arr = np.asarray(emb)
        n = emb_arr.shape[0] if emb_arr.ndim == 2 else None
        if not n:
            raise StoreError(
                f"video {video_id!r}: emb must be (n, D) with n >= 1 segments; got shape "
                f"{emb_arr.shape} (a video without segments is recorded with add_failed)"
            )
        given = {"emb": emb_arr, "codes": codes, "scores": scores, "importance": importance, "span": span}
        tokenizer = self.store.identity.has_tokenizer
        for name in ("codes", "scores"):
            if (given[name] is None) == tokenizer:
                raise StoreError(
                    f"video {video_id!r}: {name} "
                    + (
                        "is required: the store's identity has a tokenizer"
                        if tokenizer
                        else "given, but the store's identity has no tokenizer"
                    )
                )
        arrays = {}
        for name in self._names:
            trailing = self._dims.get(name, ARRAYS[name].template)
            arrays[name] = _array(given[name], name, video_id, (n, *trailing))
        if arrays.get("codes") is not None and arrays["codes"].shape != arrays["scores"].shape:
            raise StoreError(
                f"video {video_id!r}: codes {arrays['codes'].shape} and scores "
                f"{arrays['scores'].shape} must have the same (n, t, h, w) shape"
            )
        # Only now, with every array checked, is the video taken: a refused video (the caller may record
        # it with add_failed) leaves the writer as it was.
        for name, arr in arrays.items():
            self._dims.setdefault(name, arr.shape[1:])
            self._parts[name].append(arr)
        self._rows.append(
            {
                "video_id": video_id,
                "uri": _text(uri),
                "duration": float(duration),
                "fps": float(fps),
                "n_segments": n,
                "shard_id": self.shard_id,
                "row_start": self._n,
                "status": "ok",
                "error": None,
                "error_kind": None,
            }
        )
        self._extras.append(extra)
        self._n += n

    def add_failed(
        self,
        *,
        video_id: str,
        uri: str,
        error: str,
        kind: str = "permanent",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a video that produced no segments, with the reason and its kind: "permanent" (trying
        again gives the same) or "transient" (I/O, a missing file, memory, a timeout: worth retrying)."""
        if kind not in manifest.ERROR_KINDS:
            raise StoreError(f"video {video_id!r}: failure kind {kind!r} is not one of {manifest.ERROR_KINDS}")
        extra = self._check_video(video_id, extra)
        self._rows.append(
            {
                "video_id": video_id,
                "uri": _text(uri),
                "duration": None,
                "fps": None,
                "n_segments": 0,
                "shard_id": self.shard_id,
                "row_start": self._n,
                "status": "failed",
                "error": _text(error),
                "error_kind": kind,
            }
        )
        self._extras.append(extra)

    # ---------------------------------------------------------------------------------------------

    def _commit(self) -> None:
        """Data first, manifest last; every check that can refuse runs before anything is written."""
        store, sid = self.store, self.shard_id
        listing = manifest.committed(store.location)  # the one listing of manifest/ a commit makes
        # Re-read the root identity: another job may have created or replaced the store since this
        # writer opened it, and a shard must never land under an identity it was not made with.
        store.check_identity_on_storage()
        shapes = {name: parts[0].shape[1:] for name, parts in self._parts.items()} if self._n else {}
        if shapes:
            store.check_dims(sid, shapes, listing)
        table = manifest.build_table(sid, self._rows, self._extras)
        if sid in listing and not self.overwrite:
            raise StoreError(f"shard {sid} is already committed; pass overwrite=True to replace it")
        generation = new_generation()
        commit = manifest.Commit(generation, {name: list(s) for name, s in shapes.items()}, attrs=self.attrs)
        try:
            self._write_arrays(generation, commit)
            manifest.write(store.location, sid, table, commit, replace=self.overwrite)
        except OSError as exc:  # a full disk, a lost mount: nothing committed changed
            raise StoreError(
                f"shard {sid}: the commit failed ({exc}); what the store had committed is unchanged, and the "
                f"half-written generation {generation} is garbage that `lvmae store gc` removes"
            ) from None
        store.forget_shard(sid)
        self.committed, self.generation = True, generation

    def _write_arrays(self, generation: str, commit: manifest.Commit) -> None:
        location = self.store.location
        group = self.store.group()
        group.create_group(shard_path(self.shard_id, generation))
        for name, parts in self._parts.items():
            if not parts:
                continue
            data = np.concatenate(parts)
            path = shard_path(self.shard_id, generation, name)
            group.create_array(path, data=data, **array_encoding(data.shape, data.dtype))
            self._parts[name] = []  # frees the parts early: peak memory is one array's copy
            commit.files[name] = _files_below(location, path)
        if location.is_local:
            # zarr writes through temp files and renames but never fsyncs: make the generation durable
            # before a manifest can name it.
            fsync_tree(location.path(shard_path(self.shard_id, generation)))
            for group_meta in (shard_path(self.shard_id, name="zarr.json"), f"{SHARDS_DIR}/zarr.json"):
                fsync_file(location.path(group_meta))  # the groups zarr made on the way, if it made them
            fsync_dir(location.path(SHARDS_DIR))


def _files_below(location: Location, path: str) -> dict[str, int]:
    """Every file under the array at `path` (relative to it) with its size: what a reader checks."""
    root = location.path(path)
    found = location.fs.find(root, detail=True)
    return {name[len(root) + 1 :]: int(info["size"]) for name, info in found.items() if info.get("type") != "directory"}
