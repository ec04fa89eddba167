"""Reconstruction inspection: what the LV-MAE decoder fills in, read as captions and scored against truth.

Shape letters: `B` windows in a batch, `T` segments in a window, `S` reconstructed segments of a window,
`n` reconstructed segments in all, `D` embedding width, `K` captions kept per segment.

The masks and reconstructions come from the one reconstruction path, `lvmae.evaluation.reconstruction.reconstruct`
(the MSE evaluation reads the same): a seeded encoder mask per window of the checkpoint's trained
context, and for each decoder asked for (`trained`: the checkpoint's own decoder mask; `all`: every
hidden segment) the hidden segments it reconstructs. Each reconstructed segment is then read as the
caption bank's top-K by cosine, beside four other vectors for the same segment:

- `original`: its own embedding, the ceiling (what the bank can say about the segment at all);
- `copy_nearest`: the nearest visible segment of its window (the earlier on a tie), the bar to beat:
  neighbouring segments are near copies, so a model that learned nothing long-range still has this;
- `interpolate`: the visible neighbours before and after it, mixed linearly by distance (the one side
  that exists at a window's edge);
- `video_mean`: the mean of its window's visible segments (the whole video's when it fits one window).

Truth is the caption of the step at the segment's midpoint (`lvmae.evaluation.truth`); without a truth file it
is the original embedding's top-1 caption, so the figures say how often a method agrees with it. R@k
is the fraction of segments whose truth is among a method's top-k captions; chance is k / bank size.

Splits: `all` reconstructed segments; `boundary`, those that begin a step (the segment before it, in its
window, shows another step, so the visible segments nearest before it do too); `long_gap`, those in a
run of at least `LONG_GAP` consecutive hidden segments (common under the span mask, rare under random).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lvmae.evaluation.reconstruction import check_ratio, gather_rows, reconstruct, visible_neighbours
from lvmae.evaluation.truth import Truth
from lvmae.foundation.progress import bar
from lvmae.foundation.runtime import resolve_device
from lvmae.foundation.schema import EncoderConfig, RetrievalConfig
from lvmae.pretrain.checkpoint import Pretrained
from lvmae.pretrain.data import Video
from lvmae.retrieval.captions import CaptionBank
from lvmae.retrieval.errors import RetrievalError
from lvmae.store import Store

METHODS = ("reconstruction", "original", "copy_nearest", "interpolate", "video_mean")
METHOD_NAMES = {  # as tables print them
    "reconstruction": "reconstruction",
    "original": "original",
    "copy_nearest": "copy-nearest",
    "interpolate": "interpolate",
    "video_mean": "video mean",
}
BASELINES = METHODS[1:]
SPLITS = ("all", "boundary", "long_gap")
LONG_GAP = 5  # hidden runs of at least this many segments are long gaps
K = 5  # captions kept per segment and method: R@1 and R@5 read them


# --- baselines: pure functions of a batch's embeddings and masks ---------------------------------------


def baseline_vectors(unit: Tensor, valid: Tensor, hidden: Tensor, index: Tensor) -> dict[str, Tensor]:
    """What each baseline puts at the reconstructed positions.

    unit (B, T, D) L2-normalised embeddings, valid / hidden (B, T) bool, index (B, S) positions ->
    {name: (B, S, D)} for the names in BASELINES. A window has at least one visible segment.
    """
    visible = valid & ~hidden  # (B, T)
    T = unit.shape[1]
    before, after = visible_neighbours(visible)  # (B, T) each; -2T / 2T where none
    b, a = before.gather(1, index), after.gather(1, index)  # (B, S)
    has_b, has_a = b >= 0, a < T
    pos = index.to(unit.dtype)
    # Weight of the later neighbour: its share of the distance, 0 or 1 where only one side exists.
    w = torch.where(has_b & has_a, (pos - b) / (a - b).clamp(min=1), has_a.to(unit.dtype))  # (B, S)
    prev = gather_rows(unit, b.clamp(0, T - 1))  # (B, S, D)
    nxt = gather_rows(unit, a.clamp(0, T - 1))  # (B, S, D)
    copy_pos = torch.where((index - b) <= (a - index), b, a).clamp(0, T - 1)  # (B, S): earlier on a tie
    weights = visible.to(unit.dtype)  # (B, T)
    mean = (unit * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)  # (B, D)
    return {
        "original": gather_rows(unit, index),
        "copy_nearest": gather_rows(unit, copy_pos),
        "interpolate": (1 - w)[..., None] * prev + w[..., None] * nxt,
        "video_mean": mean[:, None, :].expand(-1, index.shape[1], -1),
    }


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """For each True of a 1-D bool array, the length of the run of Trues it belongs to (0 elsewhere)."""
    out = np.zeros(len(mask), dtype=np.int64)
    t = 0
    while t < len(mask):
        if mask[t]:
            end = t
            while end < len(mask) and mask[end]:
                end += 1
            out[t:end] = end - t
            t = end
        else:
            t += 1
    return out


def long_gaps(hidden: np.ndarray) -> np.ndarray:
    """(T,) bool hidden mask of a window -> (T,) bool: hidden and in a run of at least LONG_GAP."""
    return run_lengths(hidden) >= LONG_GAP


def step_starts(step: np.ndarray) -> np.ndarray:
    """(T,) step ids of a window's segments -> (T,) bool: the segment begins a step, i.e. the one before it
    in the window belongs to another step (never the window's first segment, nor one without a step)."""
    out = np.zeros(len(step), dtype=bool)
    out[1:] = (step[1:] != step[:-1]) & (step[1:] >= 0)
    return out


# --- results -------------------------------------------------------------------------------------------


@dataclass
class Track:
    """Every segment of one inspected video, in time order."""

    video_id: str
    uri: str
    span: np.ndarray  # (T, 2) float seconds
    importance: np.ndarray  # (T,) float
    hidden: np.ndarray  # (T,) bool
    label: np.ndarray  # (T,) int64: caption index of the truth (the original's top-1 without truth)
    truth: list[str | None]  # (T,) the truth caption (None without truth, or where no step covers)
    step: np.ndarray  # (T,) int64: the step (a truth row; a run of equal labels without truth), -1 none
    boundary: np.ndarray  # (T,) bool: begins a step
    long_gap: np.ndarray  # (T,) bool: hidden, in a run of >= LONG_GAP hidden segments


@dataclass
class Reconstructions:
    """One decoder's reconstructed segments, one row each, with each method's top-K captions."""

    kind: str  # the decoder mask (all, random, adaptive)
    video: list[str] = field(default_factory=list)  # (n,) video id
    position: list[int] = field(default_factory=list)  # (n,) segment index in its video
    top: dict[str, list[np.ndarray]] = field(default_factory=lambda: {m: [] for m in METHODS})  # (S, K) parts

    def tops(self, method: str) -> np.ndarray:
        parts = self.top[method]
        return np.concatenate(parts) if parts else np.zeros((0, K), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.position)


@dataclass
class Inspection:
    bank: CaptionBank
    truth_source: str | None  # the truth file, or None: the original's top-1 is the truth
    checkpoint: str
    mask: str
    ratio: float
    seed: int
    tracks: dict[str, Track]
    decoders: dict[str, Reconstructions]

    @property
    def bank_size(self) -> int:
        return len(self.bank)

    def chance(self, k: int) -> float:
        return min(k, self.bank_size) / self.bank_size

    def split_masks(self, name: str) -> dict[str, np.ndarray]:
        """{split: (n,) bool} over the decoder's rows."""
        rec = self.decoders[name]
        boundary = np.array([self.tracks[v].boundary[p] for v, p in zip(rec.video, rec.position)], dtype=bool)
        gap = np.array([self.tracks[v].long_gap[p] for v, p in zip(rec.video, rec.position)], dtype=bool)
        return {"all": np.ones(len(rec), dtype=bool), "boundary": boundary, "long_gap": gap}

    def labels(self, name: str) -> np.ndarray:
        rec = self.decoders[name]
        return np.array([self.tracks[v].label[p] for v, p in zip(rec.video, rec.position)], dtype=np.int64)

    def longest_video(self) -> str:
        """The inspected video with the most segments (the earliest id on a tie)."""
        return min(self.tracks, key=lambda v: (-len(self.tracks[v].span), v))

    def timeline_rows(self, name: str, video_id: str) -> dict[int, dict[str, np.ndarray]]:
        """{position: {method: (K,) caption indices}} of the segments of `video_id` decoder `name` reconstructed."""
        rec = self.decoders[name]
        tops = {m: rec.tops(m) for m in METHODS}
        return {
            p: {m: tops[m][i] for m in METHODS}
            for i, (v, p) in enumerate(zip(rec.video, rec.position))
            if v == video_id
        }

    def metrics(self) -> dict[str, Any]:
        """The JSON object of `lvmae inspect --json`: bank size, chance, and per decoder, split and method
        R@1 / R@5 with the split's segment count (R@k is None for an empty split)."""
        decoders = {}
        for name, rec in self.decoders.items():
            label = self.labels(name)  # (n,)
            tops = {m: rec.tops(m) for m in METHODS}  # (n, K) each
            splits = {}
            for split, rows in self.split_masks(name).items():
                n = int(rows.sum())
                methods = {}
                for m in METHODS:
                    hit = tops[m][rows] == label[rows, None]  # (n_split, K)
                    methods[m] = {
                        "r1": float(hit[:, :1].any(1).mean()) if n else None,
                        "r5": float(hit[:, :5].any(1).mean()) if n else None,
                    }
                splits[split] = {"segments": n, "methods": methods}
            decoders[name] = {"decoder_mask": rec.kind, "splits": splits}
        return {
            "bank_size": self.bank_size,
            "chance_r1": self.chance(1),
            "chance_r5": self.chance(5),
            "truth": self.truth_source or "original top-1",
            "checkpoint": self.checkpoint,
            "mask": self.mask,
            "ratio": self.ratio,
            "seed": self.seed,
            "videos": len(self.tracks),
            "segments": int(sum(len(t.label) for t in self.tracks.values())),
            "decoders": decoders,
        }


# --- the run ------------------------------------------------------------------------------------------


def check_inputs(pretrained: Pretrained, store: Store, bank: CaptionBank) -> None:
    """Refuse what cannot be scored: a store outside the bank's text space (LV-MAE features, another
    encoder), or a checkpoint trained on embeddings of another width."""
    bank.check_store(store.uri, store.identity.to_attrs())
    width = store.dims().emb
    if width is not None and width != pretrained.model.cfg.dim_in:
        raise RetrievalError(
            f"checkpoint {pretrained.name} was trained on {pretrained.model.cfg.dim_in}-wide embeddings, but store "
            f"{store.uri} holds {width}-wide ones: inspect it on a store of the encoder it was trained on"
        )


def inspect_reconstructions(
    pretrained: Pretrained,
    store: Store,
    bank: CaptionBank,
    videos: list[Video],
    *,
    truth: Truth | None = None,
    mask: str = "random",
    ratio: float | None = None,
    decoders: tuple[str, ...] = ("trained", "all"),
    seed: int = 0,
    batch_windows: int = 8,
    progress: Callable[[int], None] | None = None,
) -> Inspection:
    """Reconstruct the hidden segments of `videos` and read every method's captions; `progress` is
    called with the segments of each batch done."""
    check_inputs(pretrained, store, bank)
    if not videos:
        raise RetrievalError(f"store {store.uri}: no video to inspect")
    if truth is not None:
        missing = truth.missing(v.video_id for v in videos)
        if missing:
            raise RetrievalError(
                f"truth file {truth.source} has no steps for video {missing[0]}"
                + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else "")
                + " of store "
                + f"{store.uri}: give the truth file of these videos, or --truth none to score against "
                "the original embedding's top-1 caption"
            )
    caption_index = {text: i for i, text in enumerate(bank.texts)}
    uris = dict(zip(*store.videos().select(["video_id", "uri"]).to_pydict().values()))
    tracks = {v.video_id: _track(store, v, uris.get(v.video_id, ""), truth, caption_index, bank) for v in videos}
    ratio = float(pretrained.pretrain["mask_ratio"] if ratio is None else ratio)
    results: dict[str, Reconstructions] = {}
    for rec in reconstruct(
        pretrained, store, videos, mask=mask, ratio=ratio, decoders=decoders, seed=seed, batch_windows=batch_windows
    ):
        valid = rec.batch.valid
        for b, w in enumerate(rec.batch.windows):
            track = tracks[w.video_id]
            hidden = rec.hidden[b, : w.length].numpy()
            track.hidden[w.start : w.stop] = hidden
            track.boundary[w.start : w.stop] = step_starts(track.step[w.start : w.stop])
            track.long_gap[w.start : w.stop] = long_gaps(hidden)
        for name, out in rec.decoded.items():
            acc = results.setdefault(name, Reconstructions(out.kind))
            vectors = {"reconstruction": out.pred, **baseline_vectors(rec.unit, valid, rec.hidden, out.index)}
            rows = out.keep.nonzero()  # (n_batch, 2): (window, slot)
            for b, s in rows.tolist():
                w = rec.batch.windows[b]
                acc.video.append(w.video_id)
                acc.position.append(w.start + int(out.index[b, s]))
            for m, v in vectors.items():
                top = bank.best(v[out.keep].numpy(), K)[1]  # (n_batch, K)
                acc.top[m].append(top.astype(np.int64))
        if progress is not None:
            progress(int(valid.sum()))
    return Inspection(
        bank=bank,
        truth_source=truth.source if truth is not None else None,
        checkpoint=pretrained.name,
        mask=mask,
        ratio=ratio,
        seed=seed,
        tracks=tracks,
        decoders={name: results.get(name, Reconstructions(name)) for name in decoders},
    )


