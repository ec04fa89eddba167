"""Where things live in a store, how each array is encoded, and how a URI becomes a filesystem.

```
<store>/zarr.json                            root group; attribute "lvmae" = identity + schema version
<store>/shards/<shard_id>/<gen>/emb          (n, D)        float16   segment embeddings
<store>/shards/<shard_id>/<gen>/codes        (n, t, h, w)  int16     tokenizer codes  (tokenizer stores only)
<store>/shards/<shard_id>/<gen>/scores       (n, t, h, w)  float16   token scores     (tokenizer stores only)
<store>/shards/<shard_id>/<gen>/importance   (n,)          float32   per-segment importance
<store>/shards/<shard_id>/<gen>/span         (n, 2)        float32   [t_start, t_end) in seconds
<store>/manifest/<shard_id>.parquet          one row per video; names the generation <gen> it commits
```

Shape letters: `n` segments in a shard, `D` embedding width, `(t, h, w)` the tokenizer's token grid.

A **generation** is one commit's arrays: every commit writes a fresh folder that only its own
manifest names, so the manifest rename is the one commit point. Two writers of one shard never touch
each other's files (one manifest wins whole), and an overwrite leaves the committed generation
readable until the new manifest replaces it. Generations no manifest names are garbage: `verify`
lists them, `lvmae store gc` removes them.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import zarr
from fsspec.implementations.local import LocalFileSystem
from zarr.abc.store import Store as ZarrStore
from zarr.codecs import BloscCodec, Crc32cCodec

from lvmae.foundation.errors import LvmaeError

SCHEMA_VERSION = 2
"""Bumped whenever the layout or the manifest columns change in a way old readers cannot read
(2: arrays in generation folders named by the manifest, failure kinds)."""

ROOT_ATTR = "lvmae"
"""The root group attribute holding the store identity; a zarr group without it is not an lvmae store."""

SHARDS_DIR = "shards"
MANIFEST_DIR = "manifest"


class StoreError(LvmaeError):
    """A store is missing, malformed, or asked to do something its rules forbid; the message says which
    store, shard, video or file."""


class NoStore(StoreError):
    """Nothing at all is at the store's location (`Store.open`); a writer may create one there."""


@dataclass(frozen=True)
class ArraySpec:
    dtype: np.dtype
    trailing: tuple[str | int, ...]
    """The per-segment shape: a letter for a size the data decides, a number for a fixed size."""

    @property
    def template(self) -> tuple[int | None, ...]:
        """The per-segment shape with None for the sizes the data decides."""
        return tuple(None if isinstance(size, str) else size for size in self.trailing)


ARRAYS: dict[str, ArraySpec] = {
    "emb": ArraySpec(np.dtype("float16"), ("D",)),
    "codes": ArraySpec(np.dtype("int16"), ("t", "h", "w")),
    "scores": ArraySpec(np.dtype("float16"), ("t", "h", "w")),
    "importance": ArraySpec(np.dtype("float32"), ()),
    "span": ArraySpec(np.dtype("float32"), (2,)),
}
TOKEN_ARRAYS = ("codes", "scores")
"""Arrays a store has only when its identity names a tokenizer."""


def array_names(has_tokenizer: bool) -> tuple[str, ...]:
    return tuple(name for name in ARRAYS if has_tokenizer or name not in TOKEN_ARRAYS)


# Chunking. A zarr inner chunk is the unit that is read and decompressed; the zarr shard (here one per
# array per store shard, i.e. a single data file) is the unit that is written. A window decompresses
# every compressed chunk it touches whole (chunks stored uncompressed are copied row by row), so chunks
# of ~2 MiB keep both that over-read at the window's two ends and the per-chunk overhead small (see the
# README's store benchmark).
CHUNK_BYTES = 2 << 20
MIN_CHUNK_ROWS = 256
MAX_CHUNK_ROWS = 16384


def chunk_rows(row_bytes: int, n: int) -> int:
    """Rows per inner chunk: the power of two nearest to `CHUNK_BYTES` of rows, within the bounds, and
    no more than the array has (at least one: zarr needs a non-empty chunk)."""
    rows = 1 << max(0, round(np.log2(CHUNK_BYTES / row_bytes)))
    rows = min(max(rows, MIN_CHUNK_ROWS), MAX_CHUNK_ROWS)
    return max(1, min(rows, n))


