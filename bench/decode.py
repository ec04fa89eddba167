"""Decoding throughput on real-footage sizes: every frame against the segment samplers' decode.

    python -m bench.decode [--quick] [--out FILE]

The videos are generated here, nothing is downloaded: the toy world rendered at 256×256, scaled by
FFmpeg to 1280×720 and 1920×1080, with coarse noise (4×4-pixel blocks, ±12 levels) so the picture does
not compress to nothing, encoded as h264 at 30 fps by libx264 (veryfast, CRF 23) with a keyframe at
least every 3 s and up to 3 B-frames, as cameras and phones write. They are kept under
`runs/bench-decode/` and made again only when missing.

For each size, side by side in this process (each way twice, interleaved, the faster counted), with the decoder threads extraction uses
(`extract.decode_num_cpus`), in video frames per second:
- `decode_all_fps`: decoding every frame without converting any (the FFmpeg limit);
- `decode_nonref_fps`: the same with FFmpeg's `skip_frame = NONREF` (every non-reference frame
  skipped, whatever the samplers need): what skipping those alone could give;
- `sampled_fps_before`: segment extraction decoding every frame (`extract.sparse_decode = false`,
  what extraction did before issue 21: `extract.segments.iter_segments`, the sampled frames
  converted for both models) at 5 s segments with the default frame counts;
- `sampled_fps`: the same with `extract.sparse_decode = true` (the default: only the frames the
  samplers need, see `extract.sparse`), and `speedup` its ratio to `decode_all_fps` (issue 21's
  target: at least 1.5); `decoded_fraction` is the share of the frames it decoded;
- `segments_per_s`: both sampled runs in segments per second (`before`, `after`);
- `max_timestamp_error_ratio`: over every sample of the sparse run, how far its frame's timestamp
  is from the time it stands for, as a fraction of its tolerance, half the sample interval (the
  segment's length over the clip frame count for encoder frames, 1 / `tok_fps` for tokenizer
  frames): at most 1 is within tolerance. `max_timestamp_error_ratio_before` is the decode-every-
  frame run's (the frame on screen, at most one frame interval before).

`gpu`, only where NVDEC works (`extract.nvdec.nvdec_missing` says nothing is missing), on the 1080p
video with the default models on the GPU (their own frame side) and `extract.sparse_decode`, in
segments per second: `encoder_only` (both models over segments decoded beforehand, the copy to the GPU
included), `nvdec` (decoding with NVDEC, frames converted on the GPU, and both models, one video in one
process, as one encoder actor works with `extract.decoder = nvdec`), `cpu_decode` (the same decoding in
software with FFmpeg's threads on every core, frames converted on the CPU), and `nvdec_vs_encoder_only`
(issue 21's target: at least 0.8).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench._common import emit, machine, parse_args
from lvmae.extract.decode import ARRAYS, DecodeLimits, Pixels
from lvmae.extract.segments import iter_segments, sample_times
from lvmae.extract.work import FrozenModels, VideoJob, segment_batches
from lvmae.foundation.files import commit_file
from lvmae.foundation.schema import ExtractConfig, SegmentConfig
from lvmae.toyworld.generate import CorpusSpec, render_frames, video_plan

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 30
FOLDER = Path("runs/bench-decode")
SEGMENT_SECONDS = 5.0
REPEATS = 2


def make_video(path: Path, width: int, height: int, seconds: int, seed: int = 3) -> Path:
    """The benchmark video `path` (see the module docstring), written whole or not at all."""
    n = FPS * seconds
    plan = video_plan(CorpusSpec(videos=1, minutes=(1, 2), seed=seed), 0, n)
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(3 * FPS), "keyint_min": str(2 * FPS), "bf": "3"}
        for start in range(0, n, FPS):
            for i, rgb in enumerate(render_frames(plan, np.arange(start, min(n, start + FPS)), FPS, 256)[0]):
                big = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(width=width, height=height).to_ndarray()
                noise = rng.integers(-12, 13, (height // 4, width // 4, 1), dtype=np.int16).repeat(4, 0).repeat(4, 1)
                frame = av.VideoFrame.from_ndarray(np.clip(big + noise, 0, 255).astype(np.uint8), format="rgb24")
                frame.pts, frame.time_base = start + i, Fraction(1, FPS)
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return commit_file(tmp, path)


def video_set(seconds: int) -> dict[str, Path]:
    FOLDER.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (width, height) in SIZES.items():
        path = FOLDER / f"{name}-{seconds}s.mp4"
        if not path.exists():
            began = time.perf_counter()
            make_video(path, width, height, seconds)
            print(f"generated {path} ({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - began:.0f} s")
        paths[name] = path
    return paths


def decode_all(path: Path, threads: int, skip: str | None = None) -> tuple[int, float]:
    """(frames decoded, seconds) decoding every frame (or all but those `skip` names), converting none."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # as extract.decode.iter_av_frames decodes
        stream.thread_count = threads
        if skip:
            stream.codec_context.skip_frame = skip
        began = time.perf_counter()
        frames = sum(1 for _ in container.decode(stream))
        return frames, time.perf_counter() - began


def sampled(path: Path, spec: SegmentConfig, limits: DecodeLimits) -> tuple[int, float, float, int]:
    """(segments, seconds, largest timestamp error as a fraction of half the sample interval, frames
    decoded) of segment extraction decoding with `limits` (`limits.sparse`: only what samplers need)."""
    segments, worst, summary = 0, 0.0, []
    began = time.perf_counter()
    for chunk in iter_segments(path, spec, 224, chunk=32, limits=limits, summary=summary):
        segments += len(chunk.spans)
        spans = chunk.spans.astype(np.float64)
        for (wanted, tol), got in zip(sample_times(spans, spec), (chunk.clip_stamps, chunk.tok_stamps)):
            worst = max(worst, float(np.max(np.abs(wanted - got) / tol)))
    return segments, time.perf_counter() - began, worst, summary[0].decoded


