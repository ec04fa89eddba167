"""Training windows from store sequences: the train/val split, window sampling, ragged batches.

Shape letters: `B` windows in a batch, `T` segments in the longest window of the batch, `D` embedding
width, `(t, h, w)` the token grid.

Memory stays bounded by one batch (plus the one being prefetched): a window is read with
`Store.sequence(video_id, start, stop, arrays=...)`, which touches only the chunks holding its rows.

The batches of a run are a pure function of `(seed, rank, step)`: batch k is the same whenever it is
asked for. Resuming at step k needs no sampler state, and a rank's windows differ from another's.
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lvmae.store import Store


@dataclass(frozen=True, order=True)
class Video:
    video_id: str
    n_segments: int


@dataclass(frozen=True)
class Window:
    """Segments [start, stop) of one video."""

    video_id: str
    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def ok_videos(store: Store) -> list[Video]:
    """The store's videos with segments, sorted by id (a failed video has none)."""
    ok = store.videos(status="ok").select(["video_id", "n_segments"]).to_pydict()
    return sorted(Video(v, int(n)) for v, n in zip(ok["video_id"], ok["n_segments"]))


def id_hash(video_id: str) -> int:
    return int.from_bytes(hashlib.sha256(video_id.encode()).digest()[:8], "big")


def split_videos(videos: list[Video], val_fraction: float) -> tuple[list[Video], list[Video]]:
    """(train, val): the `round(val_fraction * n)` videos with the smallest sha256 of their id are held
    out (at least one when val_fraction > 0 and there are two or more videos). Deterministic and
    independent of order and seed, so every run and every rank agrees on it."""
    n_val = round(val_fraction * len(videos))
    if val_fraction > 0 and len(videos) >= 2:
        n_val = min(max(n_val, 1), len(videos) - 1)
    ranked = sorted(videos, key=lambda v: (id_hash(v.video_id), v.video_id))
    val = {v.video_id for v in ranked[:n_val]}
    return [v for v in videos if v.video_id not in val], [v for v in videos if v.video_id in val]


def sample_windows(
    videos: list[Video], n: int, *, min_segments: int, max_segments: int, rng: np.random.Generator
) -> list[Window]:
    """`n` windows of one length L, drawn log-uniformly in [min_segments, max_segments], so short and
    long contexts are both common and one batch wastes little on padding. Videos are drawn with
    probability proportional to their segment count (every segment equally likely to be in a window);
    the start is uniform. A video shorter than L gives all of itself, padded in the batch, not tiled."""
    lo, hi = math.log(min_segments), math.log(max_segments)
    length = int(round(math.exp(rng.uniform(lo, hi))))
    sizes = np.array([v.n_segments for v in videos], dtype=np.float64)
    picks = rng.choice(len(videos), size=n, p=sizes / sizes.sum())
    windows = []
    for i in picks:
        video = videos[int(i)]
        span = min(length, video.n_segments)
        start = int(rng.integers(0, video.n_segments - span + 1))
        windows.append(Window(video.video_id, start, start + span))
    return windows


def tile_windows(videos: list[Video], max_segments: int) -> list[Window]:
    """Every segment of the videos once, in consecutive windows of at most max_segments."""
    return [
        Window(v.video_id, a, min(a + max_segments, v.n_segments))
        for v in videos
        for a in range(0, v.n_segments, max_segments)
    ]


@dataclass
class Batch:
    emb: Tensor  # (B, T, D) float32
    importance: Tensor  # (B, T) float32, 0 at padding
    valid: Tensor  # (B, T) bool: True = a real segment, False = padding
    codes: Tensor | None  # (B, T, t, h, w) int64 when asked for
    windows: list[Window]

    @property
    def segments(self) -> int:
        return int(self.valid.sum())

    def to(self, device: torch.device) -> Batch:
        def move(x: Tensor) -> Tensor:
            return x.to(device, non_blocking=True)

        return Batch(
            move(self.emb),
            move(self.importance),
            move(self.valid),
            None if self.codes is None else move(self.codes),
            self.windows,
        )


