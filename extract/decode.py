"""Streaming video decoding with PyAV: frames by presentation time, resized in FFmpeg.

Shape legend: `F` frames, `H`/`W` height/width in pixels, `S` side of a square output.

Frames are never held whole: `frames_at` walks the stream once and keeps only the previous
frame, so a three-hour video costs the memory of the frames asked for. Times are presentation
times in seconds from the stream's start; "the frame at time t" is the one on screen at t, the
last frame whose timestamp is <= t, which is right for variable frame rate too. Rotation
metadata (a display matrix) is applied, so frames come out upright.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


class VideoError(RuntimeError):
    """A video cannot be read; the message names the file.

    `transient` says whether trying again may succeed: an I/O error, a missing file or mount, a
    timeout, running out of memory (True), against a corrupt file, no video stream or a video too
    short to segment (False, the default). `lvmae extract --retry-failed` retries the transient ones.
    """

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class VideoInfo:
    path: str
    duration: float  # seconds, from the container (0.0 when it does not say)
    fps: float  # average frame rate (0.0 when unknown)
    width: int  # as stored, before rotation
    height: int
    rotation: int  # degrees counter-clockwise to display upright (0, 90, 180, 270)


def _open(path: str | Path):
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot open: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream (audio-only or not a video)")
    return container


def probe(path: str | Path) -> VideoInfo:
    with _open(path) as container:
        stream = container.streams.video[0]
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate
        rotation = 0
        for frame in container.decode(stream):
            rotation = _rotation(frame)
            break
        return VideoInfo(
            str(path),
            duration,
            float(rate) if rate else 0.0,
            stream.codec_context.width,
            stream.codec_context.height,
            rotation,
        )


def _rotation(frame) -> int:
    # PyAV reports the display matrix rotation in degrees (counter-clockwise positive).
    return int(round(frame.rotation or 0)) % 360


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 0:
        return rgb
    # np.rot90 turns counter-clockwise, as the display matrix asks.
    return np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))


def _target_size(width: int, height: int, rotation: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) to ask FFmpeg for, in stored orientation, so the upright short side is `short_side`."""
    if short_side is None:
        return width, height
    up_w, up_h = (height, width) if rotation in (90, 270) else (width, height)
    scale = short_side / min(up_w, up_h)
    new_up_w, new_up_h = max(short_side, round(up_w * scale)), max(short_side, round(up_h * scale))
    return (new_up_h, new_up_w) if rotation in (90, 270) else (new_up_w, new_up_h)


def center_crop(rgb: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) -> (side, side, 3), the centre square."""
    h, w = rgb.shape[:2]
    top, left = (h - side) // 2, (w - side) // 2
    return rgb[top : top + side, left : left + side]


def iter_av_frames(path: str | Path) -> Iterator[tuple[float, av.VideoFrame, int, float]]:
    """Yield (time s, decoded frame, rotation, frame duration s) in presentation order, unconverted:
    callers convert only the frames they keep (`to_rgb`), which is most of decoding's cost saved."""
    container = _open(path)
    last_pts = None
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads: ~10 % faster here on h264
        start = stream.start_time or 0
        rate = stream.average_rate or stream.guessed_rate
        default_duration = 1.0 / float(rate) if rate else 0.0
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            # Some containers repeat or reorder timestamps; presentation order must increase.
            if last_pts is not None and frame.pts <= last_pts:
                continue
            last_pts = frame.pts
            duration = float(frame.duration * stream.time_base) if frame.duration else default_duration
            yield float((frame.pts - start) * stream.time_base), frame, _rotation(frame), duration
    except av.FFmpegError as exc:
        where = (
            f"after {float((last_pts - start) * stream.time_base):.2f} s" if last_pts is not None else "at the start"
        )
        raise VideoError(f"{path}: decoding failed {where} ({exc})") from exc
    finally:
        container.close()


def to_rgb(frame: av.VideoFrame, rotation: int, short_side: int | None = None, *, crop: bool = True) -> np.ndarray:
    """An upright RGB array of `frame`; with `short_side`, resized in FFmpeg so the upright short side
    has that length, then (with `crop`) cut to the centre square."""
    width, height = _target_size(frame.width, frame.height, rotation, short_side)
    rgb = _upright(frame.to_ndarray(format="rgb24", width=width, height=height), rotation)
    if crop and short_side is not None:
        rgb = center_crop(rgb, short_side)
    return rgb


