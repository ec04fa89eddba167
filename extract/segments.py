"""Cut a video into segments and take each segment's frames for both models in one decoding pass.

Shape legend: `n` segments, `F` clip frames per segment (image encoder), `T` tokenizer frames per
segment, `S` encoder input side, `s` tokenizer side.

How frames are chosen (all times are presentation times, in seconds from the stream's start):

- Segments are `[k L, (k+1) L)` for segment length `L`; a trailing partial segment is kept when
  it is at least `min_fraction * L` long. The video's duration is its last frame's timestamp plus
  that frame's duration.
- Clip frames: the segment is split into `F` equal parts and the frame on screen at the centre of
  each part is taken: `t_i = t_start + (i + 0.5) (t_end - t_start) / F`.
- Tokenizer frames: `T` consecutive frames at `tok_fps`, centred on the segment's midpoint:
  `t_j = mid + (j - (T - 1) / 2) / tok_fps`, clamped into the segment.
- "The frame on screen at t" is the last frame whose timestamp is <= t (the first frame for times
  before it), which holds for variable frame rates too. With `extract.sparse_decode` (the default)
  a sample is instead the nearest decoded frame within half its sample interval (`sample_times`:
  the clip part's length, 1 / `tok_fps`), or the frame on screen when none is that close, and only
  the frames the samples need are decoded (`extract.sparse`). Only frames that are on screen at some
  wanted time are converted to RGB, each once per size, and converted frames are resized in FFmpeg:
  encoder frames to the model's side (short side, then centre crop, what open_clip's transform does),
  tokenizer frames to `s` x `s` the same way.

The plan follows the decoded timestamps, never the container's declared duration, which can be
wrong by any factor: segment k is planned as a full segment once a frame has passed its start, and
handed on (in chunks) once a frame has passed its end. So memory holds about one chunk whatever the
video's length or its metadata say. Only the trailing partial segment depends on where the stream
ends. The declared duration predicts it, and its frames are taken alongside in the same pass (one
segment's worth of extra conversions), so a well-formed file is read once; when the prediction is
wrong, the last segment is read again from the keyframe before it (a short second pass, checked to
give the same frames). When the stream ends well before the declared duration (a truncated file) the
job is told, not padded: `TruncatedVideo`.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvmae.extract.decode import (
    ARRAYS,
    DecodeLimits,
    FrameSampler,
    Pixels,
    VideoError,
    check_budget,
    iter_av_frames,
    probe,
)
from lvmae.extract.sparse import SparseSchedule
from lvmae.foundation.schema import SegmentConfig


class TruncatedVideo(VideoError):
    """The stream ended well before the duration its container declares."""


def _full_count(duration: float, seconds: float) -> int:
    # The 1e-9 keeps a duration of exactly k segments from losing the last one to rounding.
    return int(np.floor(duration / seconds + 1e-9))


def _partial(duration: float, seconds: float, min_fraction: float) -> tuple[int, float] | None:
    """(index, end) of the trailing partial segment of a video `duration` s long, when it is kept."""
    full = _full_count(duration, seconds)
    rest = duration - full * seconds
    if rest >= min_fraction * seconds - 1e-9 and rest > 1e-9:
        return full, duration
    return None


def _full_spans(a: int, b: int, seconds: float) -> np.ndarray:
    """(b - a, 2) float64: full segments a..b-1."""
    starts = np.arange(a, b) * seconds
    return np.stack([starts, starts + seconds], axis=1) if b > a else np.zeros((0, 2))


def segment_spans(duration: float, seconds: float, min_fraction: float) -> np.ndarray:
    """(n, 2) float64 [t_start, t_end) of every segment of a video `duration` seconds long."""
    full = _full_count(duration, seconds)
    spans = _full_spans(0, full, seconds)
    tail = _partial(duration, seconds, min_fraction)
    if tail is not None:
        spans = np.concatenate([spans, [[full * seconds, duration]]])
    return spans


def clip_times(spans: np.ndarray, frames: int) -> np.ndarray:
    """(n, F): centres of F equal parts of each segment."""
    width = (spans[:, 1] - spans[:, 0])[:, None]
    return spans[:, :1] + (np.arange(frames)[None, :] + 0.5) * width / frames


def tok_times(spans: np.ndarray, frames: int, fps: float) -> np.ndarray:
    """(n, T): T consecutive frame times at `fps` centred on each segment's midpoint, clamped into it."""
    mid = spans.mean(axis=1, keepdims=True)
    t = mid + (np.arange(frames)[None, :] - (frames - 1) / 2) / fps
    # The clamp's upper end stays just inside [t_start, t_end): t_end itself belongs to the next segment.
    return np.clip(t, spans[:, :1], np.nextafter(spans[:, 1:], -np.inf))


