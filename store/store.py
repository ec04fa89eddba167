"""`Store`: open or create a store, write shards through `ShardWriter`, read what is committed.

Shape letters: `T` segments in a sequence or window, `n` segments in a batch, `D` embedding width,
`(t, h, w)` the token grid.

Readers see committed shards only (those with a manifest). A `Store` caches manifests by file
signature and sequence lookups by video id; it re-reads when a video id is not found, so a reader
opened during extraction sees shards committed after it opened.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zarr
from zarr.errors import ArrayNotFoundError, BaseZarrError, ContainsGroupError

from lvmae.store import manifest
from lvmae.store.direct import ReaderCache, RowReader
from lvmae.store.garbage import Garbage, collect, find_garbage
from lvmae.store.identity import StoreIdentity, mismatch_error
from lvmae.store.layout import (
    ARRAYS,
    MANIFEST_DIR,
    ROOT_ATTR,
    SHARDS_DIR,
    Location,
    NoStore,
    StoreError,
    array_names,
    check_array_metadata,
    check_shard_id,
    shard_path,
)
from lvmae.store.summary import StoreSummary, summarize
from lvmae.store.verify import VerifyReport, verify
from lvmae.store.writer import ShardWriter

STATUSES = manifest.STATUSES


@dataclass
class Segments:
    """Segments of one video in time order (or a window of them), in their stored dtypes. Arrays the
    store does not have (no tokenizer) or that were not asked for are None."""

    emb: np.ndarray | None  # (T, D) float16
    codes: np.ndarray | None  # (T, t, h, w) int16
    scores: np.ndarray | None  # (T, t, h, w) float16
    importance: np.ndarray | None  # (T,) float32
    span: np.ndarray | None  # (T, 2) float32 seconds [t_start, t_end)

    def get(self, name: str) -> np.ndarray:
        """An array that was read; a StoreError when it was not asked for or the store has none."""
        value = getattr(self, name)
        if value is None:
            raise StoreError(f"segments: no {name!r} array was read (not asked for, or the store has none)")
        return value


@dataclass
class EmbeddingBatch:
    """Up to `batch_size` consecutive segments of one shard, with the ids that name each row."""

    emb: np.ndarray  # (n, D) float16
    video_id: np.ndarray  # (n,) str
    row: np.ndarray  # (n,) int64: the segment's index within its video
    span: np.ndarray  # (n, 2) float32 seconds


@dataclass(frozen=True)
class Dims:
    """Per-segment sizes, the same in every shard of a store; None while no shard has segments."""

    emb: int | None  # D
    token_grid: tuple[int, int, int] | None  # (t, h, w); None also for stores without a tokenizer


class _Entry(NamedTuple):
    shard_id: str
    row_start: int
    n_segments: int
    status: str
    error: str | None


class Store:
    """A feature store at a local path or fsspec URI. Make one with `Store.create` (to write) or
    `Store.open` (to read)."""

    def __init__(self, location: Location, identity: StoreIdentity, *, writable: bool):
        self.location = location
        self.identity = identity
        self.writable = writable
        self._names = array_names(identity.has_tokenizer)
        self._read_store = location.zarr_store(read_only=True)
        self._write_group: zarr.Group | None = None
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._readers = ReaderCache()  # direct row readers (store.direct), by (shard id, array name)
        # shard id -> (manifest file signature, rows, commit record)
        self._manifests: dict[str, tuple[Any, pa.Table, manifest.Commit]] = {}
        self._files_checked: set[tuple[str, str, str]] = set()  # (shard, generation, array) found whole
        self._index: dict[str, list[_Entry]] | None = None
        self._dims: Dims | None = None
        self._open_writers: set[str] = set()

    @property
    def uri(self) -> str:
        return self.location.uri

    def __repr__(self) -> str:
        return f"Store({self.uri!r}, {'writable' if self.writable else 'read-only'})"

    # --- opening ----------------------------------------------------------------------------------

    @staticmethod
    def _root_group(location: Location, zarr_store: Any) -> zarr.Group | None:
        """The root group, or None when there is none; anything else there is a StoreError."""
        try:
            return zarr.open_group(zarr_store, mode="r")
        except FileNotFoundError:  # zarr's GroupNotFoundError, or a local root folder that does not exist
            return None
        except (BaseZarrError, ValueError) as exc:
            raise StoreError(
                f"{location.uri} is not an lvmae store: its root is not a readable zarr group ({exc})"
            ) from None

    @classmethod
    def create(
        cls, uri: str | os.PathLike, identity: StoreIdentity, *, storage_options: dict[str, Any] | None = None
    ) -> Store:
        """Open the store at `uri` for writing, creating it when absent. A store made with another
        identity is refused; the error shows both."""
        if not isinstance(identity, StoreIdentity):
            raise StoreError(f"Store.create needs a StoreIdentity; got {type(identity).__name__}")
        location = Location.parse(uri, storage_options)
        zarr_store = location.zarr_store(read_only=False)
        group = cls._root_group(location, zarr_store)
        if group is None:
            cls._refuse_foreign_folder(location)
            try:
                group = zarr.create_group(zarr_store, attributes={ROOT_ATTR: identity.to_attrs()})
            except ContainsGroupError:  # another process created it between our look and our write
                group = zarr.open_group(zarr_store, mode="r")
        stored = StoreIdentity.from_attrs(group.attrs.asdict(), f"store {location.uri}")
        if stored != identity:
            raise mismatch_error(f"store {location.uri}", stored, identity)
        return cls(location, stored, writable=True)

    @classmethod
    def open(cls, uri: str | os.PathLike, *, storage_options: dict[str, Any] | None = None) -> Store:
        """Open an existing store for reading."""
        location = Location.parse(uri, storage_options)
        group = cls._root_group(location, location.zarr_store(read_only=True))
        if group is None:
            if location.fs.exists(location.root):
                raise StoreError(f"{location.uri} is not an lvmae store: there is no zarr group (zarr.json) there")
            raise NoStore(f"no store at {location.uri}: nothing there")
        return cls(location, StoreIdentity.from_attrs(group.attrs.asdict(), f"store {location.uri}"), writable=False)

    @staticmethod
    def _refuse_foreign_folder(location: Location) -> None:
        """Creating a store puts files into the folder; refuse folders that hold anything else, and the
        remains of a store whose root (its identity) is gone."""
        own = {"zarr.json", SHARDS_DIR, MANIFEST_DIR}
        # zarr's local store writes through "<name>.<uuid>.partial" temp files; a concurrent creator may
        # have one in flight.
        foreign = [name for name in location.listdir() if name not in own and not name.endswith(".partial")]
        if foreign:
            raise StoreError(
                f"{location.uri} already holds other files ({', '.join(foreign[:5])}); refusing to "
                "create a store inside it: name a new or empty folder"
            )
        if manifest.committed_shard_ids(location):
            raise StoreError(
                f"{location.uri} has committed shards but no root zarr.json: the store's identity "
                "is lost; refusing to adopt its shards under a new identity"
            )

    def _check_identity_on_storage(self) -> None:
        group = self._root_group(self.location, self._read_store)
        if group is None:
            raise StoreError(f"store {self.uri}: the root group is gone (store deleted while writing?)")
        stored = StoreIdentity.from_attrs(group.attrs.asdict(), f"store {self.uri}")
        if stored != self.identity:
            raise mismatch_error(f"store {self.uri}", stored, self.identity)

    # --- writing ------------------------------------------------------------------------------------

    def shard_writer(self, shard_id: str, *, overwrite: bool = False, attrs: dict | None = None) -> ShardWriter:
        """The writer of one shard, as a context manager. A committed shard is refused unless
        `overwrite=True` (the new generation then replaces it at the commit, never before); `attrs`
        (JSON data) is kept in the commit record (`commit_of(shard_id).attrs`)."""
        if not self.writable:
            raise StoreError(
                f"store {self.uri} was opened read-only (Store.open); use Store.create(uri, identity) to write shards"
            )
        check_shard_id(shard_id)
        if shard_id in self._open_writers:
            raise StoreError(f"shard {shard_id} already has an open writer in this process; one writer per shard")
        if not overwrite and shard_id in self.committed_shards():
            raise StoreError(f"shard {shard_id} is already committed in {self.uri}; pass overwrite=True to replace it")
        self._open_writers.add(shard_id)
        return ShardWriter(_WriterHost(self), shard_id, overwrite=overwrite, attrs=attrs)

    def _writer_closed(self, shard_id: str) -> None:
        self._open_writers.discard(shard_id)

    def _writable_group(self) -> zarr.Group:
        if self._write_group is None:
            self._write_group = zarr.open_group(self.location.zarr_store(read_only=False), mode="r+")
        return self._write_group

    def _forget_shard(self, shard_id: str) -> None:
        """Drop what is cached about a shard that was rewritten."""
        for name in self._names:
            self._arrays.pop((shard_id, name), None)
        self._readers.drop(lambda key: key[0] != shard_id)
        self._manifests.pop(shard_id, None)
        self._index = None
        self._dims = None

    def _committed_shapes(
        self, listing: manifest.Listing | None = None, exclude: str | None = None
    ) -> tuple[str, dict[str, tuple[int, ...]]] | None:
        """The first committed shard that has arrays (a shard of failed videos only has none) and the
        per-segment shape of each of its arrays, from the commit records; None while no shard has
        segments."""
        listing = self._refresh(listing)
        for shard_id in sorted(set(listing) - {exclude}):
            shapes = self._manifests[shard_id][2].shapes
            if shapes:
                return shard_id, {name: tuple(shapes[name]) for name in self._names if name in shapes}
        return None

    def _check_dims(self, shard_id: str, shapes: dict[str, tuple[int, ...]], listing: manifest.Listing) -> None:
        """Refuse a shard whose per-segment shapes differ from the committed shards'."""
        found = self._committed_shapes(listing, exclude=shard_id)
        if found is None:
            return
        other, stored = found
        for name, shape in shapes.items():
            if stored.get(name, shape) != shape:
                letters = ", ".join(map(str, ARRAYS[name].trailing))
                raise StoreError(
                    f"shard {shard_id}: {name} rows have shape ({letters}) = {shape} but committed "
                    f"shard {other}'s have {stored[name]}; all shards of a store share them"
                )

    # --- reading -----------------------------------------------------------------------------------

    def committed_shards(self) -> set[str]:
        """Ids of the shards whose manifest exists."""
        return manifest.committed_shard_ids(self.location)

    def generations(self) -> dict[str, str]:
        """Every committed shard id -> the generation its commit names, as of now: what changes when a
        shard is committed, re-extracted or removed (an index's fingerprint of what it covers)."""
        listing = self._refresh()
        return {shard_id: self._manifests[shard_id][2].generation for shard_id in sorted(listing)}

    def commit_of(self, shard_id: str) -> manifest.Commit:
        """The commit record of a committed shard: its generation, shapes, data files, attributes."""
        if shard_id not in self._manifests:
            self._refresh()
        if shard_id not in self._manifests:
            raise StoreError(f"shard {shard_id} is not committed in {self.uri}")
        return self._manifests[shard_id][2]

    def array_path(self, shard_id: str, name: str) -> str:
        """Where one array of a committed shard lives, relative to the store root."""
        if name not in self._names:
            raise StoreError(f"store {self.uri} has no {name!r} arrays; it has {', '.join(self._names)}")
        return shard_path(shard_id, self.commit_of(shard_id).generation, name)

    def missing_files(self, shard_id: str, name: str) -> list[str]:
        """The data files the commit of a shard wrote for array `name` that are gone or changed size,
        each with what is wrong; empty when the array is whole."""
        commit, path = self.commit_of(shard_id), self.array_path(shard_id, name)
        problems = []
        for rel, size in sorted(commit.files.get(name, {}).items()):
            try:
                found = int(self.location.fs.size(self.location.path(path, rel)))
            except FileNotFoundError:
                problems.append(f"{path}/{rel} is missing (the commit wrote {size} bytes)")
                continue
            if found != size:
                problems.append(f"{path}/{rel} is {found} bytes; the commit wrote {size}")
        return problems

    def _check_files(self, shard_id: str, name: str) -> str:
        """The array's path, once its data files are known to be there (checked once per generation):
        a lost file would otherwise read as fill values, zeros, without a word."""
        path = self.array_path(shard_id, name)
        key = (shard_id, self.commit_of(shard_id).generation, name)
        if key not in self._files_checked:
            problems = self.missing_files(shard_id, name)
            if problems:
                raise StoreError(f"shard {shard_id}: {name}: data lost: {'; '.join(problems)}")
            self._files_checked.add(key)
        return path

    def shard_array(self, shard_id: str, name: str) -> zarr.Array:
        """One array of a committed shard, for code that needs zarr itself (verify, custom readers).
        Only arrays in the encoding this store writes are opened (`layout.check_array_metadata`)."""
        key = (shard_id, name)
        if key not in self._arrays:
            path = self._check_files(shard_id, name)
            try:
                meta = json.loads(self.location.fs.cat_file(self.location.path(path, "zarr.json")))
            except FileNotFoundError:
                v2 = self.location.fs.exists(self.location.path(path, ".zarray"))
                raise StoreError(
                    f"shard {shard_id}: array {path} is "
                    + (
                        "a zarr v2 array, which lvmae never writes; refusing to read it"
                        if v2
                        else "missing (no zarr.json)"
                    )
                ) from None
            except (OSError, ValueError) as exc:
                raise StoreError(f"shard {shard_id}: array {path} is unreadable: {exc}") from None
            check_array_metadata(meta, f"shard {shard_id}: array {path}")
            try:
                self._arrays[key] = zarr.open_array(self._read_store, path=path, mode="r", zarr_format=3)
            except (BaseZarrError, ValueError, OSError) as exc:
                missing = isinstance(exc, ArrayNotFoundError)
                raise StoreError(
                    f"shard {shard_id}: array {path} is {'missing' if missing else f'unreadable: {exc}'}"
                ) from None
        return self._arrays[key]

    def read_rows(self, shard_id: str, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of one array of a committed shard. Read directly from its files
        (`store.direct`) when they have the encoding this store writes, else through zarr."""
        reader = self._readers.get(
            (shard_id, name),
            lambda: RowReader.open(self.location, self._check_files(shard_id, name), f"shard {shard_id}: {name}"),
        )
        if reader is None:
            return np.asarray(self.shard_array(shard_id, name)[start:stop])
        if stop > reader.shape[0]:
            raise StoreError(
                f"shard {shard_id}: rows [{start}, {stop}) of {name} asked for, but it has "
                f"{reader.shape[0]} rows (the manifest and the array disagree; run `lvmae store verify`)"
            )
        return reader.read(start, stop)

    def videos(self, status: str | None = None) -> pa.Table:
        """Every committed manifest row: video_id, uri, duration, fps, n_segments, shard_id, row_start,
        status, error, then the extra columns writers added. `status="ok"` keeps the videos with
        segments, `"failed"` those without; None keeps both."""
        if status is not None and status not in STATUSES:
            raise StoreError(f"video status {status!r} is not one of {', '.join(STATUSES)}")
        table = self._all_videos()
        return table if status is None else table.filter(pc.equal(table["status"], status))

    def _refresh(self, listing: manifest.Listing | None = None) -> manifest.Listing:
        """Bring the cached manifests up to `listing` (default: a fresh listing of manifest/)."""
        listing = manifest.committed(self.location) if listing is None else listing
        for shard_id in set(self._manifests) - set(listing):
            self._forget_shard(shard_id)
        for shard_id, signature in listing.items():
            cached = self._manifests.get(shard_id)
            if cached is None or cached[0] != signature:
                if cached is not None:  # the shard was rewritten since: its files are new ones
                    self._forget_shard(shard_id)
                table = manifest.read(self.location, shard_id)
                commit = manifest.Commit.from_table(table, f"shard {shard_id}")
                self._manifests[shard_id] = (signature, table, commit)
        return listing

    def _all_videos(self) -> pa.Table:
        listing = self._refresh()
        return manifest.concat(self._manifests[shard_id][1] for shard_id in sorted(listing))

    def _build_index(self) -> dict[str, list[_Entry]]:
        columns = self._all_videos().select(list(_Entry._fields) + ["video_id"]).to_pydict()
        index: dict[str, list[_Entry]] = {}
        for i, video_id in enumerate(columns["video_id"]):
            index.setdefault(video_id, []).append(_Entry(*(columns[field][i] for field in _Entry._fields)))
        return index

    def _locate(self, video_id: str) -> _Entry:
        if self._index is None or video_id not in self._index:
            self._index = self._build_index()  # a miss may be a shard committed since the last look
        entries = self._index.get(video_id)
        if entries is None:
            n_shards = len(self._manifests)  # as of the index just built
            if not n_shards:
                raise StoreError(f"store {self.uri} has no committed shards: nothing to read")
            raise StoreError(
                f"no video {video_id!r} in store {self.uri} ({len(self._index)} videos in {n_shards} committed shards)"
            )
        ok = [entry for entry in entries if entry.status == "ok"]
        if not ok:
            raise StoreError(
                f"video {video_id!r} has no segments: it failed in shard {entries[0].shard_id}: {entries[0].error}"
            )
        if len(ok) > 1:
            raise StoreError(
                f"video {video_id!r} is committed in several shards "
                f"({', '.join(entry.shard_id for entry in ok)}); remove the duplicates"
            )
        return ok[0]

    def sequence(
        self, video_id: str, start: int | None = None, stop: int | None = None, *, arrays: Collection[str] | None = None
    ) -> Segments:
        """The segments `[start, stop)` of one video (all of them by default); only the chunks holding
        those rows are read. `arrays` limits what is read, e.g. ("emb", "importance")."""
        entry = self._locate(video_id)
        names = self._names if arrays is None else tuple(arrays)
        unknown = [name for name in names if name not in self._names]
        if unknown:
            raise StoreError(f"store {self.uri} has no {unknown} arrays; it has {', '.join(self._names)}")
        n = entry.n_segments
        start = 0 if start is None else int(start)
        stop = n if stop is None else int(stop)
        if not 0 <= start <= stop <= n:
            raise StoreError(f"video {video_id!r}: window [{start}, {stop}) is outside its {n} segments")
        a, b = entry.row_start + start, entry.row_start + stop
        return Segments(
            **{name: self.read_rows(entry.shard_id, name, a, b) if name in names else None for name in ARRAYS}
        )

    def iter_embeddings(
        self, batch_size: int = 65536, *, shards: Collection[str] | None = None
    ) -> Iterator[EmbeddingBatch]:
        """Every segment of every ok video exactly once, shard by shard, in batches of at most
        `batch_size` rows (a batch never spans two shards); memory stays at one batch. `shards` limits
        it to those committed shards (an index update reads only the shards new to it)."""
        if batch_size < 1:
            raise StoreError(f"batch_size must be at least 1; got {batch_size}")
        ok = self.videos(status="ok")
        if shards is not None:
            unknown = sorted(set(shards) - self.committed_shards())
            if unknown:
                raise StoreError(f"store {self.uri} has no committed shard {', '.join(unknown[:5])}")
            ok = ok.filter(pc.is_in(ok["shard_id"], value_set=pa.array(sorted(shards), ok["shard_id"].type)))
            if ok.num_rows == 0:
                return iter(())
        if ok.num_rows == 0:
            failed = self.videos(status="failed").num_rows
            found = f"no ok videos ({failed} failed)" if self._manifests else "no committed shards"
            raise StoreError(f"store {self.uri} has {found}: no embeddings to stream")
        ok = ok.sort_by([("shard_id", "ascending"), ("row_start", "ascending")])
        return self._embedding_batches(
            ok.select(["shard_id", "video_id", "row_start", "n_segments"]).to_pydict(), batch_size
        )

    def _embedding_batches(self, ok: dict[str, list], batch_size: int) -> Iterator[EmbeddingBatch]:
        for shard_id, group in itertools.groupby(range(len(ok["shard_id"])), key=ok["shard_id"].__getitem__):
            videos = list(group)
            video_ids = np.asarray([ok["video_id"][i] for i in videos])
            starts = np.asarray([ok["row_start"][i] for i in videos])
            total = sum(ok["n_segments"][i] for i in videos)  # ok videos fill rows [0, total) in order
            for a in range(0, total, batch_size):
                b = min(a + batch_size, total)
                rows = np.arange(a, b)
                owner = np.searchsorted(starts, rows, side="right") - 1  # the video each row belongs to
                yield EmbeddingBatch(
                    emb=self.read_rows(shard_id, "emb", a, b),
                    video_id=video_ids[owner],
                    row=rows - starts[owner],
                    span=self.read_rows(shard_id, "span", a, b),
                )

    def dims(self) -> Dims:
        """D and the token grid, from the first committed shard that has segments."""
        if self._dims is None:
            found = self._committed_shapes()
            if found is None:
                return Dims(emb=None, token_grid=None)
            shapes = found[1]
            grid = shapes.get("codes")
            self._dims = Dims(emb=shapes["emb"][0], token_grid=(grid[0], grid[1], grid[2]) if grid else None)
        return self._dims

    def verify(self) -> VerifyReport:
        """Check every committed shard and list orphans; see `store.verify`."""
        return verify(self)

    def garbage(self) -> list[Garbage]:
        """What no commit names (replaced or uncommitted generations, temp files); see `store.garbage`."""
        listing = self._refresh()
        return find_garbage(self.location, {sid: self._manifests[sid][2].generation for sid in listing})

    def collect_garbage(self, *, min_age_s: float = 3600.0) -> tuple[list[Garbage], list[Garbage]]:
        """Remove the garbage untouched for `min_age_s` seconds (a live writer's generation is fresh);
        returns (removed, spared as too recent)."""
        if not self.writable:
            raise StoreError(
                f"store {self.uri} was opened read-only (Store.open); open it with Store.create to collect"
            )
        return collect(self.location, self.garbage(), min_age_s=min_age_s)

    def summary(self) -> StoreSummary:
        """What the store holds: shards, videos ok and failed (with reasons), segments, hours, dims,
        identity; see `store.summary`."""
        return summarize(self)


class _WriterHost:
    """A store as its shard writers see it (`store.writer.ShardHost`): the few store internals a
    commit needs, and nothing else."""

    def __init__(self, store: Store):
        self._store = store
        self.location = store.location
        self.identity = store.identity

    def check_identity_on_storage(self) -> None:
        self._store._check_identity_on_storage()

    def check_dims(self, shard_id: str, shapes: dict[str, tuple[int, ...]], listing: manifest.Listing) -> None:
        self._store._check_dims(shard_id, shapes, listing)

    def forget_shard(self, shard_id: str) -> None:
        self._store._forget_shard(shard_id)

    def group(self) -> zarr.Group:
        return self._store._writable_group()

    def writer_closed(self, shard_id: str) -> None:
        self._store._writer_closed(shard_id)