def read_window(store: Store, window: Window, *, codes: bool = False) -> dict[str, Any]:
    """One window as arrays: emb (L, D) float32, importance (L,) float32, codes (L, t, h, w) int64 when
    asked for, and the window itself."""
    names = ("emb", "importance", "codes") if codes else ("emb", "importance")
    seq = store.sequence(window.video_id, window.start, window.stop, arrays=names)
    item: dict[str, Any] = {
        "emb": torch.from_numpy(seq.get("emb").astype(np.float32)),
        "importance": torch.from_numpy(seq.get("importance").astype(np.float32)),
        "window": window,
    }
    if codes:
        item["codes"] = torch.from_numpy(seq.get("codes").astype(np.int64))
    return item


def collate_windows(items: Sequence[dict[str, Any]]) -> Batch:
    """Pad windows read by `read_window` into one ragged batch (padding at the end of each row): the
    `collate_fn` of a DataLoader over a `WindowDataset`."""
    windows = [item["window"] for item in items]
    B, T, D = len(items), max(w.length for w in windows), items[0]["emb"].shape[1]
    emb = torch.zeros(B, T, D)
    importance = torch.zeros(B, T)
    valid = torch.zeros(B, T, dtype=torch.bool)
    has_codes = "codes" in items[0]
    code = torch.zeros(B, T, *items[0]["codes"].shape[1:], dtype=torch.int64) if has_codes else None
    for i, (w, item) in enumerate(zip(windows, items)):
        emb[i, : w.length] = item["emb"]
        importance[i, : w.length] = item["importance"]
        valid[i, : w.length] = True
        if code is not None:
            code[i, : w.length] = item["codes"]
    return Batch(emb, importance, valid, code, windows)


def read_batch(store: Store, windows: list[Window], *, codes: bool = False) -> Batch:
    """Read the windows and pad them into one ragged batch (padding at the end of each row)."""
    return collate_windows([read_window(store, w, codes=codes) for w in windows])


TRAIN_STREAM, VAL_STREAM, EVAL_STREAM = 0, 1, 2  # training windows, validation windows, evaluation masks


