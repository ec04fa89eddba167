"""Streaming video decoding with PyAV: frames by presentation time, resized in FFmpeg.

Shape legend: `F` frames, `H`/`W` height/width in pixels, `S` side of a square output.

Frames are never held whole: `frames_at` walks the stream once and keeps only the previous
frame, so a three-hour video costs the memory of the frames asked for. Times are presentation
times in seconds from the stream's start; "the frame at time t" is the one on screen at t, the
last frame whose timestamp is <= t, which is right for variable frame rate too. Rotation
metadata (a display matrix) is applied, so frames come out upright.

What one input may cost is bounded by `DecodeLimits` (from `extract.*` settings): only regular
local files and URIs of the accepted schemes are opened (a FIFO or a device would block the
worker), network inputs open and read under timeouts, a video's decoding has a wall-time budget,
and frames too large or too elongated are refused before they are converted.
"""

from __future__ import annotations

import math
import os
import re
import stat
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import av
import numpy as np
from av.video.reformatter import VideoReformatter

if TYPE_CHECKING:
    from lvmae.extract.sparse import SparseSchedule
    from lvmae.foundation.schema import ExtractConfig


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
class DecodeLimits:
    """What opening and decoding one input may cost. The defaults accept local files only, bound
    network waits and nothing else; `from_config` takes the `extract.*` settings."""

    schemes: tuple[str, ...] = ()  # URI schemes accepted besides local files (http, https, ...)
    open_timeout_s: float | None = 30.0  # a network input's open (connect, headers, probing)
    read_timeout_s: float | None = 30.0  # a network input's longest stall while reading
    video_timeout_s: float | None = None  # wall time of one video's decoding, from its open
    max_pixels: int | None = None  # width * height of a frame
    max_aspect: float | None = None  # long side / short side of a frame
    threads: int = 0  # decoder threads (0: FFmpeg's choice, one per core)
    sparse: bool = False  # segment decoding skips the frames no sampler needs (extract.sparse_decode)

    @classmethod
    def from_config(cls, ex: ExtractConfig) -> DecodeLimits:
        return cls(
            schemes=tuple(ex.schemes),
            open_timeout_s=ex.open_timeout_s,
            read_timeout_s=ex.read_timeout_s,
            video_timeout_s=ex.video_timeout_s,
            max_pixels=ex.max_pixels,
            max_aspect=ex.max_aspect,
            # A decode task reserves decode_num_cpus; more FFmpeg threads would take other tasks' cores.
            threads=math.ceil(ex.decode_num_cpus),
            sparse=ex.sparse_decode,
        )


