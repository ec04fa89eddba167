"""Decoding on the GPU (NVDEC through PyAV's FFmpeg) with frames converted and resized on the device.

Shape legend: `H`/`W` a decoded frame's height/width, `h`/`w` its resized size, `S` the side of
the square handed on.

`extract.decoder` chooses: `cpu` decodes in software and converts in FFmpeg's scaler (numpy
arrays, `extract.decode.ArrayPixels`); `nvdec` decodes with FFmpeg's CUDA hardware decoder, keeps
the frames on the GPU (`HWAccel(is_hw_owned=True)`), takes their planes by DLPack and converts and
resizes them with torch on the encoder's device (`TensorPixels`), so the frames reach the encoder
without a copy through host memory; `auto` (the default) is `nvdec` where the encoder runs on a
CUDA device and PyAV's FFmpeg has CUDA, else `cpu`. PyAV's wheels from PyPI carry FFmpeg's CUDA
support; NVDEC itself comes with the NVIDIA driver. A codec or a stream NVDEC cannot take is decoded
in software (FFmpeg's fallback) and its frames are uploaded and converted the same way.

The conversion follows FFmpeg's: the frame's YUV matrix (BT.709 or BT.2020 when the frame says so,
else BT.601), limited range unless it says full; the luma and chroma planes resized with
antialiased bilinear interpolation to the size `to_rgb` gives, then turned upright and cut to the
centre square. The pixels differ from the CPU path's by rounding and the filters' edges (a level or
two on average, see tests/unit/extract/test_nvdec.py), so a store extracted one way and resumed
the other mixes the two: both are recorded alike.

On a machine without CUDA the same conversion runs on the CPU (`TensorPixels("cpu")`), which is
what the tests exercise there; the `gpu` test decodes with NVDEC and compares embeddings with the
CPU path's.
"""

from __future__ import annotations

import io
import logging
from fractions import Fraction

import av
import numpy as np
import torch
import torch.nn.functional as F

from lvmae.extract.decode import ARRAYS, Pixels, center_crop_box, resized_size

log = logging.getLogger(__name__)