def step_seeds(seed: int, stream: int, rank: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    """Independent generators for the windows and for the masks of one (seed, stream, rank, step);
    `stream` keeps training and validation draws apart."""
    data, mask = np.random.SeedSequence([seed, stream, rank, step]).spawn(2)
    generator = torch.Generator().manual_seed(int(mask.generate_state(1, np.uint64)[0] >> 1))
    return np.random.default_rng(data), generator


@dataclass(frozen=True)
class WindowDraw:
    """Which windows one rank of a run trains on at each step: a pure function of (seed, stream, rank, step)."""

    videos: tuple[Video, ...]
    batch_size: int
    min_segments: int
    max_segments: int
    seed: int
    stream: int = TRAIN_STREAM
    rank: int = 0

    def windows(self, step: int) -> list[Window]:
        rng, _ = step_seeds(self.seed, self.stream, self.rank, step)
        return sample_windows(
            list(self.videos), self.batch_size, min_segments=self.min_segments, max_segments=self.max_segments, rng=rng
        )

    def window(self, index: int) -> Window:
        """The `index`-th window of the run: window `index % batch_size` of step `index // batch_size`."""
        return self.windows(index // self.batch_size)[index % self.batch_size]


class WindowSource:
    """The batches of one rank of a run: `batch(step)` always returns the same windows for a step."""

    def __init__(
        self,
        store: Store,
        videos: list[Video],
        *,
        batch_size: int,
        min_segments: int,
        max_segments: int,
        seed: int,
        stream: int = TRAIN_STREAM,
        rank: int = 0,
        codes: bool = False,
    ):
        if not videos:
            raise ValueError("no videos to draw windows from")
        self.store, self.videos, self.batch_size = store, videos, batch_size
        self.min_segments, self.max_segments = min_segments, max_segments
        self.seed, self.stream, self.rank, self.codes = seed, stream, rank, codes
        self.draw = WindowDraw(tuple(videos), batch_size, min_segments, max_segments, seed, stream, rank)

    def windows(self, step: int) -> list[Window]:
        return self.draw.windows(step)

    def batch(self, step: int) -> Batch:
        return read_batch(self.store, self.windows(step), codes=self.codes)

    def mask_generator(self, step: int) -> torch.Generator:
        return step_seeds(self.seed, self.stream, self.rank, step)[1]

    def iterate(self, start: int, stop: int, *, prefetch: int = 2) -> Iterator[tuple[int, Batch]]:
        """(step, batch) for steps [start, stop), read `prefetch` batches ahead in a thread so that
        store reads overlap the training step (zarr and numpy release the GIL while they read)."""
        q: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
        stop_event = threading.Event()

        def put(item) -> bool:
            while not stop_event.is_set():  # the consumer may have gone: never block for good
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for step in range(start, stop):
                    if not put((step, self.batch(step))):
                        return
                put(None)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(exc)

        thread = threading.Thread(target=produce, name="window-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop_event.set()
            thread.join(timeout=5)


class WindowDataset(Dataset):
    """A store's windows as a map-style PyTorch `Dataset`, for training a model of one's own on the
    segment embeddings. Item k is one window as `read_window` gives it (emb (L, D), importance (L,),
    optionally codes, and the `Window`); `collate_windows` pads a list of them into a `Batch`.

    `WindowDataset.pretraining(store, p, steps=N)` holds exactly the windows `lvmae pretrain` draws for
    `p` (the same seed, videos, lengths): items k*B .. k*B+B-1 are step k's batch of B = p.batch_size, so
    a DataLoader with that batch size and no shuffling yields step 0's batch, then step 1's, and so on.
    `WindowDataset.whole_videos(store)` holds every ok video once, whole (long videos in windows of at
    most `max_segments`). Every item is a pure function of its index, so any number of workers agree:

        from torch.utils.data import DataLoader
        from lvmae.pretrain.data import WindowDataset, collate_windows

        data = WindowDataset.pretraining(store, cfg.pretrain, steps=1_000)
        loader = DataLoader(data, batch_size=cfg.pretrain.batch_size, num_workers=2, collate_fn=collate_windows)
        for step, batch in enumerate(loader):
            out = model(batch.emb, batch.valid)  # emb (B, T, D) float32, valid (B, T) bool: False is padding
            ...

    Only the store's URI travels to the workers; each opens the store itself on its first item.
    """

    def __init__(self, store: Store, windows: Callable[[int], Window], length: int, *, codes: bool = False):
        # `windows` must pickle (a worker gets a copy): a bound method of a list or of a WindowDraw.
        self.store_uri = store.uri
        self._store: Store | None = store
        self._windows, self._length, self.codes = windows, length, codes

    @classmethod
    def pretraining(cls, store: Store, p: Any, *, steps: int, rank: int = 0, split: str = "train") -> WindowDataset:
        """The windows of `steps` steps of pretraining with config section `p` (a `PretrainConfig`) on
        rank `rank`: the training videos' (`split="train"`) or the validation batches' (`"val"`)."""
        train, val = split_videos(ok_videos(store), p.val_fraction)
        videos = {"train": train, "val": val}[split]
        if not videos:
            raise ValueError(f"store {store.uri} has no {split} videos to draw windows from")
        stream = TRAIN_STREAM if split == "train" else VAL_STREAM
        draw = WindowDraw(tuple(videos), p.batch_size, p.min_segments, p.max_segments, p.seed, stream, rank)
        return cls(store, draw.window, steps * p.batch_size, codes=p.code_head)

    @classmethod
    def whole_videos(cls, store: Store, *, max_segments: int | None = None, codes: bool = False) -> WindowDataset:
        """Every ok video, whole, in id order (in consecutive windows of at most `max_segments`)."""
        videos = ok_videos(store)
        windows = (
            tile_windows(videos, max_segments)
            if max_segments
            else [Window(v.video_id, 0, v.n_segments) for v in videos]
        )
        return cls(store, windows.__getitem__, len(windows), codes=codes)

    def __len__(self) -> int:
        return self._length

    def window(self, index: int) -> Window:
        if not 0 <= index < self._length:
            raise IndexError(f"window {index} of {self._length}")
        return self._windows(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return read_window(self._open(), self.window(index), codes=self.codes)

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.store_uri)
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        # A worker opens the store itself: an open store's readers and caches stay in this process.
        return {**self.__dict__, "_store": None}