def _track(
    store: Store, video: Video, uri: str, truth: Truth | None, caption_index: dict[str, int], bank: CaptionBank
) -> Track:
    seq = store.sequence(video.video_id, arrays=("emb", "importance", "span"))
    span = seq.get("span").astype(np.float64)
    T = len(span)
    if truth is None:
        label = bank.best(seq.get("emb").astype(np.float32), 1)[1][:, 0].astype(np.int64)
        captions: list[str | None] = [None] * T
        step = np.concatenate([[0], np.cumsum(label[1:] != label[:-1])]).astype(np.int64)
    else:
        captions, step = truth.labels(video.video_id, span)
        unknown = sorted({c for c in captions if c is not None and c not in caption_index})
        if unknown:
            raise RetrievalError(
                f"truth caption {unknown[0]!r} of video {video.video_id} ({truth.source}) is not in caption bank "
                f"{bank.source}: R@k against it would be 0 by construction; use the bank the truth was written with"
            )
        label = np.array([caption_index[c] if c is not None else -1 for c in captions], dtype=np.int64)
    return Track(
        video_id=video.video_id,
        uri=uri,
        span=span,
        importance=seq.get("importance").astype(np.float64),
        hidden=np.zeros(T, dtype=bool),
        label=label,
        truth=captions,
        step=step,
        boundary=np.zeros(T, dtype=bool),
        long_gap=np.zeros(T, dtype=bool),
    )


