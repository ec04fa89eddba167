"""Writing small test videos with PyAV: given frames, an optional rotation and optional timestamps."""

from fractions import Fraction

import av
import numpy as np


def write_frames(
    path, frames: np.ndarray, *, fps: float = 8, rotation: int | None = None, pts_ms: list[int] | None = None
) -> None:
    """h264 mp4 of `frames` (N, H, W, 3) uint8: 4:2:0 when both sides are even, else 4:4:4. Frame i
    is at i / fps, or at pts_ms[i] milliseconds when given (a variable frame rate)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
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