@dataclass(frozen=True)
class VideoInfo:
    path: str
    duration: float  # seconds, from the container (0.0 when it does not say)
    fps: float  # average frame rate (0.0 when unknown)
    width: int  # as stored, before rotation
    height: int
    rotation: int  # degrees counter-clockwise to display upright (0, 90, 180, 270)


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
# HTTP answers that say the request itself is wrong: asking again gets the same answer.
_PERMANENT_HTTP = (
    av.error.HTTPBadRequestError,
    av.error.HTTPUnauthorizedError,
    av.error.HTTPForbiddenError,
    av.error.HTTPNotFoundError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether trying again may succeed: a timeout (FFmpeg's exit on our interrupt), an I/O or
    network error, memory, a server error or too many requests; not corrupt data."""
    if isinstance(exc, _PERMANENT_HTTP):
        return False
    return isinstance(exc, (OSError, MemoryError, av.error.ExitError, av.error.HTTPError, av.error.HTTPClientError))


def _source(path: str | Path, limits: DecodeLimits) -> tuple[str, bool]:
    """(what to give av.open, whether it is a network input). A local file is checked with os.stat
    first: opening a FIFO or a device would block, and FFmpeg would read a folder as an error."""
    text = os.fspath(path)
    match = _SCHEME.match(text)
    if match is not None and match.group(1).lower() != "file":
        scheme = match.group(1).lower()
        if scheme not in {s.lower() for s in limits.schemes}:
            raise VideoError(
                f"{path}: inputs of scheme {scheme!r} are not accepted; add {scheme} to extract.schemes to read them"
            )
        return text, True
    local = urllib.parse.unquote(urllib.parse.urlsplit(text).path) if match is not None else text
    try:
        mode = os.stat(local).st_mode
    except FileNotFoundError as exc:
        raise VideoError(f"{path}: no such file (missing, or its disk is not mounted)", transient=True) from exc
    except OSError as exc:
        raise VideoError(f"{path}: cannot stat: {exc}", transient=True) from exc
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        raise VideoError(f"{path}: is {kind}, not a regular file")
    # An absolute path, so that FFmpeg never reads a name like "concat:x" or "pipe:0" as a protocol.
    return os.path.abspath(local), False


def _open(path: str | Path, *, limits: DecodeLimits | None = None, hwaccel=None):
    limits = limits or DecodeLimits()
    source, network = _source(path, limits)
    timeout = None
    if network and (limits.open_timeout_s is not None or limits.read_timeout_s is not None):
        timeout = (limits.open_timeout_s, limits.read_timeout_s)
    try:
        container = av.open(source, mode="r", timeout=timeout, hwaccel=hwaccel)
    except av.error.ExitError as exc:
        raise VideoError(
            f"{path}: cannot open: no answer within extract.open_timeout_s = {limits.open_timeout_s:g} s",
            transient=True,
        ) from exc
    except (av.FFmpegError, OSError, MemoryError) as exc:
        raise VideoError(f"{path}: cannot open: {exc}", transient=is_transient(exc)) from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream (audio-only or not a video)")
    try:
        stream = container.streams.video[0]
        _check_size(path, stream.codec_context.width, stream.codec_context.height, limits)
    except VideoError:
        container.close()
        raise
    return container


def _check_size(path, width: int, height: int, limits: DecodeLimits) -> None:
    """Refuse frames over the pixel or aspect limit (0 x 0: size not known yet, checked on the first frame)."""
    if width <= 0 or height <= 0:
        return
    if limits.max_pixels is not None and width * height > limits.max_pixels:
        raise VideoError(
            f"{path}: frames of {width}x{height} are {width * height} pixels, "
            f"more than extract.max_pixels = {limits.max_pixels}"
        )
    aspect = max(width, height) / min(width, height)
    if limits.max_aspect is not None and aspect > limits.max_aspect:
        raise VideoError(
            f"{path}: frames of {width}x{height} have an aspect of {aspect:.2f}, "
            f"more than extract.max_aspect = {limits.max_aspect:g}"
        )


def check_budget(path, limits: DecodeLimits, started: float) -> None:
    """Raise a transient VideoError once a video's decoding, begun at `started` (time.monotonic()),
    has run past `limits.video_timeout_s`."""
    if limits.video_timeout_s is not None and time.monotonic() - started > limits.video_timeout_s:
        raise VideoError(
            f"{path}: took longer than extract.video_timeout_s = {limits.video_timeout_s:g} s", transient=True
        )


def probe(path: str | Path, *, limits: DecodeLimits | None = None) -> VideoInfo:
    with _open(path, limits=limits) as container:
        stream = container.streams.video[0]
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate
        rotation = 0
        try:
            for frame in container.decode(stream):
                rotation = _rotation(frame)
                break
        except (av.FFmpegError, OSError, MemoryError) as exc:
            raise VideoError(f"{path}: decoding failed at the start ({exc})", transient=is_transient(exc)) from exc
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


def resized_size(width: int, height: int, rotation: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) to ask FFmpeg for, in stored orientation, so the upright short side is `short_side`."""
    if short_side is None:
        return width, height
    up_w, up_h = (height, width) if rotation in (90, 270) else (width, height)
    scale = short_side / min(up_w, up_h)
    new_up_w, new_up_h = max(short_side, round(up_w * scale)), max(short_side, round(up_h * scale))
    return (new_up_h, new_up_w) if rotation in (90, 270) else (new_up_w, new_up_h)


def center_crop_box(h: int, w: int, side: int) -> tuple[int, int]:
    """(top, left) of the centre square of `side` in an image of h x w."""
    return (h - side) // 2, (w - side) // 2


def center_crop(rgb: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) -> (side, side, 3), the centre square, in memory of its own."""
    h, w = rgb.shape[:2]
    if (h, w) == (side, side) and rgb.flags.owndata:
        return rgb
    top, left = center_crop_box(h, w, side)
    # A copy: a view would keep the whole resized frame alive while the crop waits in a chunk
    # (1.8x the square for 16:9, far more for a strip).
    return rgb[top : top + side, left : left + side].copy()


def iter_av_frames(
    path: str | Path,
    *,
    limits: DecodeLimits | None = None,
    started: float | None = None,
    seek_to: float | None = None,
    schedule: SparseSchedule | None = None,
    hwaccel: av.codec.hwaccel.HWAccel | None = None,
) -> Iterator[tuple[float, av.VideoFrame, int, float]]:
    """Yield (time s, decoded frame, rotation, frame duration s) in presentation order, unconverted:
    callers convert only the frames they keep (`to_rgb`), which is most of decoding's cost saved.

    `started` (time.monotonic()) is when the video's `limits.video_timeout_s` budget began (default:
    now, before the open). With `seek_to`, decoding starts at the keyframe at or before that time as
    the demuxer finds it: earlier frames may come too, all of them when the input cannot seek, and a
    bad index may land later, which callers that need a frame exactly must check. With `schedule`
    (`extract.sparse.SparseSchedule`), only the frames it keeps are decoded. With `hwaccel`, FFmpeg
    decodes on that device (`extract.nvdec`) where the codec allows, in software otherwise.
    """
    limits = limits or DecodeLimits()
    started = time.monotonic() if started is None else started
    container = _open(path, limits=limits, hwaccel=hwaccel)
    last_pts = None
    start = 0
    try:
        stream = container.streams.video[0]
        if hwaccel is None:  # a hardware decoder's threads are FFmpeg's business
            stream.thread_type = "AUTO"  # frame + slice threads: ~10 % faster here on h264
            if limits.threads > 0:
                stream.thread_count = limits.threads
        start = stream.start_time or 0
        rate = stream.average_rate or stream.guessed_rate
        default_duration = 1.0 / float(rate) if rate else 0.0
        num, den = stream.time_base.numerator, stream.time_base.denominator

        def seconds(pts: int) -> float:  # exactly float((pts - start) * time_base), without a Fraction
            return (pts - start) * num / den

        if seek_to is not None and seek_to > 0:
            try:
                container.seek(start + int(round(seek_to / stream.time_base)), stream=stream, backward=True)
            except av.FFmpegError:
                pass  # not seekable: decode from the start, which is a superset of what was asked
        size = (0, 0)
        demuxed = container.demux(stream)
        packets: Iterator[tuple[av.Packet, str | None]] = (
            schedule(demuxed, seconds) if schedule is not None else ((packet, None) for packet in demuxed)
        )
        how = None  # FFmpeg's default: decode every frame
        # Packets, not frames, are the loop: a stream whose packets yield no frame still meets the budget.
        for packet, wanted in packets:
            check_budget(path, limits, started)
            if schedule is not None:
                if wanted is None:
                    continue
                if wanted != how:
                    stream.codec_context.skip_frame = how = wanted
            for frame in packet.decode():
                if (frame.width, frame.height) != size:  # checked again if the size changes mid-stream
                    size = (frame.width, frame.height)
                    _check_size(path, *size, limits)
                if frame.pts is None:
                    continue
                # Some containers repeat or reorder timestamps; presentation order must increase.
                if last_pts is not None and frame.pts <= last_pts:
                    continue
                last_pts = frame.pts
                duration = float(frame.duration * stream.time_base) if frame.duration else default_duration
                yield seconds(frame.pts), frame, _rotation(frame), duration
    except (av.FFmpegError, OSError, MemoryError) as exc:
        where = (
            f"after {float((last_pts - start) * stream.time_base):.2f} s" if last_pts is not None else "at the start"
        )
        if isinstance(exc, av.error.ExitError):
            raise VideoError(
                f"{path}: reading stalled {where} for longer than extract.read_timeout_s = {limits.read_timeout_s:g} s",
                transient=True,
            ) from exc
        raise VideoError(f"{path}: decoding failed {where} ({exc})", transient=is_transient(exc)) from exc
    finally:
        container.close()


def to_rgb(
    frame: av.VideoFrame,
    rotation: int,
    short_side: int | None = None,
    *,
    crop: bool = True,
    reformatter: VideoReformatter | None = None,
) -> np.ndarray:
    """An upright RGB array of `frame`; with `short_side`, resized in FFmpeg so the upright short side
    has that length, then (with `crop`) cut to the centre square. A `reformatter` kept for frames of
    one size and side keeps FFmpeg's scaler set up between them (the same pixels, a quarter to 40 %
    less time at 720p); without one, each frame sets one up."""
    width, height = resized_size(frame.width, frame.height, rotation, short_side)
    if reformatter is not None:
        frame = reformatter.reformat(frame, width=width, height=height, format="rgb24")
        width = height = None  # converted already
    rgb = _upright(frame.to_ndarray(format="rgb24", width=width, height=height), rotation)
    if crop and short_side is not None:
        rgb = center_crop(rgb, short_side)
    return rgb


class Pixels(Protocol):
    """How sampled frames are converted and held: numpy arrays from FFmpeg's scaler (`ArrayPixels`, the
    CPU path), or tensors on the encoder's device (`extract.nvdec.TensorPixels`). `hwaccel` is what
    `iter_av_frames` decodes with (None: software)."""

    hwaccel: av.codec.hwaccel.HWAccel | None

    def convert(self, frame: av.VideoFrame, rotation: int, side: int | None): ...  # (H, W, 3) uint8, upright

    def stack(self, frames: list): ...

    def concat(self, parts: list): ...

    def zeros(self, shape: tuple[int, ...]): ...


class ArrayPixels:
    """Frames as numpy arrays, converted by FFmpeg (`to_rgb`), with one scaler per side and thread."""

    hwaccel = None

    def __init__(self):
        self._local = threading.local()

    def convert(self, frame: av.VideoFrame, rotation: int, side: int | None) -> np.ndarray:
        reformatters = self._local.__dict__.setdefault("by_side", {})
        if side not in reformatters:
            reformatters[side] = VideoReformatter()
        return to_rgb(frame, rotation, side, reformatter=reformatters[side])

    def stack(self, frames: list) -> np.ndarray:
        return np.stack(frames)

    def concat(self, parts: list) -> np.ndarray:
        return np.concatenate(parts)

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.uint8)


ARRAYS = ArrayPixels()


def iter_frames(
    path: str | Path, *, short_side: int | None = None, crop: bool = False, limits: DecodeLimits | None = None
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (time in seconds, upright RGB frame) for every decoded frame, in presentation order.

    With `short_side`, FFmpeg resizes (cheaper than numpy) so the upright short side has that
    length; with `crop` as well, the centre square is returned.
    """
    for t, frame, rotation, _ in iter_av_frames(path, limits=limits):
        yield t, to_rgb(frame, rotation, short_side, crop=crop)


