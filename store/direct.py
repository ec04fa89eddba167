"""Row reads straight from the store's zarr shard files: the fast path of `Store.sequence` and
`Store.iter_embeddings`.

The files are ordinary zarr v3 (zarr writes them, `verify` reads them through zarr), but reading a
window through zarr-python costs about a millisecond of asyncio per array plus two copies of every
chunk, which kept window reads near a tenth of a memmap's rate. The layout this store writes is simple
enough to read directly: each array of a store shard is one zarr shard, its inner chunks split the
segment axis only, and an inner chunk is `bytes` (little endian) → blosc → crc32c. So a window
[start, stop) touches a run of consecutive chunks; each one's (offset, length) comes from the shard
index at the end of the file, its crc32c is checked, and blosc decompresses it straight into the rows
of the output it covers (the chunks at the two ends through a scratch buffer); a chunk blosc stored
uncompressed is copied row by row, only the rows wanted. Local files are memory-mapped, so a chunk is
read from the page cache without a copy, and its crc32c is checked the first time this reader reads
it (the store never rewrites a file in place); other fsspec filesystems fetch the byte range of each
chunk, checked on every read.

`RowReader.open` returns None for any encoding other than that (other codecs, chunks that split a
trailing axis, a zarr shard index at the start, ...): `Store` then reads through zarr, which handles
them all.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numcodecs.blosc
import numpy as np

from lvmae.store.layout import Location, StoreError

_MISSING = np.uint64(2**64 - 1)  # the shard index's (offset, length) of a chunk that was never written
_BLOSC_MEMCPYED = 0x02  # blosc header flag: the data follow the header uncompressed and unshuffled


@dataclass(frozen=True)
class _Encoding:
    """What a RowReader needs from an array's zarr.json."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fill_value: Any
    shard_rows: int  # rows per zarr shard (one data file)
    chunk_rows: int  # rows per inner chunk
    separator: str  # chunk key separator
    blosc: bool
    crc: bool  # inner chunks end in a crc32c
    index_crc: bool

    @property
    def chunks_per_shard(self) -> int:
        return self.shard_rows // self.chunk_rows


def _named(codec: Any) -> tuple[str, dict]:
    if not isinstance(codec, dict):
        return "", {}
    return codec.get("name", ""), codec.get("configuration") or {}


def _encoding(meta: dict) -> _Encoding | None:
    """The encoding of an array's metadata if RowReader can read it, else None."""
    try:
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "array" or meta.get("storage_transformers"):
            return None
        shape = tuple(int(s) for s in meta["shape"])
        dtype = np.dtype(meta["data_type"])
        if not shape or dtype.kind not in "biuf":
            return None
        grid_name, grid = _named(meta["chunk_grid"])
        key_name, key = _named(meta["chunk_key_encoding"])
        shard_shape = tuple(int(s) for s in grid["chunk_shape"])
        codecs = meta["codecs"]
        if grid_name != "regular" or key_name != "default" or len(codecs) != 1:
            return None
        sharding_name, sharding = _named(codecs[0])
        inner_shape = tuple(int(s) for s in sharding["chunk_shape"])
        if sharding_name != "sharding_indexed" or sharding.get("index_location", "end") != "end":
            return None
        # Chunks and shards must split the first axis only, so that a chunk's rows are contiguous.
        if shard_shape[1:] != shape[1:] or inner_shape[1:] != shape[1:] or shard_shape[0] % inner_shape[0]:
            return None
        inner = [_named(c) for c in sharding["codecs"]]
        index = [_named(c) for c in sharding["index_codecs"]]
        little = {"endian": "little"}
        if not inner or inner[0][0] != "bytes" or (dtype.itemsize > 1 and inner[0][1] != little):
            return None
        rest = [name for name, _ in inner[1:]]
        if rest not in ([], ["blosc"], ["crc32c"], ["blosc", "crc32c"]):
            return None
        if index[0] != ("bytes", little) or [name for name, _ in index[1:]] not in ([], ["crc32c"]):
            return None
        fill = meta.get("fill_value", 0)
        if not isinstance(fill, (int, float)):  # "NaN", "Infinity" and hex strings: left to zarr
            return None
        return _Encoding(
            shape=shape,
            dtype=dtype.newbyteorder("<"),
            fill_value=fill,
            shard_rows=shard_shape[0],
            chunk_rows=inner_shape[0],
            separator=key.get("separator", "/"),
            blosc="blosc" in rest,
            crc="crc32c" in rest,
            index_crc=len(index) == 2,
        )
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None