Samples = tuple[np.ndarray, np.ndarray]  # times (n, k) and their tolerances (n, k)


def sample_times(spans: np.ndarray, spec: SegmentConfig) -> tuple[Samples, Samples]:
    """The clip samples (n, F) and the tokenizer samples (n, T) of segments `spans`: each the times and
    how far from its time each sample's frame may be, half its sample interval (a clip part's
    length; 1 / tok_fps)."""
    width = (spans[:, 1] - spans[:, 0])[:, None]
    clip_tol = np.broadcast_to(width / spec.clip_frames / 2, (len(spans), spec.clip_frames))
    tok_tol = np.full((len(spans), spec.tok_frames), 0.5 / spec.tok_fps)
    return (clip_times(spans, spec.clip_frames), clip_tol), (tok_times(spans, spec.tok_frames, spec.tok_fps), tok_tol)


def wanted_times(spec: SegmentConfig, tail: tuple[int, float] | None):
    """The `extract.sparse.Wanted` of a video's samples: every full segment's (a video without end)
    and those of the trailing partial segment `tail` (index, end) the container predicts."""

    def wanted(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        seconds = spec.seconds
        first, stop = math.floor(max(a, 0.0) / seconds), math.floor(max(b, 0.0) / seconds) + 1
        spans = [_full_spans(first, stop, seconds)]
        if tail is not None and first <= tail[0] < stop:
            spans.append(np.array([[tail[0] * seconds, tail[1]]]))
        times, tols = [], []
        for s in spans:
            for samples, tolerances in sample_times(s, spec):
                times.append(samples.ravel())
                tols.append(tolerances.ravel())
        t, tol = np.concatenate(times), np.concatenate(tols)
        keep = (t >= a) & (t < b)
        order = np.argsort(t[keep], kind="stable")
        return t[keep][order], tol[keep][order]

    return wanted


@dataclass
class SegmentChunk:
    """Consecutive segments of one video with the frames each model needs."""

    first: int  # index of the first segment in the video
    spans: np.ndarray  # (n, 2) float32 seconds
    clip: np.ndarray  # (n, F, S, S, 3) uint8 (a tensor on the encoder's device with `extract.nvdec`)
    tok: np.ndarray  # (n, T, s, s, 3) uint8 (likewise)
    clip_stamps: np.ndarray  # (n, F) timestamps of the frames taken
    tok_stamps: np.ndarray  # (n, T)


@dataclass
class VideoSummary:
    duration: float  # seconds, from the decoded frames
    fps: float  # average frame rate
    n_segments: int
    decoded: int = 0  # frames decoded (fewer than duration * fps with extract.sparse_decode)


def iter_segments(
    path: str | Path,
    spec: SegmentConfig,
    image_size: int,
    *,
    chunk: int = 32,
    summary: list | None = None,
    limits: DecodeLimits | None = None,
    pixels: Pixels = ARRAYS,
) -> Iterator[SegmentChunk]:
    """Yield a video's segments in chunks of `chunk` (the last may be shorter), decoding it once;
    appends a `VideoSummary` to `summary` at the end. `limits` bounds what the input may cost
    (default `DecodeLimits()`); `pixels` decodes and holds the frames (default: numpy arrays in
    software, `extract.nvdec.TensorPixels` on a GPU). Raises VideoError (or TruncatedVideo) on bad input."""
    segmenter = _Segmenter(path, spec, image_size, chunk, limits or DecodeLimits(), pixels)
    try:
        yield from segmenter.run(summary)
    except MemoryError as exc:
        raise VideoError(f"{path}: out of memory while extracting ({exc})", transient=True) from exc


# Sampler channels: full segments for each model, and the predicted trailing partial segment's.
CLIP, TOK, TAIL_CLIP, TAIL_TOK = 0, 1, 2, 3


class _Segmenter:
    """One video's segments, planned as its frames are decoded (see the module docstring)."""

    def __init__(self, path, spec: SegmentConfig, image_size: int, chunk: int, limits: DecodeLimits, pixels: Pixels):
        self.path, self.spec, self.chunk, self.limits, self.pixels = path, spec, chunk, limits, pixels
        self.seconds = spec.seconds
        clip, tok = np.zeros((0, spec.clip_frames)), np.zeros((0, spec.tok_frames))
        self.sampler = FrameSampler(
            path,
            [(clip, image_size), (tok, spec.tok_size), (clip, image_size), (tok, spec.tok_size)],
            limits=limits,
            pixels=pixels,
        )
        self.planned = 0  # full segments requested in CLIP / TOK
        self.done = 0  # segments handed on
        self.schedule: SparseSchedule | None = None  # with limits.sparse, the packets decoded

    def run(self, summary: list | None) -> Iterator[SegmentChunk]:
        path, seconds, sampler = self.path, self.seconds, self.sampler
        started = time.monotonic()
        declared = probe(path, limits=self.limits).duration
        if not math.isfinite(declared) or declared < 0:
            declared = 0.0
        # The trailing partial segment the container predicts: (index, end), planned once a frame passes
        # its start and dropped once one passes its end.
        predicted = _partial(declared, seconds, self.spec.min_fraction) if declared > 0 else None
        tail_planned = False
        if self.limits.sparse:
            self.schedule = SparseSchedule(wanted_times(self.spec, predicted))
        # Times of the frames from the one on screen at the start of the first segment not yet known to be
        # full: what a second reading of the last segment must reproduce.
        recent: deque[float] = deque()
        frames = 0
        for t, frame, rotation, duration in iter_av_frames(
            path, limits=self.limits, started=started, schedule=self.schedule, hwaccel=self.pixels.hwaccel
        ):
            frames += 1
            settled = _full_count(t, seconds)  # segments surely full: the stream goes on to t at least
            if predicted is not None:
                k, end = predicted
                if t > end:
                    predicted = None
                    for c in (TAIL_CLIP, TAIL_TOK):
                        sampler.rewind(c, 0)
                elif not tail_planned and k * seconds < t:
                    self._plan(np.array([[k * seconds, end]]), TAIL_CLIP, TAIL_TOK)
                    tail_planned = True
            # Segments whose start this frame passes, a chunk at a time: across a gap in the timestamps
            # (one frame on screen for long) they are handed on as they fill, not all held.
            wanted = self._starting_before(t)
            while self.planned < wanted:
                b = min(wanted, self.planned + self.chunk)
                self._plan(_full_spans(self.planned, b, seconds), CLIP, TOK)
                self.planned = b
                sampler.fill_before(t, frame, rotation)
                yield from self._ready(settled)
                check_budget(path, self.limits, started)
            sampler.feed(t, frame, rotation, duration)
            recent.append(t)
            while len(recent) >= 2 and recent[1] <= settled * seconds:
                recent.popleft()
            yield from self._ready(settled)
        sampler.finish()
        end = sampler.end_time
        if declared > 0 and end < declared - max(1.0, 0.05 * declared):
            raise TruncatedVideo(
                f"{path}: truncated: frames stop at {end:.2f} s of the {declared:.2f} s the file declares"
            )
        full, tail = _full_count(end, seconds), _partial(end, seconds, self.spec.min_fraction)
        n_segments = full + (tail is not None)
        if n_segments == 0:
            raise VideoError(
                f"{path}: {end:.2f} s is shorter than half a segment "
                f"({self.spec.min_fraction * seconds:.2f} s); no segment to extract"
            )
        tail_hit = tail_planned and predicted is not None and tail is not None and predicted[0] == tail[0]
        if tail_hit and not np.allclose(predicted[1], tail[1]):
            tail_hit = False
        rest = self._rest(full, tail, predicted if tail_hit else None, recent, started)
        yield from _regroup(rest, self.chunk, self.pixels)
        decoded = frames
        if self.schedule is not None:
            frames = self.schedule.packets  # the stream's frames, decoded or not
        if summary is not None:
            summary.append(VideoSummary(end, frames / end if end > 0 else 0.0, n_segments, decoded))

    def _starting_before(self, t: float) -> int:
        """How many segments start before t (the ones a frame at t may fill)."""
        n = max(0, math.ceil(t / self.seconds))
        while n > 0 and (n - 1) * self.seconds >= t:
            n -= 1
        while n * self.seconds < t:
            n += 1
        return n

    def _plan(self, spans: np.ndarray, clip_channel: int, tok_channel: int) -> None:
        # Without sparse decoding, no tolerance: each sample is the frame on screen at its time.
        for channel, (times, tol) in zip((clip_channel, tok_channel), sample_times(spans, self.spec)):
            self.sampler.extend(channel, times, tol if self.limits.sparse else None)  # (n, F), (n, T)

    def _ready(self, settled: int) -> Iterator[SegmentChunk]:
        ready = min(settled, self.sampler.filled(CLIP), self.sampler.filled(TOK))
        while self.done + self.chunk <= ready:
            a, b = self.done, self.done + self.chunk
            yield self._take(CLIP, TOK, a, b, _full_spans(a, b, self.seconds), a)
            self.done = b

    def _take(self, clip_channel: int, tok_channel: int, a: int, b: int, spans: np.ndarray, first: int):
        (clip, clip_ts), (tok, tok_ts) = self.sampler.take(clip_channel, a, b), self.sampler.take(tok_channel, a, b)
        return SegmentChunk(first, spans.astype(np.float32), clip, tok, clip_ts, tok_ts)

    def _rest(self, full: int, tail, predicted, recent, started) -> Iterator[SegmentChunk]:
        """The segments not yet handed on, once the stream has ended at `full` segments and `tail`."""
        seconds, sampler = self.seconds, self.sampler
        # Planned full segments past the real end were guesses; segments after the last frame's
        # timestamp were never planned and show the last frame (the sampler has finished, so rows
        # added now are filled with it at once).
        keep = min(full, self.planned)
        for c in (CLIP, TOK):
            sampler.rewind(c, keep)
        if keep > self.done:
            yield self._take(CLIP, TOK, self.done, keep, _full_spans(self.done, keep, seconds), self.done)
        for a in range(keep, full, self.chunk):
            b = min(full, a + self.chunk)
            self._plan(_full_spans(a, b, seconds), CLIP, TOK)
            yield self._take(CLIP, TOK, a, b, _full_spans(a, b, seconds), a)
            check_budget(self.path, self.limits, started)
        if tail is None:
            return
        k, end = tail
        if predicted is not None:
            span = np.array([[k * seconds, predicted[1]]])
            yield self._take(TAIL_CLIP, TAIL_TOK, 0, 1, span, k)
            return
        span = np.array([[k * seconds, end]])
        if k * seconds >= recent[-1]:
            self._plan(span, CLIP, TOK)  # after the last frame: it shows in every slot
        else:
            self._read_tail_again(k, span, list(recent), started)
        yield self._take(CLIP, TOK, k, k + 1, span, k)

    def _read_tail_again(self, k: int, span: np.ndarray, recent: list[float], started: float) -> None:
        """Fill segment k (the last, a partial one the container did not predict) from a second reading
        of the frames from the one on screen at its first wanted time, which must be the same frames
        (with sparse decoding, which the first reading used, a superset of them: this one decodes all)."""
        path, sampler, spec = self.path, self.sampler, self.spec
        first_wanted = min(
            clip_times(span, spec.clip_frames)[0, 0], tok_times(span, spec.tok_frames, spec.tok_fps)[0, 0]
        )
        t0 = recent[max(0, bisect_right(recent, first_wanted) - 1)]
        expected = recent[recent.index(t0) :]
        # The demuxer seeks by its index, which may find a keyframe after the one asked for (decode
        # times come before presentation times): look earlier, and at last read from the start.
        attempts = [t0 - margin for margin in (1.0, 10.0) if t0 - margin > 0] + [None]
        for seek_to in attempts:
            sampler.restart()
            for c in (CLIP, TOK):
                sampler.rewind(c, k)
            self._plan(span, CLIP, TOK)
            got, t = 0, None
            frames = iter_av_frames(
                path, limits=self.limits, started=started, seek_to=seek_to, hwaccel=self.pixels.hwaccel
            )
            try:
                for t, frame, rotation, duration in frames:
                    if t < t0:
                        continue
                    if t > expected[got] or (t != expected[got] and not self.limits.sparse):
                        break
                    sampler.feed(t, frame, rotation, duration)
                    got += t == expected[got]
                    if got == len(expected):
                        break
            finally:
                frames.close()
            if got == len(expected):
                sampler.finish()
                return
            if got > 0:
                raise VideoError(f"{path}: a second reading of the last segment gave other frames (at {t} s)")
        raise VideoError(f"{path}: a second reading of the last segment did not find the frame at {t0} s")


def _regroup(pieces: Iterator[SegmentChunk], chunk: int, pixels: Pixels) -> Iterator[SegmentChunk]:
    """Consecutive pieces of any size as chunks of `chunk` segments (the last may be shorter)."""
    held: list[SegmentChunk] = []
    for piece in pieces:
        held.append(piece)
        whole = _concat(held, pixels)
        while len(whole.spans) >= chunk:
            yield _cut(whole, 0, chunk)
            whole = _cut(whole, chunk, len(whole.spans))
        held = [whole] if len(whole.spans) else []
    if held:
        yield _concat(held, pixels)


def _concat(pieces: list[SegmentChunk], pixels: Pixels) -> SegmentChunk:
    if len(pieces) == 1:
        return pieces[0]
    return SegmentChunk(
        pieces[0].first,
        np.concatenate([p.spans for p in pieces]),
        pixels.concat([p.clip for p in pieces]),
        pixels.concat([p.tok for p in pieces]),
        np.concatenate([p.clip_stamps for p in pieces]),
        np.concatenate([p.tok_stamps for p in pieces]),
    )


def _cut(c: SegmentChunk, a: int, b: int) -> SegmentChunk:
    return SegmentChunk(c.first + a, c.spans[a:b], c.clip[a:b], c.tok[a:b], c.clip_stamps[a:b], c.tok_stamps[a:b])