def pipeline_rates(path: Path, spec: SegmentConfig, models: FrozenModels, limits: DecodeLimits, pixels: Pixels) -> dict:
    """Segments per second of both models alone over the video's segments decoded beforehand, of
    decoding with `pixels` and encoding, and of CPU decoding (`limits.threads`) and encoding, each the
    faster of two runs."""
    import torch

    size = models.encoder.image_size
    job = VideoJob("bench", str(path), "bench")

    def timed(batches) -> tuple[int, float]:
        began, segments = time.perf_counter(), 0
        for batch in batches:
            segments += int((~batch["end"]).sum())
            models(batch)  # returns numpy: the device's work is done when it returns
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return segments, time.perf_counter() - began

    decoded = list(segment_batches(job, spec, size, limits=limits))
    rates = {}
    for key, batches in (
        ("encoder_only", lambda: decoded),
        ("nvdec", lambda: segment_batches(job, spec, size, limits=limits, pixels=pixels)),
        ("cpu_decode", lambda: segment_batches(job, spec, size, limits=limits, pixels=ARRAYS)),
    ):
        segments, seconds = min((timed(batches()) for _ in range(REPEATS)), key=lambda r: r[1])
        rates[key] = round(segments / seconds, 1)
    rates["nvdec_vs_encoder_only"] = round(rates["nvdec"] / rates["encoder_only"], 3)
    return rates


def gpu_section(path: Path, spec: SegmentConfig, limits: DecodeLimits) -> dict | None:
    """The `gpu` key (see the module docstring), or None where NVDEC cannot decode."""
    import os

    import torch

    from lvmae.extract.nvdec import nvdec_missing, pixels_for
    from lvmae.foundation.schema import load_config

    missing = nvdec_missing("cuda")
    if missing is not None:
        print(f"no gpu key: {missing}", flush=True)
        return None
    cfg = load_config(None, ["encoder.device=cuda", "tokenizer.device=cuda"], use_default_file=False)
    models = FrozenModels(cfg.encoder, cfg.tokenizer)
    rates = pipeline_rates(
        path, spec, models, replace(limits, threads=os.cpu_count() or 1), pixels_for("nvdec", models.encoder.device)
    )
    print(f"gpu, 1080p: {rates}", flush=True)
    return {"device": torch.cuda.get_device_name(), "1080p": rates}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    seconds = 8 if args.quick else 120
    spec = SegmentConfig(seconds=SEGMENT_SECONDS)
    ex = ExtractConfig()
    dense = replace(DecodeLimits.from_config(ex), sparse=False)
    limits = replace(dense, sparse=True)
    threads = max(1, math.ceil(ex.decode_num_cpus))
    paths = video_set(seconds)
    result: dict = {
        "bench": "decode",
        "quick": args.quick,
        "video_seconds": seconds,
        "fps": FPS,
        "segment_seconds": SEGMENT_SECONDS,
        "clip_frames": spec.clip_frames,
        "tok_frames": spec.tok_frames,
        "decoder_threads": threads,
        "decode_all_fps": {},
        "decode_nonref_fps": {},
        "sampled_fps_before": {},
        "sampled_fps": {},
        "speedup": {},
        "decoded_fraction": {},
        "segments_per_s": {},
        **machine(),
    }
    worst = worst_before = 0.0
    for name, path in paths.items():
        # Each way twice, interleaved, and the faster of the two: the first reading of a file also
        # pays for the page cache and the decoder's start.
        all_s = nonref_s = before_s = after_s = math.inf
        for _ in range(REPEATS):
            frames, seconds = decode_all(path, threads)
            all_s = min(all_s, seconds)
            kept, seconds = decode_all(path, threads, skip="NONREF")
            nonref_s = min(nonref_s, seconds)
            segments, seconds, error_before, _ = sampled(path, spec, dense)
            before_s = min(before_s, seconds)
            segments, seconds, error, decoded = sampled(path, spec, limits)
            after_s = min(after_s, seconds)
        worst, worst_before = max(worst, error), max(worst_before, error_before)
        result["decode_all_fps"][name] = round(frames / all_s, 1)
        result["decode_nonref_fps"][name] = round(frames / nonref_s, 1)
        result["sampled_fps_before"][name] = round(frames / before_s, 1)
        result["sampled_fps"][name] = round(frames / after_s, 1)
        result["speedup"][name] = round(all_s / after_s, 3)
        result["decoded_fraction"][name] = round(decoded / frames, 3)
        result["segments_per_s"][name] = {
            "before": round(segments / before_s, 2),
            "after": round(segments / after_s, 2),
        }
        print(
            f"{name}: every frame {frames / all_s:,.1f} frames/s; skipping non-reference frames "
            f"({frames - kept} of {frames}) {frames / nonref_s:,.1f}; sampled, every frame decoded "
            f"{frames / before_s:,.1f} ({segments / before_s:,.2f} segments/s of {SEGMENT_SECONDS:g} s); "
            f"sampled, sparse ({decoded} of {frames} decoded) {frames / after_s:,.1f} "
            f"({segments / after_s:,.2f} segments/s), {all_s / after_s:.2f}x decoding every frame",
            flush=True,
        )
    result["max_timestamp_error_ratio"] = round(worst, 3)
    result["max_timestamp_error_ratio_before"] = round(worst_before, 3)
    gpu = gpu_section(paths["1080p"], spec, limits)
    if gpu is not None:
        result["gpu"] = gpu
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
