"""Writing small test videos with PyAV: given frames, an optional rotation, optional timestamps and
keyframe spacing; frames that tell their index; a Matroska file that misstates its duration."""

import struct
from fractions import Fraction

import av
import numpy as np


def write_frames(
    path,
    frames: np.ndarray,
    *,
    fps: float = 8,
    rotation: int | None = None,
    pts_ms: list[int] | None = None,
    keyframe_every: int | None = None,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
) -> None:
    """h264 (or `codec`, with encoder `options`) of `frames` (N, H, W, 3) uint8 in the container the
    suffix names (mp4, mkv, webm): 4:2:0 when both sides are even, else 4:4:4. Frame i is at i / fps, or
    at pts_ms[i] milliseconds when given (a variable frame rate). `keyframe_every` frames a keyframe
    (x264's default: 250), so seeks can land."""
    with av.open(str(path), "w") as c:
        options = dict(options or {})
        if keyframe_every:
            options.update(g=str(keyframe_every), keyint_min=str(keyframe_every))
        s = c.add_stream(codec, rate=fps, options=options)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv444p" if s.height % 2 or s.width % 2 else "yuv420p"  # 4:2:0 needs even sides
        if rotation is not None:
            s.set_display_rotation(rotation)
        tb = Fraction(1, 1000) if pts_ms is not None else Fraction(1, fps)
        s.codec_context.time_base = tb
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts_ms[i] if pts_ms is not None else i
            frame.time_base = tb
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def numbered(n: int, h: int = 32, w: int = 32) -> np.ndarray:
    """(n, h, w, 3) frames whose content tells their index: the left half's grey level is 16 (i % 14),
    the right half's 16 (i // 14) (steps of 16 survive h264 at these sizes)."""
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i, :, : w // 2] = 16 * (i % 14) + 8
        out[i, :, w // 2 :] = 16 * (i // 14) + 8
    return out


def set_matroska_duration(path, seconds: float) -> None:
    """Rewrite the Duration a Matroska file's Segment Info declares, in place: a container that misstates
    its length while every frame is intact. Duration is a float of TimecodeScale units (ms by default)."""
    data = bytearray(open(path, "rb").read())
    info = data.find(b"\x15\x49\xa9\x66")  # Segment Info element ID
    at = data.find(b"\x44\x89", info)  # Duration element ID, then a one-byte size, then the float
    assert info >= 0 and at >= 0, "no Matroska Segment Info Duration"
    size = data[at + 2] & 0x7F
    fmt = {4: ">f", 8: ">d"}[size]
    data[at + 3 : at + 3 + size] = struct.pack(fmt, seconds * 1000.0)
    with open(path, "wb") as f:
        f.write(data)
