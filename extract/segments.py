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
  before it), which holds for variable frame rates too. Only frames that are on screen at some
  wanted time are converted to RGB, each once per size, and converted frames are resized in FFmpeg:
  encoder frames to the model's side (short side, then centre crop, what open_clip's transform does),
  tokenizer frames to `s` x `s` the same way.

The plan comes from the container's declared duration, so the pass streams: segments are yielded
in chunks as soon as their frames are in, and memory holds one chunk whatever the video's length.
When the decoded end disagrees with the declaration, the segments it changes are sampled again in a
second pass. When the stream ends well before it (a truncated file) the job is told, not padded:
`TruncatedVideo`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extract.decode import FrameSampler, VideoError, probe
from foundation.schema import SegmentConfig


class TruncatedVideo(VideoError):
    """The stream ended well before the duration its container declares."""


def segment_spans(duration: float, seconds: float, min_fraction: float) -> np.ndarray:
    """(n, 2) float64 [t_start, t_end) of every segment of a video `duration` seconds long."""
    full = int(np.floor(duration / seconds + 1e-9))
    starts = np.arange(full) * seconds
    spans = np.stack([starts, starts + seconds], axis=1) if full else np.zeros((0, 2))
    rest = duration - full * seconds
    if rest >= min_fraction * seconds - 1e-9 and rest > 1e-9:
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


@dataclass
class SegmentChunk:
    """Consecutive segments of one video with the frames each model needs."""

    first: int  # index of the first segment in the video
    spans: np.ndarray  # (n, 2) float32 seconds
    clip: np.ndarray  # (n, F, S, S, 3) uint8
    tok: np.ndarray  # (n, T, s, s, 3) uint8
    clip_stamps: np.ndarray  # (n, F) timestamps of the frames taken
    tok_stamps: np.ndarray  # (n, T)


@dataclass
class VideoSummary:
    duration: float  # seconds, from the decoded frames
    fps: float  # average frame rate
    n_segments: int


def iter_segments(
    path: str | Path, spec: SegmentConfig, image_size: int, *, chunk: int = 32, summary: list | None = None
) -> Iterator[SegmentChunk]:
    """Yield a video's segments in chunks of up to `chunk`, decoding it once; appends a
    `VideoSummary` to `summary` at the end. Raises VideoError (or TruncatedVideo) on bad input."""
    info = probe(path)
    declared = info.duration
    if declared <= 0:
        declared = _demux_duration(path)
    spans = segment_spans(declared, spec.seconds, spec.min_fraction)
    if len(spans) == 0:
        raise VideoError(
            f"{path}: {declared:.2f} s is shorter than half a segment "
            f"({spec.min_fraction * spec.seconds:.2f} s); no segment to extract"
        )
    sampler = _sampler(path, spans, spec, image_size)
    done = 0
    for ready in sampler.run():
        while done + chunk <= ready:
            yield _chunk(sampler, spans, done, done + chunk)
            done += chunk
    end = sampler.end_time
    if end < declared - max(1.0, 0.05 * declared):
        raise TruncatedVideo(f"{path}: truncated: frames stop at {end:.2f} s of the {declared:.2f} s the file declares")
    # The declared duration is only a plan: re-plan with the decoded end. Segments the plan got right
    # are in the sampler; a tail it got wrong (metadata under- or over-stating the length, common with
    # variable frame rates) is sampled again in a second pass over the file.
    true_spans = segment_spans(end, spec.seconds, spec.min_fraction)
    same = 0
    while same < min(len(spans), len(true_spans)) and np.allclose(spans[same], true_spans[same]):
        same += 1
    for a in range(done, same, chunk):
        yield _chunk(sampler, spans, a, min(a + chunk, same))
    if len(true_spans) > same:
        tail = true_spans[max(same, done) :]
        again = _sampler(path, tail, spec, image_size)
        for _ in again.run():
            pass
        for a in range(0, len(tail), chunk):
            c = _chunk(again, tail, a, min(a + chunk, len(tail)))
            c.first += max(same, done)
            yield c
    if summary is not None:
        summary.append(VideoSummary(end, sampler.frames / end if end > 0 else 0.0, len(true_spans)))


def _sampler(path, spans: np.ndarray, spec: SegmentConfig, image_size: int) -> FrameSampler:
    return FrameSampler(
        path,
        [
            (clip_times(spans, spec.clip_frames), image_size),
            (tok_times(spans, spec.tok_frames, spec.tok_fps), spec.tok_size),
        ],
    )


def _chunk(sampler: FrameSampler, spans: np.ndarray, a: int, b: int) -> SegmentChunk:
    s = spans[a:b].astype(np.float32)
    (clip, clip_ts), (tok, tok_ts) = sampler.take(0, a, b), sampler.take(1, a, b)
    return SegmentChunk(a, s, clip, tok, clip_ts, tok_ts)


def _demux_duration(path) -> float:
    """Duration from packet timestamps (no decoding) when the container does not declare one."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        end = 0.0
        for packet in container.demux(stream):
            if packet.pts is not None:
                end = max(end, float((packet.pts + (packet.duration or 0) - start) * stream.time_base))
        return end