@dataclass(frozen=True)
class _ChunkName:
    """How errors name a chunk; formatted only when one is raised."""

    chunk: int
    rows: int
    path: str

    def __str__(self) -> str:
        first = self.chunk * self.rows
        return f"chunk {self.chunk} (rows {first}-{first + self.rows - 1}) of {self.path}"


class _Shard:
    """One zarr shard file: its chunk index and a way to fetch byte ranges of it."""

    def __init__(self, reader: RowReader, number: int):
        self.reader = reader
        enc = reader.encoding
        key = enc.separator.join(["c", str(number)] + ["0"] * (len(enc.shape) - 1))
        self.path = reader.location.path(reader.path, key)
        self.n_chunks = enc.chunks_per_shard
        self._map: mmap.mmap | None = None
        self.size = 0
        self.index: np.ndarray | None = None  # (n_chunks, 2) uint64 offset, length; None: no file
        # Which chunks of a mapped file have passed their checksum and decoded: the map shows one
        # unchanging file (the store never rewrites a file in place), so each chunk is checked once.
        # None for fetched files, whose every read is checked.
        self.checked: np.ndarray | None = None
        self._load_index()

    def _load_index(self) -> None:
        loc = self.reader.location
        try:
            if loc.is_local:
                with open(self.path, "rb") as f:
                    self.size = os.fstat(f.fileno()).st_size
                    if self.size:
                        self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                        self.checked = np.zeros(self.n_chunks, bool)
            else:
                self.size = int(loc.fs.size(self.path))
        except FileNotFoundError:
            return  # every chunk of this shard is the fill value: zarr writes no file then
        n_bytes = self.n_chunks * 16 + (4 if self.reader.encoding.index_crc else 0)
        if self.size < n_bytes:
            raise self.reader.error(
                f"zarr shard file {self.path} is {self.size} bytes, shorter than its "
                f"{n_bytes}-byte chunk index (truncated?)"
            )
        raw = self.fetch(self.size - n_bytes, self.size)
        if self.reader.encoding.index_crc:
            self.reader.check_crc(raw, f"the chunk index of {self.path}")
        self.index = np.frombuffer(raw, "<u8", count=self.n_chunks * 2).reshape(self.n_chunks, 2)

    def fetch(self, start: int, stop: int) -> np.ndarray:
        """Bytes [start, stop) of the file as a read-only uint8 array (a view of the map when local)."""
        if self._map is not None:
            return np.frombuffer(self._map, np.uint8, count=stop - start, offset=start)
        return np.frombuffer(self.reader.location.fs.cat_file(self.path, start=start, end=stop), np.uint8)

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view is still alive somewhere; the map closes when it goes
                pass
            self._map = None