def videos_by_id(videos: Iterable[Video], video_id: str, store_uri: str) -> list[Video]:
    """The one video with this id, or a RetrievalError naming the store."""
    found = [v for v in videos if v.video_id == video_id]
    if not found:
        raise RetrievalError(f"video {video_id!r} is not among the inspected videos of store {store_uri}")
    return found


def run_inspection(
    store_uri: str,
    checkpoint: str | Path,
    *,
    encoder: EncoderConfig,
    retrieval: RetrievalConfig,
    captions: str | Path | None = None,
    truth: str | Path | None = "auto",
    mask: str = "random",
    ratio: float | None = None,
    decoders: tuple[str, ...] = ("trained", "all"),
    seed: int = 0,
    device: str = "auto",
    video: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[Inspection, str]:
    """(Inspection, which videos): the videos of the store at `store_uri` that checkpoint `checkpoint`
    did not train on (or the one `video`), inspected against the caption bank `captions` (default
    `retrieval.captions`), encoded with the store's own text tower (`encoder`) and cached in
    `cache_dir`. `truth`: a truth parquet, "auto" (the toy world's beside the videos) or None."""
    from lvmae.evaluation.reconstruction import held_out_videos
    from lvmae.evaluation.truth import resolve_truth
    from lvmae.pretrain.checkpoint import load_pretrained
    from lvmae.pretrain.data import ok_videos
    from lvmae.retrieval.captions import query_precision, store_bank

    check_ratio(ratio)
    store = Store.open(store_uri)
    pretrained = load_pretrained(checkpoint, resolve_device(device))
    try:
        videos, which = held_out_videos(pretrained, store)
    except ValueError as exc:
        raise RetrievalError(str(exc)) from None
    if video is not None:
        if video not in {v.video_id for v in videos} and video in {v.video_id for v in ok_videos(store)}:
            raise RetrievalError(
                f"video {video} is one checkpoint {checkpoint} trained on: inspect a video it did not see ({which})"
            )
        videos, which = videos_by_id(videos, video, store.uri), f"video {video}"
    bank = store_bank(
        captions or retrieval.captions,
        store.uri,
        store.identity.to_attrs(),
        encoder,
        precision=query_precision(retrieval.text_precision, encoder.device),
        cache_dir=cache_dir,
    )
    uris = store.videos().column("uri").to_pylist()
    with bar(
        total=sum(v.n_segments for v in videos), desc="inspect", unit="seg", disable=None if progress else True
    ) as pbar:
        inspection = inspect_reconstructions(
            pretrained,
            store,
            bank,
            videos,
            truth=resolve_truth(truth, uris),
            mask=mask,
            ratio=ratio,
            decoders=decoders,
            seed=seed,
            progress=pbar.update,
        )
    return inspection, which


def rk(x: float | None) -> str:
    """An R@k figure as tables print it ("–" for an empty split)."""
    return "–" if x is None else f"{x:.2f}"


def metrics_table(metrics: dict) -> str:
    """The R@1 / R@5 table of `Inspection.metrics()`: a block per decoder, a row per split, a column per method."""
    methods = ["reconstruction", "copy_nearest", "interpolate", "video_mean", "original"]
    width = 15
    lines = [
        f"caption R@1 / R@5 against {metrics['truth']}; bank {metrics['bank_size']} captions, chance "
        f"{metrics['chance_r1']:.3f} / {metrics['chance_r5']:.3f}; {metrics['mask']} encoder mask, ratio "
        f"{metrics['ratio']:g}, seed {metrics['seed']}; {metrics['videos']} videos, {metrics['segments']:,} segments"
    ]
    for name, decoder in metrics["decoders"].items():
        lines.append("")
        lines.append(
            f"decoder {name} ({decoder['decoder_mask']})".ljust(24)
            + "segments".rjust(9)
            + "".join(METHOD_NAMES[m].rjust(width) for m in methods)
        )
        for split, row in decoder["splits"].items():
            cells = "".join(
                f"{rk(row['methods'][m]['r1'])} / {rk(row['methods'][m]['r5'])}".rjust(width) for m in methods
            )
            lines.append(f"  {split}".ljust(24) + f"{row['segments']:,}".rjust(9) + cells)
    return "\n".join(lines)