DECODERS = ("auto", "cpu", "nvdec")
# (Kr, Kb) of the YUV matrices by AVColorSpace: BT.709 (1), BT.2020 (9, 10); anything else is BT.601.
_MATRICES = {1: (0.2126, 0.0722), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
_BT601 = (0.299, 0.114)
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def nvdec_missing(device: torch.device | str) -> str | None:
    """Why NVDEC cannot decode for an encoder on `device`, or None when it can: the device is CUDA,
    PyAV's FFmpeg has CUDA, and a small h264 stream decodes on it and converts."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"the encoder runs on {device}, not a CUDA device"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if "cuda" not in av.codec.hwaccel.hwdevices_available():
        return "PyAV's FFmpeg was built without CUDA (hwdevices_available() has no 'cuda')"
    try:
        _try_decoding(TensorPixels(device, nvdec=True))
    except Exception as exc:  # noqa: BLE001 - whatever the driver or FFmpeg says is the reason
        return f"NVDEC could not decode a test stream ({type(exc).__name__}: {exc})"
    return None


def _try_decoding(pixels: TensorPixels) -> None:
    """Decode a 128 x 128 h264 stream made here with `pixels` and convert its frames; raises when a
    frame is not decoded on the GPU."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width = stream.height = 128
        stream.pix_fmt = "yuv420p"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((128, 128, 3), 60 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 8)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    buffer.seek(0)
    strict = av.codec.hwaccel.HWAccel(
        device_type="cuda", device=str(pixels.device.index), allow_software_fallback=False, is_hw_owned=True
    )
    with av.open(buffer, hwaccel=strict) as container:
        for frame in container.decode(video=0):
            if frame.format.name != "cuda":
                raise RuntimeError(f"a frame came back in {frame.format.name}, decoded in software")
            if tuple(pixels.convert(frame, 0, 64).shape) != (64, 64, 3):
                raise RuntimeError("a converted frame has the wrong shape")


def pixels_for(decoder: str, device: torch.device | str) -> Pixels:
    """The frames' path for `extract.decoder` = `decoder` with the encoder on `device`: `ARRAYS` (cpu)
    or `TensorPixels` decoding with NVDEC. Raises ValueError when `nvdec` is asked for and cannot be."""
    if decoder not in DECODERS:
        raise ValueError(f"extract.decoder = {decoder!r}: expected one of {', '.join(DECODERS)}")
    if decoder == "cpu":
        return ARRAYS
    missing = nvdec_missing(device)
    if missing is None:
        return TensorPixels(device, nvdec=True)
    if decoder == "nvdec":
        raise ValueError(f"extract.decoder = nvdec: {missing}; use auto or cpu")
    if torch.device(device).type == "cuda":
        log.warning("extract.decoder = auto: decoding on the CPU, since %s", missing)
    return ARRAYS


class TensorPixels:
    """Frames as uint8 (H, W, 3) tensors on `device`, converted there by torch; with `nvdec`, decoded
    by FFmpeg's CUDA decoder on that device (software where it cannot) and never copied to the host."""

    def __init__(self, device: torch.device | str, *, nvdec: bool = False):
        self.device = torch.device(device)
        self.hwaccel = None
        if nvdec:
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.device = torch.device("cuda", index)
            self.hwaccel = av.codec.hwaccel.HWAccel(
                device_type="cuda", device=str(index), allow_software_fallback=True, is_hw_owned=True
            )

    def convert(self, frame: av.VideoFrame, rotation: int, side: int | None) -> torch.Tensor:
        full = int(frame.color_range) == _FULL_RANGE or frame.format.name.startswith("yuvj")  # JPEG's formats
        y, u, v = self._planes(frame, full)
        w, h = resized_size(frame.width, frame.height, rotation, side)
        y, u, v = (_resize(p, h, w) for p in (y, u, v))
        rgb = _yuv_to_rgb(y, u, v, _MATRICES.get(int(frame.colorspace), _BT601), full)
        if rotation:
            rgb = torch.rot90(rgb, k=rotation // 90, dims=(0, 1))  # counter-clockwise, as np.rot90
        if side is not None:
            top, left = center_crop_box(rgb.shape[0], rgb.shape[1], side)
            rgb = rgb[top : top + side, left : left + side]
        return rgb.contiguous()

    def _planes(self, frame: av.VideoFrame, full: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Y (H, W), U, V (H/2, W/2)) float32 on the device, in 8-bit levels."""
        if frame.format.name == "cuda":  # NVDEC's surface: NV12 (8 bits) or P010/P016 (16, MSB-aligned)
            torch.cuda.synchronize(self.device)  # FFmpeg may still be writing the frame on a stream of its own
            y, uv = (torch.from_dlpack(p.__dlpack__()) for p in frame.planes[:2])
            scale = 1 / 256 if y.element_size() == 2 else 1.0
            y, u, v = y.float(), uv[..., 0].float(), uv[..., 1].float()
            return y * scale, u * scale, v * scale
        if frame.format.name not in ("yuv420p", "yuvj420p"):
            # Other software formats (4:4:4, 10 bits, RGB): one pass of FFmpeg's, in the same range.
            frame = frame.reformat(format="yuvj420p" if full else "yuv420p")
        # Planes in host memory (software decoding, or NVDEC's fallback): one upload each, of YUV 4:2:0.
        return tuple(torch.from_dlpack(p).to(self.device).float() for p in frame.planes[:3])

    def stack(self, frames: list) -> torch.Tensor:
        return torch.stack(frames)

    def concat(self, parts: list) -> torch.Tensor:
        return torch.cat(parts)

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.uint8, device=self.device)


def _resize(plane: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(H', W') float -> (h, w), antialiased bilinear (FFmpeg's bilinear widens its filter likewise)."""
    if plane.shape == (h, w):
        return plane
    return F.interpolate(plane[None, None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0, 0]


def _yuv_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, k: tuple[float, float], full: bool):
    """(h, w) planes in 8-bit levels -> (h, w, 3) uint8 RGB by the matrix with luma weights `k`."""
    kr, kb = k
    kg = 1 - kr - kb
    if full:
        luma, cb, cr = y, u - 128, v - 128
    else:
        luma, cb, cr = (y - 16) * (255 / 219), (u - 128) * (255 / 224), (v - 128) * (255 / 224)
    r = luma + 2 * (1 - kr) * cr
    g = luma - (2 * (1 - kb) * kb / kg) * cb - (2 * (1 - kr) * kr / kg) * cr
    b = luma + 2 * (1 - kb) * cb
    return torch.stack((r, g, b), dim=-1).round_().clamp_(0, 255).to(torch.uint8)