class RowReader:
    """Reads rows [start, stop) of one stored array (see the module docstring). Make one with `open`."""

    def __init__(self, location: Location, path: str, encoding: _Encoding, label: str):
        self.location = location
        self.path = path
        self.encoding = encoding
        self.label = label
        self.shape = encoding.shape
        self._row_bytes = int(np.prod(encoding.shape[1:], dtype=np.int64)) * encoding.dtype.itemsize
        self._shards: dict[int, _Shard] = {}

    @classmethod
    def open(cls, location: Location, path: str, label: str) -> RowReader | None:
        """A reader of the array at `path` (relative to the store root), or None when its encoding is not
        one this reader handles or its metadata cannot be read (zarr then reads it, or says why not).
        `label` starts the reader's error messages ("shard 000003: emb")."""
        try:
            meta = json.loads(location.fs.cat_file(location.path(path, "zarr.json")))
        except (OSError, ValueError):
            return None
        encoding = _encoding(meta) if isinstance(meta, dict) else None
        return None if encoding is None else cls(location, path, encoding, label)

    def error(self, message: str) -> StoreError:
        return StoreError(f"{self.label}: {message}")

    def check_crc(self, data: np.ndarray, what: object) -> np.ndarray:
        """`data` without its trailing crc32c, after checking it."""
        if len(data) < 4:
            raise self.error(f"{what} is {len(data)} bytes, too short to hold its checksum (corrupted)")
        body = data[:-4]
        if google_crc32c.value(body) != int.from_bytes(data[-4:].tobytes(), "little"):
            raise self.error(f"{what} fails its crc32c checksum (corrupted)")
        return body

    def _shard(self, number: int) -> _Shard:
        shard = self._shards.get(number)
        if shard is None:
            shard = self._shards[number] = _Shard(self, number)
        return shard

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a new array; 0 <= start <= stop <= rows is the caller's to check."""
        enc = self.encoding
        out = np.empty((stop - start, *enc.shape[1:]), enc.dtype)
        rows = enc.chunk_rows
        for chunk in range(start // rows, -(-stop // rows)):
            first = chunk * rows
            lo, hi = max(first, start), min(first + rows, stop)  # the rows of this chunk wanted
            target = out[lo - start : hi - start]
            if not self._decode(chunk, lo - first, hi - first, target):
                target[...] = enc.fill_value
        return out

    def _decode(self, chunk: int, lo: int, hi: int, dest: np.ndarray) -> bool:
        """Rows [lo, hi) of inner chunk `chunk` (numbered over the whole array, rows counted within it)
        into `dest`; False when the chunk was never written (it holds the fill value)."""
        enc = self.encoding
        shard, at = self._shard(chunk // enc.chunks_per_shard), chunk % enc.chunks_per_shard
        if shard.index is None:
            return False
        offset, length = shard.index[at]
        if offset == _MISSING:
            return False
        what = _ChunkName(chunk, enc.chunk_rows, shard.path)
        if offset + length > shard.size:
            raise self.error(f"{what} lies past the end of its file (truncated?)")
        data: np.ndarray | None = shard.fetch(int(offset), int(offset + length))
        assert data is not None
        if enc.crc:
            data = data[:-4] if shard.checked is not None and shard.checked[at] else self.check_crc(data, what)
        expected = enc.chunk_rows * self._row_bytes
        if enc.blosc:
            # The blosc header (16 bytes): flags at byte 2, uncompressed size at 4-8, compressed size at 12-16.
            header = data[:16].tobytes()
            size, stored = int.from_bytes(header[4:8], "little"), int.from_bytes(header[12:16], "little")
            if len(header) < 16 or stored != len(data) or size != expected:
                raise self.error(
                    f"{what} does not decompress: its blosc header says {size} bytes in {stored}; "
                    f"expected {expected} bytes in {len(data)} (corrupted)"
                )
            if header[2] & _BLOSC_MEMCPYED:
                data = data[16:]  # blosc found nothing to gain and stored the bytes as they are
            else:
                whole = lo == 0 and hi == enc.chunk_rows
                buffer = dest if whole else np.empty((enc.chunk_rows, *enc.shape[1:]), enc.dtype)
                try:
                    numcodecs.blosc.decompress(data, buffer)
                except (RuntimeError, ValueError) as exc:
                    raise self.error(f"{what} does not decompress: {exc} (corrupted)") from None
                if not whole:
                    dest[...] = buffer[lo:hi]
                data = None
        if data is not None:  # the chunk's raw little-endian bytes: copy the rows wanted
            if len(data) != expected:
                raise self.error(f"{what} holds {len(data)} bytes, not {expected} (corrupted)")
            dest.reshape(-1).view(np.uint8)[:] = data[lo * self._row_bytes : hi * self._row_bytes]
        if shard.checked is not None:
            shard.checked[at] = True
        return True


class ReaderCache:
    """Open RowReaders by key, at most `size` of them (least recently used closed first), so that a
    reader of a store of thousands of shards does not hold a memory map of every file."""

    def __init__(self, size: int = 256):
        self.size = size
        self._readers: OrderedDict[Any, RowReader | None] = OrderedDict()
        self._lock = threading.Lock()  # pretraining reads windows from a prefetch thread

    def get(self, key: Any, make: Callable[[], RowReader | None]) -> RowReader | None:
        with self._lock:
            if key in self._readers:
                self._readers.move_to_end(key)
                return self._readers[key]
            reader = self._readers[key] = make()
            while len(self._readers) > self.size:
                _, old = self._readers.popitem(last=False)
                if old is not None:
                    old.close()
            return reader

    def drop(self, keep: Callable[[Any], bool]) -> None:
        """Close the readers whose key `keep` rejects."""
        with self._lock:
            for key in [key for key in self._readers if not keep(key)]:
                reader = self._readers.pop(key)
                if reader is not None:
                    reader.close()
