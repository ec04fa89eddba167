"""The segment index: a FAISS index over a store's segment embeddings, its id map and its header.

Shape letters: `n` vectors, `D` their width, `m` queries, `h` hits per query.

Built by streaming `Store.iter_embeddings`: one batch of vectors is in memory beside the index, never
all of them. Vectors are L2-normalised float32, so inner product is cosine similarity. FAISS ids are
positions 0…n-1; the id map gives each position's video, segment row and span.

On disk an index is a folder:

    index.json                the header, written last: store URI and identity, the committed shards
                              (and their generations) it covers with their fingerprint, kind, factory
                              and parameters, counts, build time and updates, and each file's size
                              and sha256
    segments-<gen>.faiss      the FAISS index
    ids-<gen>.parquet         position -> video_id, row, t_start, t_end
    .lock                     held by the build writing the folder (`foundation.locks`)

Each write is a new generation whose files the header names, so a reader, or a build killed half way,
sees the old index or the new one whole; files of other generations are removed once a header no
longer names them, never one the header on disk names. One build writes a folder at a time: a second
is refused at once, naming the first and since when. Loading checks each file's size against the
header (a truncated or swapped file is an error, not wrong neighbours), and its sha256 when asked
(`lvmae index info --verify`) or when a killed save left its temp files behind; the next save removes
those. Loading compares the header with the store: an index that misses shards committed
since, or holds shards re-extracted or removed since, is stale, and the error names the command that
updates it. Large indexes are memory-mapped (`faiss.IO_FLAG_MMAP_IFC`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lvmae.foundation.files import atomic_write, atomic_write_json, sha256_file, stale_temp_files
from lvmae.foundation.locks import folder_lock
from lvmae.foundation.progress import bar
from lvmae.foundation.provenance import lvmae_version
from lvmae.foundation.schema import RetrievalConfig
from lvmae.retrieval import kinds, placement
from lvmae.retrieval.errors import RetrievalError, StaleIndex
from lvmae.store import Store

FORMAT = "lvmae-segment-index"
VERSION = 1
HEADER = "index.json"
MMAP_BYTES = 256 << 20
"""Index files at least this large are memory-mapped when loaded (read-only): pages come from the
page cache as queries touch them instead of all being read first."""
BATCH = 16384  # vectors read from the store and added at a time: 32 MiB at D = 512


def normalized(x: np.ndarray) -> np.ndarray:
    """(n, D) any float -> (n, D) float32 with unit rows (a zero row stays zero)."""
    x = np.array(x, dtype=np.float32, copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def store_shards(store: Store) -> dict[str, str]:
    """Committed shard id -> its generation: what an index built now covers."""
    return store.generations()


def store_address(store: Store) -> str:
    """Where the header says the store is: a local store as an absolute path (an index is searched
    from any working directory), any other as its URI."""
    return store.location.root if store.location.is_local else store.uri


def fingerprint(identity: dict, shards: dict[str, str]) -> str:
    """One hash of a store's identity and its committed shards (and their generations)."""
    text = json.dumps({"identity": identity, "shards": dict(sorted(shards.items()))}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class IdMap:
    """What each FAISS position is: a video (as a code into `videos`), a segment row, a span."""

    videos: list[str]  # video ids; `video` holds indices into this list
    video: np.ndarray  # (n,) int32
    row: np.ndarray  # (n,) int32: the segment's row within its video
    t_start: np.ndarray  # (n,) float32 seconds
    t_end: np.ndarray  # (n,) float32 seconds

    @staticmethod
    def empty() -> IdMap:
        return IdMap([], np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.row)

    def video_ids(self, positions: np.ndarray) -> np.ndarray:
        """(h,) positions -> (h,) video id strings."""
        return np.asarray([self.videos[code] for code in self.video[positions]], dtype=object)  # O(h), not O(videos)

    def extend(self, parts: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Append (video_id (n,) str, row (n,), span (n, 2)) batches in order."""
        code = {v: i for i, v in enumerate(self.videos)}
        video, row, start, end = [self.video], [self.row], [self.t_start], [self.t_end]
        for ids, rows, span in parts:
            video.append(np.fromiter((code.setdefault(str(v), len(code)) for v in ids), np.int32, len(ids)))
            row.append(np.asarray(rows, np.int32))
            start.append(np.asarray(span[:, 0], np.float32))
            end.append(np.asarray(span[:, 1], np.float32))
        self.videos = list(code)
        self.video, self.row = np.concatenate(video), np.concatenate(row)
        self.t_start, self.t_end = np.concatenate(start), np.concatenate(end)

    def positions_of(self, video_id: str) -> np.ndarray:
        """Positions of one video's segments, in row order."""
        try:
            code = self.videos.index(video_id)
        except ValueError:
            return np.zeros(0, np.int64)
        found = np.flatnonzero(self.video == code)
        return found[np.argsort(self.row[found], kind="stable")]

    def to_table(self) -> pa.Table:
        return pa.table(
            {
                "video_id": pa.DictionaryArray.from_arrays(pa.array(self.video), pa.array(self.videos, pa.string())),
                "row": pa.array(self.row),
                "t_start": pa.array(self.t_start),
                "t_end": pa.array(self.t_end),
            }
        )

    @staticmethod
    def from_table(table: pa.Table) -> IdMap:
        ids = table["video_id"].combine_chunks()
        if not isinstance(ids, pa.DictionaryArray):
            ids = ids.dictionary_encode()
        return IdMap(
            videos=ids.dictionary.to_pylist(),
            video=ids.indices.to_numpy(zero_copy_only=False).astype(np.int32),
            row=table["row"].to_numpy().astype(np.int32),
            t_start=table["t_start"].to_numpy().astype(np.float32),
            t_end=table["t_end"].to_numpy().astype(np.float32),
        )


@dataclass
class Staleness:
    """How a store moved on since an index was built over it."""

    new: list[str] = field(default_factory=list)  # shards committed since
    changed: list[str] = field(default_factory=list)  # shards re-extracted since (another generation)
    removed: list[str] = field(default_factory=list)  # shards the index covers that the store no longer has
    identity_changed: bool = False

    @property
    def fresh(self) -> bool:
        return not (self.new or self.changed or self.removed or self.identity_changed)

    @property
    def only_new(self) -> bool:
        """Whether adding the new shards brings the index up to date."""
        return not (self.changed or self.removed or self.identity_changed)

    def describe(self) -> str:
        if self.identity_changed:
            return "the store was made anew with another identity (other models or segments)"
        parts = [
            f"{len(ids)} shard{'s' * (len(ids) != 1)} {what} ({', '.join(ids[:3])}{', …' if len(ids) > 3 else ''})"
            for ids, what in (
                (self.new, "committed since"),
                (self.changed, "re-extracted since"),
                (self.removed, "removed since"),
            )
            if ids
        ]
        return "; ".join(parts) or "up to date"


Batches = Callable[[], Iterator[Any]]
"""Makes a fresh pass over the vectors: batches with `emb (b, D)`, `video_id (b,)`, `row (b,)` and
`span (b, 2)`, as `Store.iter_embeddings` yields them."""


def _sample(batches: Iterator[Any], n: int, size: int) -> np.ndarray:
    """About `size` of the n vectors spread evenly (every ceil(n / size)-th), normalised: an IVF-PQ
    training set that sees every shard, in memory at `size` × D floats."""
    stride = max(1, math.ceil(n / size))
    parts, seen = [], 0
    for batch in batches:
        first = (-seen) % stride  # keep rows whose global index is a multiple of stride
        parts.append(normalized(batch.emb[first::stride]))
        seen += len(batch.emb)
    return np.concatenate(parts)


class SegmentIndex:
    """A FAISS index over segment embeddings, with its id map and header. Build one with `build`,
    open one with `load`; `search` answers (m, D) queries with (m, h) scores and positions."""

    def __init__(self, index: Any, ids: IdMap, header: dict, *, folder: Path | None = None, device: str = "cpu"):
        self.cpu_index = index
        self.ids = ids
        self.header = header
        self.folder = folder
        self.index, self.device = placement.to_device(index, header["kind"], device)
        self._search_params: RetrievalConfig | None = None
        self._background: np.ndarray | None = None

    @property
    def kind(self) -> str:
        return self.header["kind"]

    @property
    def dim(self) -> int:
        return int(self.header["dim"])

    @property
    def store_uri(self) -> str:
        return self.header["store"]["uri"]

    @property
    def store_identity(self) -> dict:
        return self.header["store"]["identity"]

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __repr__(self) -> str:
        return f"SegmentIndex({self.kind}, {len(self):,} × {self.dim}, store {self.store_uri!r})"

    # ---- building ------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        store: Store,
        cfg: RetrievalConfig,
        *,
        kind: str | None = None,
        progress: bool = True,
    ) -> SegmentIndex:
        """Index every segment of every ok video the store has committed now. `kind` overrides
        `cfg.index` (auto, flat, hnsw, ivfpq)."""
        shards = store_shards(store)
        n = _count(store, shards)
        d = store.dims().emb
        if not n or d is None:
            raise RetrievalError(f"store {store.uri} has no segments to index (no ok video in a committed shard)")
        store_header = {
            "store": {"uri": store_address(store), "identity": store.identity.to_attrs()},
            "shards": shards,
            "fingerprint": fingerprint(store.identity.to_attrs(), shards),
        }
        return cls.from_batches(
            lambda: store.iter_embeddings(BATCH, shards=list(shards)),
            n,
            d,
            cfg,
            kind=kind,
            header=store_header,
            progress=progress,
        )

    @classmethod
    def from_batches(
        cls,
        batches: Batches,
        n: int,
        d: int,
        cfg: RetrievalConfig,
        *,
        kind: str | None = None,
        header: dict | None = None,
        progress: bool = True,
    ) -> SegmentIndex:
        """Index the n vectors of width d that `batches()` streams (called twice for IVF-PQ: a
        training sample, then the vectors). `header` adds to the header (`build` puts its store there)."""
        started = time.perf_counter()
        kind = kind or cfg.index
        spec = (
            kinds.choose(n, d, cfg.max_index_bytes, hnsw_m=cfg.hnsw_m)
            if kind == "auto"
            else kinds.spec_for(kind, n, d, hnsw_m=cfg.hnsw_m)
        )
        index = new_faiss_index(spec, d, cfg)
        device = placement.resolve(cfg.device)
        if spec.kind == "ivfpq":
            size = min(n, max(cfg.train_sample, 39 * spec.params["lists"]))
            train(index, spec, _sample(batches(), n, size), device)
        built = cls(index, IdMap.empty(), {**_header(spec, d), **(header or {})}, device=device)
        built._add(batches(), n, progress)
        built.header["build_seconds"] = round(time.perf_counter() - started, 3)
        built.header["built_over"] = len(built)
        return built

    def update(self, store: Store, *, progress: bool = True) -> list[str]:
        """Add the shards the store committed since this index was built (or last updated); returns
        their ids. Refused when a covered shard was re-extracted or removed, or the store was made anew:
        only a fresh build reflects those."""
        shards = store_shards(store)
        stale = self.staleness(store, shards)
        if not stale.only_new:
            raise StaleIndex(
                f"index {self.folder or ''} cannot be updated by adding shards: {stale.describe()}; "
                f"rebuild it: {build_command(store.uri, self.folder)}"
            )
        if not stale.new:
            return []
        started = time.perf_counter()
        n = _count(store, {sid: shards[sid] for sid in stale.new})
        refusal = kinds.add_refusal(self.kind, self.header["built_over"], len(self) + n)
        if refusal:
            raise StaleIndex(
                f"index {self.folder or ''}: {refusal}; rebuild it: {build_command(store.uri, self.folder)}"
            )
        self._add(store.iter_embeddings(BATCH, shards=stale.new), n, progress)
        self.header["shards"] = shards
        self.header["fingerprint"] = fingerprint(store.identity.to_attrs(), shards)
        self.header["vectors"] = len(self)
        self.header["videos"] = len(self.ids.videos)
        self.header.setdefault("updates", []).append(
            {
                "at": _now(),
                "shards": len(stale.new),
                "vectors": n,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
        return stale.new

    def _add(self, batches: Iterator[Any], n: int, progress: bool) -> None:
        """Add store batches to the FAISS index and the id map, with a progress bar in vectors/s."""
        parts = []
        with bar(
            total=n, desc=f"index {self.kind}", unit="vec", unit_scale=True, disable=None if progress else True
        ) as pb:
            for batch in batches:
                self.index.add(normalized(batch.emb))
                parts.append((batch.video_id, batch.row, batch.span))
                pb.update(len(batch.emb))
        self.ids.extend(parts)
        self._background = None  # its sample is drawn again over what the index holds now
        if len(self.ids) != self.index.ntotal:
            raise RetrievalError(f"index holds {self.index.ntotal} vectors but its id map {len(self.ids)}")
        self.cpu_index = placement.to_cpu(self.index) if self.device == "cuda" else self.index
        self.header["vectors"] = len(self)
        self.header["videos"] = len(self.ids.videos)

    # ---- freshness -----------------------------------------------------------------------------

    def staleness(self, store: Store, shards: dict[str, str] | None = None) -> Staleness:
        """How the store moved on since this index was built or updated."""
        shards = store_shards(store) if shards is None else shards
        covered: dict[str, str] = self.header["shards"]
        return Staleness(
            new=sorted(set(shards) - set(covered)),
            changed=sorted(s for s in set(shards) & set(covered) if shards[s] != covered[s]),
            removed=sorted(set(covered) - set(shards)),
            identity_changed=store.identity.to_attrs() != self.store_identity,
        )

    def check_fresh(self, store: Store) -> None:
        """Raise StaleIndex, naming the command that updates the index, unless it covers exactly
        what the store has committed."""
        shards = store_shards(store)
        if fingerprint(store.identity.to_attrs(), shards) == self.header["fingerprint"]:
            return
        stale = self.staleness(store, shards)
        added = _count(store, {sid: shards[sid] for sid in stale.new}) if stale.only_new else 0
        incremental = stale.only_new and not kinds.add_refusal(self.kind, self.header["built_over"], len(self) + added)
        raise StaleIndex(
            f"index {self.folder or ''} is stale: store {store.uri} has {stale.describe()}; update it: "
            + build_command(store.uri, self.folder, incremental=incremental)
        )

    # ---- searching -----------------------------------------------------------------------------

    def configure(self, cfg: RetrievalConfig) -> None:
        """Use `cfg`'s search parameters (ef_search, nprobe, refine_factor) from now on."""
        self._search_params = cfg

    def search(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """(m, D) queries -> (m, h) cosine scores and positions, best first, h = min(depth, n);
        missing results (an approximate index may find fewer) have position -1 and score -inf."""
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise RetrievalError(f"queries of shape {tuple(queries.shape)} for an index of width {self.dim}")
        h = max(1, min(int(depth), len(self)))
        _set_search_params(self.index, self.kind, self._search_params or RetrievalConfig(), h)
        scores, positions = self.index.search(normalized(queries), h)
        scores = np.where(positions >= 0, scores, -np.inf)
        return scores, positions

    BACKGROUND_SAMPLE = 1024

    def background(self, queries: np.ndarray) -> np.ndarray:
        """(m, D) -> (m,) each query's 10th-percentile cosine over up to 1,024 indexed vectors spread
        evenly: the level its hits stand out from (a low percentile, not the median, so a query that
        matches most of the index still has one)."""
        if self._background is None:
            positions = np.unique(
                np.linspace(0, len(self) - 1, min(len(self), self.BACKGROUND_SAMPLE)).astype(np.int64)
            )
            self._background = normalized(self.vectors(positions))  # (s, D)
        # einsum, not @: BLAS's threads would spin on after the call and slow the text tower's next query
        return np.percentile(np.einsum("md,sd->ms", normalized(queries), self._background), 10, axis=1)

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """(h,) positions -> (h, D) the indexed vectors (IVF-PQ: their 8-bit refine copies)."""
        if not len(positions):
            return np.zeros((0, self.dim), np.float32)
        return self.cpu_index.reconstruct_batch(np.asarray(positions, dtype=np.int64))

    # ---- disk ----------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index as a new generation in `folder` (created if needed), header last, under the
        folder's lock (one build at a time: another is refused, naming the holder). The header records
        each file's size and sha256; the temp files of a save that was killed are removed."""
        folder = Path(folder)
        check_index_folder(folder)
        with folder_lock(folder, "index build"):
            for stale in stale_temp_files(folder):  # a save cut short: no other build writes here now
                stale.unlink(missing_ok=True)
            gen = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
            files = {"index": f"segments-{gen}.faiss", "ids": f"ids-{gen}.parquet"}
            write_faiss(self.cpu_index, folder / files["index"])
            atomic_write(folder / files["ids"], lambda f: pq.write_table(self.ids.to_table(), f))
            self.header["files"] = files
            self.header["checks"] = {name: file_check(folder / name) for name in files.values()}
            self.header["bytes"] = self.header["checks"][files["index"]]["bytes"]
            atomic_write_json(folder / HEADER, self.header)
            named = set(files.values()) | set(read_header(folder)["files"].values())  # never what a header names
            for old in folder.iterdir():  # the generations no header names any more
                if old.name.startswith(("segments-", "ids-")) and old.name not in named:
                    old.unlink(missing_ok=True)
        self.folder = folder
        return folder

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        *,
        device: str = "cpu",
        mmap: bool | None = None,
        writable: bool = False,
        verify: bool = False,
    ) -> SegmentIndex:
        """Open the index in `folder`. `mmap` None: memory-map files of MMAP_BYTES or more (read-only);
        `writable` reads it whole (to update it). Each file's size is checked against the header; its
        sha256 too with `verify`, or when a save was cut short in the folder (its temp files are there)."""
        folder = Path(folder)
        header = read_header(folder)
        path = folder / header["files"]["index"]
        ids_path = folder / header["files"]["ids"]
        for p in (path, ids_path):
            if not p.is_file():
                raise RetrievalError(f"index {folder}: {p.name}, which its {HEADER} names, is missing")
        check_files(folder, header, hashes=verify or bool(stale_temp_files(folder)))
        import faiss

        use_mmap = (path.stat().st_size >= MMAP_BYTES if mmap is None else mmap) and not writable
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if use_mmap else 0)
        except RuntimeError as exc:
            raise RetrievalError(f"index {folder}: {path.name} is not a readable FAISS index: {exc}") from None
        try:
            ids = IdMap.from_table(pq.read_table(ids_path))
        except (OSError, pa.ArrowException, KeyError) as exc:
            raise RetrievalError(f"index {folder}: {ids_path.name} is not a readable id map: {exc}") from None
        if not index.ntotal == len(ids) == header["vectors"]:
            raise RetrievalError(
                f"index {folder}: the FAISS file holds {index.ntotal} vectors, the id map {len(ids)}, "
                f"the header says {header['vectors']}; rebuild it"
            )
        return cls(index, ids, header, folder=folder, device=device)


def write_faiss(index: Any, path: Path) -> None:
    """Write a CPU FAISS index through `atomic_write`: FAISS's writer streams into the temp file."""
    import faiss

    def write(f):
        writer = faiss.PyCallbackIOWriter(f.write)
        faiss.write_index(index, writer)
        del writer  # flushes FAISS's buffer through f.write before atomic_write fsyncs

    atomic_write(path, write)


def _count(store: Store, shards: dict[str, str]) -> int:
    ok = store.videos(status="ok").to_pydict()
    return int(sum(n for n, sid in zip(ok["n_segments"], ok["shard_id"]) if sid in shards))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _header(spec: kinds.IndexSpec, d: int) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "store": {"uri": None, "identity": None},  # `build` names the store it read
        "shards": {},
        "fingerprint": None,
        **spec.to_dict(),
        "metric": "cosine (inner product of L2-normalised float32)",
        "dim": d,
        "vectors": 0,
        "videos": 0,
        "built_at": _now(),
        "lvmae": lvmae_version(),
    }


def new_faiss_index(spec: kinds.IndexSpec, d: int, cfg: RetrievalConfig) -> Any:
    """An empty CPU FAISS index of `spec`, inner product metric, with its build parameters set."""
    import faiss

    index = faiss.index_factory(d, spec.factory, faiss.METRIC_INNER_PRODUCT)
    if spec.kind == "hnsw":
        index.hnsw.efConstruction = cfg.ef_construction
        spec.params["efConstruction"] = cfg.ef_construction
    return index


def train(index: Any, spec: kinds.IndexSpec, sample: np.ndarray, device: str) -> None:
    """Train the quantizers of an IVF-PQ index on `sample` (n, D), on the GPU when there is one: the
    k-means of the coarse quantizer is most of the time."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    if device == "cuda":
        quantizer, _ = placement.to_device(faiss.IndexFlatIP(index.d), "flat", device)
        ivf.clustering_index = quantizer
    index.train(sample)
    spec.params["trained_on"] = len(sample)


def _set_search_params(index: Any, kind: str, cfg: RetrievalConfig, h: int) -> None:
    import faiss

    if kind == "hnsw":
        index.hnsw.efSearch = max(cfg.ef_search, h)  # HNSW finds at most efSearch results
    elif kind == "ivfpq":
        faiss.extract_index_ivf(index).nprobe = cfg.nprobe
        # refine_factor · k candidates for the first k <= 10 results, and no more than the h asked for
        # past that: a query for 256 hits (to build moments) re-ranks as deeply as one for 10, not 25× more.
        faiss.downcast_index(index).k_factor = max(cfg.refine_factor * min(h, 10), h) / h


def file_check(path: Path) -> dict[str, Any]:
    """What the header records of a file it names: its size and sha256."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def check_files(folder: Path, header: dict, *, hashes: bool) -> None:
    """The files the header names are the ones it wrote: their sizes (always) and sha256 (`hashes`), or
    a RetrievalError naming the file (a header of an older lvmae, without checks, passes)."""
    for name, want in header.get("checks", {}).items():
        path = folder / name
        size = path.stat().st_size
        if size != want["bytes"]:
            raise RetrievalError(
                f"index {folder}: {name} is {size:,} bytes; its {HEADER} says {want['bytes']:,}: the file is "
                f"damaged; rebuild the index ({build_command('STORE', folder)})"
            )
        if hashes and sha256_file(path) != want["sha256"]:
            raise RetrievalError(
                f"index {folder}: {name} does not have the sha256 its {HEADER} records: the file is damaged; "
                f"rebuild the index ({build_command('STORE', folder)})"
            )


def read_header(folder: Path) -> dict:
    """The header of the index in `folder`; a folder that is not one is a RetrievalError saying so."""
    path = folder / HEADER
    if not folder.is_dir():
        raise RetrievalError(f"no index at {folder}: no such folder; build one with `lvmae index build --out {folder}`")
    if not path.is_file():
        raise RetrievalError(
            f"{folder} is not an lvmae index: it has no {HEADER}; build one with `lvmae index build --out {folder}`"
        )
    try:
        header = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RetrievalError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise RetrievalError(f"{folder} is not an lvmae index: {HEADER} is not an {FORMAT} header")
    if header.get("version") != VERSION:
        raise RetrievalError(
            f"index {folder} has format version {header.get('version')!r}; this lvmae reads {VERSION}: rebuild it"
        )
    return header


def check_index_folder(folder: Path) -> None:
    """An index is written into an empty or absent folder, or over an index."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise RetrievalError(f"{folder} is a file, not a folder: name a folder for the index")
    if (folder / HEADER).is_file():
        read_header(folder)  # ours, or a clear error
        return
    others = [p.name for p in folder.iterdir() if not p.name.startswith((".", "segments-", "ids-"))]
    if others:
        raise RetrievalError(
            f"{folder} holds other files ({', '.join(sorted(others)[:5])}) and no index; refusing to write an "
            "index into it: name a new or empty folder"
        )


def build_command(store_uri: str, folder: Path | None, *, incremental: bool = False) -> str:
    out = f" --out {folder}" if folder is not None else ""
    return f"`lvmae index build --store {store_uri}{out}{' --incremental' if incremental else ''}`"