def array_encoding(shape: tuple[int, ...], dtype: np.dtype) -> dict[str, Any]:
    """`create_array` keywords for one array of a shard: chunked along segments only, one zarr shard."""
    n, trailing = shape[0], tuple(shape[1:])
    rows = chunk_rows(int(np.prod(trailing, dtype=np.int64)) * dtype.itemsize, n)
    shard_rows = -(-n // rows) * rows if n else rows
    return {
        "chunks": (rows, *trailing),
        "shards": (shard_rows, *trailing),
        # lz4 without byte shuffle: on the demo's toy-world features the store is about a fifth larger
        # than with shuffle (scores compress less), but embeddings and scores read 2 to 3 times faster
        # (codes about as fast), and chunks that do not compress are stored as they are and read by
        # plain copies (README, "Store"). The
        # crc32c lets `verify` and readers catch a corrupted chunk, which blosc alone does not notice
        # when it stored the bytes uncompressed.
        "compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle"), Crc32cCodec()],
    }


_SHARD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def check_shard_id(shard_id: Any) -> str:
    if not isinstance(shard_id, str) or not _SHARD_ID.fullmatch(shard_id):
        raise StoreError(
            f"shard id {shard_id!r} is not usable: use letters, digits, '_' and '-' "
            "(first a letter or digit), e.g. '000003'"
        )
    return shard_id


def new_generation() -> str:
    """A fresh generation name: never the same twice, and in commit order when sorted (the time first)."""
    return f"g{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


def shard_path(shard_id: str, generation: str | None = None, name: str | None = None) -> str:
    """A shard's folder inside the store, one of its generations, or an array of one."""
    parts = [SHARDS_DIR, shard_id] + ([generation] if generation else []) + ([name] if name else [])
    return "/".join(parts)


# What the store itself writes, and so all that a reader will decode: anything else (a zarr v2 array,
# a filter, another compressor) is refused before zarr sees it, so that a crafted store cannot make a
# reader run a codec such as numcodecs' pickle.
ALLOWED_CODECS = frozenset({"sharding_indexed", "bytes", "blosc", "crc32c"})


def check_array_metadata(meta: Any, where: str) -> None:
    """Raise StoreError unless `meta` (an array's zarr.json) is a zarr v3 array whose codecs are all
    ones this store writes."""
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        raise StoreError(f"{where}: not a zarr v3 array as lvmae writes them; refusing to read it")
    if meta.get("storage_transformers"):
        raise StoreError(f"{where}: has storage transformers, which lvmae never writes; refusing to read it")

    def names(codecs: Any) -> list[str]:
        found = []
        for codec in codecs or []:
            name = codec.get("name", "?") if isinstance(codec, dict) else str(codec)
            found.append(name)
            if isinstance(codec, dict) and isinstance(codec.get("configuration"), dict):
                config = codec["configuration"]
                found += names(config.get("codecs")) + names(config.get("index_codecs"))
        return found

    foreign = sorted(set(names(meta.get("codecs"))) - ALLOWED_CODECS)
    if foreign:
        raise StoreError(f"{where}: uses codecs {foreign} that lvmae never writes; refusing to read it")


def manifest_name(shard_id: str) -> str:
    return f"{shard_id}.parquet"


def manifest_temp_prefix(shard_id: str) -> str:
    # Hidden names: listing committed shards ignores them, and so do pyarrow datasets read over the folder.
    return f".{shard_id}.parquet."


@dataclass
class Location:
    """A store's place: the fsspec filesystem and root path (for manifests and listings) and the zarr
    store over the same place (for arrays)."""

    uri: str
    fs: fsspec.AbstractFileSystem
    root: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, uri: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> Location:
        uri = str(uri)
        options = dict(storage_options or {})
        try:
            fs, root = fsspec.core.url_to_fs(uri, **options)
        except (ImportError, ValueError) as exc:  # an unknown protocol, or its fsspec package is missing
            raise StoreError(f"cannot open store {uri}: {exc}") from None
        return cls(uri=uri, fs=fs, root=root.rstrip("/") or "/", storage_options=options)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def zarr_store(self, *, read_only: bool) -> ZarrStore:
        # zarr's LocalStore writes every file through a temp file + rename, so a killed writer never
        # leaves a truncated zarr.json behind; fsspec's local filesystem does not. Other URIs go
        # through fsspec.
        if self.is_local:
            return zarr.storage.LocalStore(self.root, read_only=read_only)
        return zarr.storage.FsspecStore.from_url(self.uri, storage_options=self.storage_options, read_only=read_only)

    def entries(self, *parts: str) -> dict[str, dict[str, Any]]:
        """What is directly under a folder of the store, by name, with the filesystem's info on each
        (size, modification stamp, ...); empty when the folder does not exist."""
        path = self.path(*parts)
        self.fs.invalidate_cache(path)  # object-store listings are cached; a commit may have happened since
        try:
            infos = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return {}
        return {info["name"].rstrip("/").rsplit("/", 1)[-1]: info for info in infos}

    def listdir(self, *parts: str) -> list[str]:
        return sorted(self.entries(*parts))
