"""Store write rate and window-read rate, against a raw numpy memmap of the same data read the same way.

Write: segments/s through `ShardWriter`, commit included, for D=512 float16 embeddings, int16 codes
and float16 scores on a 3×16×16 token grid, importance and span.
Read: random windows of 4096 consecutive segments of one video. The store reads them with
`Store.sequence` (every array; and emb + importance only, what pretraining reads); the baseline reads
the same rows of the same arrays from `.npy` memmaps laid out like the shards, copying them out as
zarr does. The two alternate window by window in one process, so both see the same page cache.

The data are random, the worst case for compression: blosc stores such chunks as they are, and the
store copies the rows a window wants straight out of them. Real codes and scores compress (the demo's
toy-world codes to about 0.4 of raw), and a compressed chunk costs lz4 decompression on every read (a
few GB/s here). So the benchmark also reads all arrays from a second store whose codes and scores
compress like still scenes (each segment repeats the previous one's tokens with 5 % changed):
`read_ratio_still_tokens`.

Each chunk's crc32c is checked the first time a reader reads it (store.direct); the timed windows
include those first reads.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import emit, machine, parse_args
from lvmae.foundation.progress import bar
from lvmae.store import Store, StoreIdentity
from lvmae.store.layout import array_encoding, array_names

D = 512
GRID = (3, 16, 16)
CODEBOOK = 8 * 8 * 8 * 6 * 5  # FSQ levels [8, 8, 8, 6, 5]
WINDOW = 4096
SEGMENT_SECONDS = 2.0


def video_arrays(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One video's arrays: L2-normalised embeddings, uniform codes and scores, 2 s spans."""
    emb = rng.standard_normal((n, D), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    t0 = np.arange(n, dtype=np.float32) * SEGMENT_SECONDS
    return {
        "emb": emb.astype(np.float16),
        "codes": rng.integers(0, CODEBOOK, (n, *GRID), dtype=np.int16),
        "scores": rng.random((n, *GRID), dtype=np.float32).astype(np.float16),
        "importance": rng.random(n, dtype=np.float32),
        "span": np.stack([t0, t0 + SEGMENT_SECONDS], 1),
    }


def still_tokens(data: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`data` with codes and scores that change little from segment to segment, as in a still scene."""
    codes, scores = data["codes"].copy(), data["scores"].copy()
    for i in range(1, len(codes)):
        keep = rng.random(GRID) > 0.05
        codes[i] = np.where(keep, codes[i - 1], codes[i])
        scores[i] = np.where(keep, scores[i - 1], scores[i])
    return {**data, "codes": codes, "scores": scores}


def write_store(
    uri: str, n_shards: int, videos_per_shard: int, segments: int, data: dict[str, np.ndarray]
) -> tuple[Store, float]:
    """Write the store; every video holds the same `data` (generating it is not what is timed)."""
    ident = StoreIdentity(
        encoder={"name": "bench", "weights_sha256": "0" * 64},
        tokenizer={"name": "bench-fsq", "weights_sha256": "1" * 64, "levels": [8, 8, 8, 6, 5]},
        segment={"seconds": SEGMENT_SECONDS},
    )
    store = Store.create(uri, ident)
    seconds = 0.0
    for s in bar(range(n_shards), desc="write", unit="shard"):
        start = time.perf_counter()
        with store.shard_writer(f"{s:06d}") as writer:
            for v in range(videos_per_shard):
                writer.add_video(
                    video_id=f"s{s}v{v}", uri=f"bench://s{s}v{v}", duration=segments * SEGMENT_SECONDS, fps=8.0, **data
                )
        seconds += time.perf_counter() - start
    return store, seconds


def write_memmaps(
    folder: Path, n_shards: int, videos_per_shard: int, data: dict[str, np.ndarray]
) -> dict[str, dict[str, np.ndarray]]:
    """The same arrays as `.npy` files, one per array per shard, opened read-only as memmaps."""
    folder.mkdir(parents=True, exist_ok=True)
    maps = {}
    for s in range(n_shards):
        maps[f"{s:06d}"] = {}
        for name, arr in data.items():
            path = folder / f"{s:06d}-{name}.npy"
            out = np.lib.format.open_memmap(
                path, mode="w+", dtype=arr.dtype, shape=(len(arr) * videos_per_shard, *arr.shape[1:])
            )
            for v in range(videos_per_shard):
                out[v * len(arr) : (v + 1) * len(arr)] = arr
            out.flush()
            del out
            maps[f"{s:06d}"][name] = np.load(path, mmap_mode="r")
    return maps


def read_rates(
    store: Store,
    maps: dict[str, dict[str, np.ndarray]],
    windows: list[tuple[str, int]],
    names: tuple[str, ...],
    desc: str,
) -> tuple[float, float]:
    """Windows/s for the store and for the memmaps, reading the same windows alternately."""
    videos = store.videos().to_pydict()
    where = {vid: (sid, row) for vid, sid, row in zip(videos["video_id"], videos["shard_id"], videos["row_start"])}

    def from_store(video_id: str, start: int) -> None:
        store.sequence(video_id, start, start + WINDOW, arrays=names)

    def from_memmap(video_id: str, start: int) -> None:
        shard_id, row = where[video_id]
        for name in names:
            np.array(maps[shard_id][name][row + start : row + start + WINDOW])

    for video_id, start in windows[:5]:  # warm-up: open arrays, map pages
        from_store(video_id, start)
        from_memmap(video_id, start)
    spent = {from_store: 0.0, from_memmap: 0.0}
    for i, (video_id, start) in enumerate(bar(windows, desc=desc, unit="window")):
        # Alternate which goes first, so neither always finds the other's reads in the CPU caches.
        for read in (from_store, from_memmap) if i % 2 == 0 else (from_memmap, from_store):
            t = time.perf_counter()
            read(video_id, start)
            spent[read] += time.perf_counter() - t
    return len(windows) / spent[from_store], len(windows) / spent[from_memmap]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    n_shards, videos_per_shard, segments, n_windows = (2, 2, 6144, 60) if args.quick else (4, 4, 8192, 300)
    n_segments = n_shards * videos_per_shard * segments
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    data = video_arrays(segments, rng)
    raw_bytes = sum(arr.nbytes for arr in data.values()) * n_shards * videos_per_shard
    print(
        f"store benchmark: {n_shards} shards × {videos_per_shard} videos × {segments} segments = "
        f"{n_segments} segments, {raw_bytes / 2**20:.0f} MiB raw; windows of {WINDOW}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="lvmae-bench-store-") as tmp:
        tmp = Path(tmp)
        store, write_seconds = write_store(str(tmp / "store"), n_shards, videos_per_shard, segments, data)
        store_bytes = sum(p.stat().st_size for p in (tmp / "store").rglob("*") if p.is_file())
        print(
            f"wrote {n_segments / write_seconds:,.0f} segments/s; store {store_bytes / 2**20:.0f} MiB "
            f"({store_bytes / raw_bytes:.2f} of raw)",
            flush=True,
        )
        maps = write_memmaps(tmp / "random", n_shards, videos_per_shard, data)
        ids = [f"s{s}v{v}" for s in range(n_shards) for v in range(videos_per_shard)]
        windows = [(ids[rng.integers(len(ids))], int(rng.integers(0, segments - WINDOW + 1))) for _ in range(n_windows)]
        every = array_names(True)
        store_rate, memmap_rate = read_rates(store, maps, windows, every, "read all arrays")
        store_ei, memmap_ei = read_rates(store, maps, windows, ("emb", "importance"), "read emb+importance")
        del maps

        still = still_tokens(data, rng)
        still_store, _ = write_store(str(tmp / "still"), n_shards, videos_per_shard, segments, still)
        still_bytes = sum(p.stat().st_size for p in (tmp / "still").rglob("*") if p.is_file())
        maps = write_memmaps(tmp / "still-memmaps", n_shards, videos_per_shard, still)
        store_still, memmap_still = read_rates(still_store, maps, windows, every, "read all arrays, still tokens")
        del maps
    result = {
        "write_segments_per_s": round(n_segments / write_seconds, 1),
        "read_windows_per_s": round(store_rate, 2),
        "memmap_read_windows_per_s": round(memmap_rate, 2),
        "read_ratio": round(store_rate / memmap_rate, 3),
        "read_arrays": list(every),
        "read_emb_importance_windows_per_s": round(store_ei, 2),
        "memmap_read_emb_importance_windows_per_s": round(memmap_ei, 2),
        "read_ratio_emb_importance": round(store_ei / memmap_ei, 3),
        "read_still_tokens_windows_per_s": round(store_still, 2),
        "memmap_read_still_tokens_windows_per_s": round(memmap_still, 2),
        "read_ratio_still_tokens": round(store_still / memmap_still, 3),
        "still_store_bytes": still_bytes,
        "n_segments": n_segments,
        "n_shards": n_shards,
        "window": WINDOW,
        "windows_read": n_windows,
        "D": D,
        "token_grid": list(GRID),
        "chunk_rows": {
            name: array_encoding((segments * videos_per_shard, *arr.shape[1:]), arr.dtype)["chunks"][0]
            for name, arr in data.items()
        },
        "compressors": "blosc lz4 (no shuffle), crc32c",
        "raw_bytes": raw_bytes,
        "store_bytes": store_bytes,
        "quick": args.quick,
        "seconds": round(time.perf_counter() - began, 1),
        **machine(),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