class _Channel:
    """One channel's slots: requested times in reading order, `k` to a row, and what filled them.
    Slots before `base` were taken and are forgotten, so the lists span only rows not yet taken."""

    def __init__(self, k: int, side: int | None):
        self.k, self.side = k, side
        self.base = 0  # absolute index of the first slot still held
        self.times: list[float] = []
        self.tolerances: list[float] = []  # how far from its time each slot's frame may be (0: on screen)
        self.out: list[np.ndarray | None] = []
        self.stamps: list[float] = []
        self.pos = 0  # absolute index of the next slot to fill

    def end(self) -> int:
        return self.base + len(self.times)


class FrameSampler:
    """Fills requested (time -> frame) slots of several channels in one pass over a video's frames.

    Channel c asks for frames at `times` (n, k), non-decreasing in reading order, each converted at
    its own `side` (short side, centre-cropped; None keeps the decoded size). A slot shows the frame on
    screen at its time, or, when it is given a tolerance, the nearer of the frames fed just before and
    just after its time if that one is within the tolerance: so a decoder that skips frames no slot
    needs (`extract.sparse_decode`) still fills each slot within its tolerance. `extend` appends rows
    while frames are being fed, so a plan can follow the decoding. A frame is converted at most once
    per side, and only if some slot takes it. `run()` decodes the video and
    yields how many leading rows are filled in every channel as frames arrive; callers that decode
    themselves `feed` frames and `finish`, extending rows before feeding any frame after their times. `take` hands rows over and frees them, so memory holds only
    rows not yet taken. Rows still open when the stream ends are filled with the last frame by
    `finish` (callers decide what a tail means), and so are rows added after it. `pixels` converts
    and holds the frames (default: numpy arrays, `ArrayPixels`).
    """

    def __init__(
        self,
        path: str | Path,
        channels: Sequence[tuple[np.ndarray, int | None]],
        *,
        limits: DecodeLimits | None = None,
        pixels: Pixels = ARRAYS,
    ):
        self.path, self.limits, self.pixels = path, limits, pixels
        self.end_time = 0.0  # last frame's time + its duration, once finished
        self.frames = 0  # frames fed
        self.restart()
        self.channels: list[_Channel] = []
        for times, side in channels:
            times = np.asarray(times, dtype=np.float64)
            self.channels.append(_Channel(times.shape[1], side))
            self.extend(len(self.channels) - 1, times)

    def restart(self) -> None:
        """Forget the frames seen (not the slots filled), to feed frames from an earlier time again."""
        self._prev = None  # (t, frame, rotation) on screen until the next frame, and its conversions by side
        self._prev_cache: dict = {}
        self._next = None  # the frame about to be fed, when slots before it are filled early
        self._next_cache: dict = {}
        self._last_duration = 0.0
        self.finished = False

    def extend(self, c: int, times: np.ndarray, tolerances: np.ndarray | None = None) -> None:
        """Append rows (m, k) of requested times to channel c, with how far (seconds, same shape) each
        slot's frame may be from its time (default 0: the frame on screen); after `finish` they show the
        last frame."""
        ch = self.channels[c]
        flat = np.asarray(times, dtype=np.float64).reshape(-1)
        tol = np.zeros(flat.size) if tolerances is None else np.broadcast_to(tolerances, np.shape(times)).reshape(-1)
        if flat.size and (np.any(np.diff(flat) < 0) or (ch.times and flat[0] < ch.times[-1])):
            raise ValueError("requested times must be non-decreasing")
        if flat.size and self._prev is not None and flat[0] < self._prev[0]:
            # The frame on screen then may be gone already: plan a time before feeding any frame after it.
            raise ValueError("requested times must not be before the last frame fed")
        ch.times.extend(flat.tolist())
        ch.tolerances.extend(np.asarray(tol, dtype=np.float64).tolist())
        ch.out.extend([None] * flat.size)
        ch.stamps.extend([math.nan] * flat.size)
        if self.finished:
            self._fill_rest(ch)

    def rewind(self, c: int, row: int) -> None:
        """Drop channel c's rows from `row` on (requested, filled or not), to plan them again."""
        ch = self.channels[c]
        cut = row * ch.k - ch.base
        if cut < 0:
            raise ValueError("cannot rewind into rows already taken")
        del ch.times[cut:], ch.tolerances[cut:], ch.out[cut:], ch.stamps[cut:]
        ch.pos = min(ch.pos, ch.base + cut)

    def filled(self, c: int) -> int:
        """Leading rows of channel c whose every slot is filled."""
        ch = self.channels[c]
        return ch.pos // max(1, ch.k)

    def fill_before(self, t: float, frame: av.VideoFrame, rotation: int) -> None:
        """Fill the slots requested before `t`, the time of `frame` (the next frame to be fed): they
        show the previous frame, or this one when it is the first or, within a slot's tolerance, the
        nearer. Callers planning across a long gap call this between rows; `feed` calls it too."""
        if self._next is None or self._next[1] is not frame:
            self._next, self._next_cache = (t, frame, rotation), {}
        for ch in self.channels:
            while ch.pos < ch.end() and ch.times[ch.pos - ch.base] < t:
                wanted, tol = ch.times[ch.pos - ch.base], ch.tolerances[ch.pos - ch.base]
                if self._prev is None or (t - wanted <= tol and t - wanted < wanted - self._prev[0]):
                    self._fill(ch, ch.pos, self._next, self._next_cache)
                else:
                    self._fill(ch, ch.pos, self._prev, self._prev_cache)
                ch.pos += 1

    def feed(self, t: float, frame: av.VideoFrame, rotation: int, duration: float) -> None:
        """The next frame in presentation order: fills the slots before `t`, then is on screen."""
        self.fill_before(t, frame, rotation)
        self.frames += 1
        self._prev, self._prev_cache = self._next, self._next_cache
        self._next, self._next_cache = None, {}
        self._last_duration = duration

    def finish(self) -> None:
        """The stream ended: open slots show the last frame. Raises VideoError when no frame came."""
        if self._prev is None:
            raise VideoError(f"{self.path}: no decodable video frame")
        self.finished = True
        for ch in self.channels:
            self._fill_rest(ch)
        self.end_time = self._prev[0] + self._last_duration

    def run(self) -> Iterator[int]:
        rows_done = 0
        for t, frame, rotation, duration in iter_av_frames(self.path, limits=self.limits, hwaccel=self.pixels.hwaccel):
            self.feed(t, frame, rotation, duration)
            rows = min(self.filled(c) for c in range(len(self.channels)))
            if rows > rows_done:
                rows_done = rows
                yield rows_done
        self.finish()

    def _fill_rest(self, ch: _Channel) -> None:
        while ch.pos < ch.end():
            self._fill(ch, ch.pos, self._prev, self._prev_cache)
            ch.pos += 1

    def _fill(self, ch: _Channel, slot: int, shown, cache: dict) -> None:
        t, frame, rotation = shown
        if ch.side not in cache:
            cache[ch.side] = self.pixels.convert(frame, rotation, ch.side)
        ch.out[slot - ch.base] = cache[ch.side]
        ch.stamps[slot - ch.base] = t

    def take(self, c: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [a, b) of channel c: frames (b - a, k, H, W, 3) uint8 and their timestamps (b - a, k)."""
        ch = self.channels[c]
        k = ch.k
        lo, hi = a * k - ch.base, b * k - ch.base
        if lo < 0:
            raise ValueError("rows already taken")
        slots = ch.out[lo:hi]
        frames = (
            self.pixels.stack(slots).reshape(b - a, k, *slots[0].shape) if slots else self.pixels.zeros((0, k, 0, 0, 3))
        )
        stamps = np.array(ch.stamps[lo:hi], dtype=np.float64).reshape(b - a, k)
        if lo == 0:  # taken in order: forget them, so a long video's bookkeeping stays one window long
            del ch.times[:hi], ch.tolerances[:hi], ch.out[:hi], ch.stamps[:hi]
            ch.base += hi
        else:
            ch.out[lo:hi] = [None] * (hi - lo)
        return frames, stamps


def frames_at(
    path: str | Path,
    times: Sequence[float],
    *,
    short_side: int | None = None,
    crop: bool = False,
    limits: DecodeLimits | None = None,
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
    sampler = FrameSampler(path, [(times, side)], limits=limits)
    for _ in sampler.run():
        pass
    frames, stamps = sampler.take(0, 0, len(times))
    return frames[:, 0], stamps[:, 0]