def iter_frames(
    path: str | Path, *, short_side: int | None = None, crop: bool = False
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (time in seconds, upright RGB frame) for every decoded frame, in presentation order.

    With `short_side`, FFmpeg resizes (cheaper than numpy) so the upright short side has that
    length; with `crop` as well, the centre square is returned.
    """
    for t, frame, rotation, _ in iter_av_frames(path):
        yield t, to_rgb(frame, rotation, short_side, crop=crop)


class FrameSampler:
    """Fills requested (time -> frame) slots of several channels in one pass over a video's frames.

    Channel c asks for frames at `times` (n, k), non-decreasing in reading order, each converted at
    its own `side` (short side, centre-cropped; None keeps the decoded size). A frame is converted
    at most once per side, and only if it is on screen at some requested time. `run()` yields how
    many leading rows are filled in every channel as frames arrive; `take` hands rows over and frees
    them, so memory holds only rows not yet taken. Rows still open when the stream ends are filled
    with the last frame once `run()` is exhausted (not yielded: callers decide what a tail means).
    """

    def __init__(self, path: str | Path, channels: Sequence[tuple[np.ndarray, int | None]]):
        self.path = path
        self.channels = [(np.asarray(times, dtype=np.float64), side) for times, side in channels]
        for times, _ in self.channels:
            if times.size and np.any(np.diff(times.reshape(-1)) < 0):
                raise ValueError("requested times must be non-decreasing")
        self.out = [[None] * times.size for times, _ in self.channels]
        self.stamps = [np.full(times.shape, np.nan) for times, _ in self.channels]
        self.end_time = 0.0  # last frame's time + its duration, once run() has finished
        self.frames = 0  # frames decoded

    def run(self) -> Iterator[int]:
        flat = [times.reshape(-1) for times, _ in self.channels]
        pos = [0] * len(flat)
        rows_done = 0
        previous, prev_cache = None, {}  # last frame and its conversions by side
        last_duration = 0.0
        for t, frame, rotation, duration in iter_av_frames(self.path):
            self.frames += 1
            current, cur_cache = (t, frame, rotation), {}
            # Times before this frame show the previous one (or this first frame, for times before it).
            shown, cache = (previous, prev_cache) if previous is not None else (current, cur_cache)
            for c, times in enumerate(flat):
                while pos[c] < len(times) and times[pos[c]] < t:
                    self._fill(c, pos[c], shown, cache)
                    pos[c] += 1
            previous, prev_cache = current, cur_cache
            last_duration = duration
            rows = min(p // max(1, times.shape[1]) for p, (times, _) in zip(pos, self.channels))
            if rows > rows_done:
                rows_done = rows
                yield rows_done
        if previous is None:
            raise VideoError(f"{self.path}: no decodable video frame")
        for c, times in enumerate(flat):
            while pos[c] < len(times):
                self._fill(c, pos[c], previous, prev_cache)
                pos[c] += 1
        self.end_time = previous[0] + last_duration

    def _fill(self, c: int, slot: int, shown, cache: dict) -> None:
        t, frame, rotation = shown
        side = self.channels[c][1]
        if side not in cache:
            cache[side] = to_rgb(frame, rotation, side)
        self.out[c][slot] = cache[side]
        self.stamps[c].flat[slot] = t

    def take(self, c: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [a, b) of channel c: frames (b - a, k, H, W, 3) uint8 and their timestamps (b - a, k)."""
        k = self.channels[c][0].shape[1]
        slots = self.out[c][a * k : b * k]
        frames = np.stack(slots).reshape(b - a, k, *slots[0].shape) if slots else np.zeros((0, k, 0, 0, 3), np.uint8)
        self.out[c][a * k : b * k] = [None] * ((b - a) * k)
        return frames, self.stamps[c][a:b]


def frames_at(
    path: str | Path, times: Sequence[float], *, short_side: int | None = None, crop: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The frames on screen at each of `times` (seconds, non-decreasing), decoding the video once.

    Returns (frames (F, H, W, 3) uint8, their own timestamps (F,)). A time before the first frame
    gets the first frame; a time after the last gets the last. Raises VideoError when the file has
    no decodable frame.
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1, 1)
    side = short_side if crop else None
    if short_side is not None and not crop:
        raise ValueError("frames_at resizes with a centre crop only (crop=True); use iter_frames otherwise")
    sampler = FrameSampler(path, [(times, side)])
    for _ in sampler.run():
        pass
    frames, stamps = sampler.take(0, 0, len(times))
    return frames[:, 0], stamps[:, 0]
