"""Generate a toy-world corpus: h264 videos, ground truth and the caption bank.

Layout of a corpus directory:

    videos/<video_id>.mp4   h264 / yuv420p, `size` x `size`, constant `fps`
    videos.parquet          one row per video: id, uri (relative to the corpus), label (procedure class), ...
    truth.parquet           one row per performed step: spans in seconds, caption, look, motion
    captions.txt            the caption bank: every caption the world can show, one per line
    corpus.json             the generating spec; written last, so a corpus without it is unfinished

A video is determined by (seed, index): `video_plan` rebuilds its steps and `render_frames`
re-renders any of its frames with the object mask, which is how later stages get pixel truth.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lvmae.foundation.files import atomic_write_json, atomic_write_text, commit_file
from lvmae.foundation.progress import Summary, bar, human_seconds
from lvmae.foundation.schema import CorpusSpec
from lvmae.toyworld.procedures import PlannedStep, plan_video, procedures
from lvmae.toyworld.world import caption_bank, motion_params, render

# Bump when rendering or the world changes: corpora (and the demo's cache) keyed on it are redone.
CORPUS_VERSION = 1
CHUNK_FRAMES = 256
CRF = 18  # near-transparent at 64x64; the encoder and tokenizer see what a real decoder gives
# Same seed, same frames: rendering is bit-exact. libx264 here is not quite: the same frames
# encoded in another order or process now and then decode slightly apart (seen: a few of 240
# frames differ, by up to 21 levels at a few pixels, 66 dB PSNR or more), whatever its thread settings.


def spec_key(spec: CorpusSpec) -> dict:
    """What a corpus is, as JSON data: the spec (its corpus part) and the renderer's version."""
    corpus = spec.corpus()
    return {**asdict(corpus), "minutes": list(corpus.minutes), "corpus_version": CORPUS_VERSION}


def video_id(spec: CorpusSpec, index: int) -> str:
    return f"tw{spec.seed}-{index:04d}"


def frame_counts(spec: CorpusSpec) -> list[int]:
    """Frame count of every video: lengths spread evenly on a log scale over `minutes`, shuffled."""
    lo, hi = spec.minutes
    minutes = np.geomspace(lo, hi, spec.videos) if spec.videos > 1 else np.array([hi])
    order = np.random.default_rng([spec.seed, 1]).permutation(spec.videos)
    return [max(1, int(round(m * 60 * spec.fps))) for m in minutes[order]]


def procedure_of(spec: CorpusSpec, index: int):
    classes = procedures()
    # Round-robin over classes, rotated by the seed: every class appears once per len(classes) videos.
    return classes[(index + spec.seed) % len(classes)]


def video_plan(spec: CorpusSpec, index: int, n_frames: int) -> list[PlannedStep]:
    rng = np.random.default_rng([spec.seed, 2, index])
    return plan_video(procedure_of(spec, index), n_frames / spec.fps, rng)


def render_frames(
    plan: list[PlannedStep], frame_indices: np.ndarray, fps: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (F, S, S, 3) uint8 and object masks (F, S, S) of a planned video at `frame_indices`."""
    t = np.asarray(frame_indices, dtype=np.float64) / fps
    starts = np.array([s.t_start for s in plan])
    which = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(plan) - 1)
    frames = np.empty((t.shape[0], size, size, 3), np.uint8)
    masks = np.empty((t.shape[0], size, size), bool)
    for k in np.unique(which):
        sel = np.nonzero(which == k)[0]
        step = plan[k]
        params = motion_params(step.look, step.layout, step.motion, t[sel] - step.t_start, size)
        frames[sel], masks[sel] = render(params, size)
    return frames, masks


def iter_chunks(
    plan: list[PlannedStep], n_frames: int, fps: float, size: int, chunk: int = CHUNK_FRAMES
) -> Iterator[np.ndarray]:
    for start in range(0, n_frames, chunk):
        yield render_frames(plan, np.arange(start, min(start + chunk, n_frames)), fps, size)[0]


def write_mp4(path: Path, chunks: Iterator[np.ndarray], size: int, fps: float) -> int:
    """Encode RGB frame chunks to h264/yuv420p at constant `fps`; returns the frame count."""
    rate = Fraction(fps).limit_denominator(1001)
    n = 0
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(CRF), "preset": "veryfast"}
        for frames in chunks:
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = n  # one tick of 1/fps per frame
                frame.time_base = 1 / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
                n += 1
        for packet in stream.encode():
            container.mux(packet)
    return n


def truth_rows(spec: CorpusSpec, index: int, plan: list[PlannedStep], file: str) -> list[dict]:
    proc = procedure_of(spec, index)
    return [
        {
            "video_id": video_id(spec, index),
            "file": file,
            "procedure": proc.name,
            "group": proc.group,
            "kind": s.kind,
            "step_index": s.step_index,
            "t_start": float(s.t_start),
            "t_end": float(s.t_end),
            "caption": s.look.caption,
            "shape": s.look.shape,
            "colour": s.look.colour,
            "background": s.look.background,
            "motion": s.motion,
        }
        for s in plan
    ]


def _make_video(spec: CorpusSpec, index: int, frame_count: int, out: Path) -> tuple[dict, list[dict]]:
    plan = video_plan(spec, index, frame_count)
    file = f"videos/{video_id(spec, index)}.mp4"
    tmp = out / f"{file}.tmp"
    written = write_mp4(tmp, iter_chunks(plan, frame_count, spec.fps, spec.size), spec.size, spec.fps)
    commit_file(tmp, out / file)  # a half-written video never carries the final name
    proc = procedure_of(spec, index)
    video = {
        "id": video_id(spec, index),
        "uri": file,
        "label": proc.name,
        "group": proc.group,
        "duration": written / spec.fps,
        "n_frames": written,
        "fps": spec.fps,
        "width": spec.size,
        "height": spec.size,
        "seed": spec.seed,
        "index": index,
    }
    return video, truth_rows(spec, index, plan, file)


@dataclass(frozen=True)
class Corpus:
    root: Path
    spec: CorpusSpec
    videos: pa.Table
    truth: pa.Table
    seconds: float  # wall-clock time generation took (0 when loaded from disk)

    @property
    def video_seconds(self) -> float:
        return float(sum(self.videos.column("duration").to_pylist()))

    def summary(self) -> Summary:
        """What the corpus holds and where, as a one-screen summary."""
        s = Summary(f"toy-world corpus: {self.root}")
        s.started -= self.seconds  # the summary's wall time is the generation's
        durations = self.videos.column("duration").to_pylist()
        s.add("videos", len(durations))
        s.add(
            "video time",
            f"{human_seconds(sum(durations))} ({min(durations) / 60:.1f}-{max(durations) / 60:.1f} min each)",
        )
        s.add(
            "frames",
            f"{sum(self.videos.column('n_frames').to_pylist()):,} at {self.spec.fps:g} fps, "
            f"{self.spec.size}x{self.spec.size}",
        )
        s.add("procedure classes", len(set(self.videos.column("label").to_pylist())))
        s.add("steps in truth", self.truth.num_rows)
        if self.seconds:
            s.add("render+encode rate", f"{sum(durations) / self.seconds:,.0f} video-s/s")
        s.note(f"videos:   {self.root / 'videos'}")
        s.note(f"inputs:   {self.root / 'videos.parquet'}  (uri, id, label: usable as extract.inputs)")
        s.note(f"truth:    {self.root / 'truth.parquet'}")
        s.note(f"captions: {self.root / 'captions.txt'}")
        return s


def is_complete(out: Path, spec: CorpusSpec) -> bool:
    marker = Path(out) / "corpus.json"
    return marker.is_file() and json.loads(marker.read_text()) == spec_key(spec)


def load_corpus(out: str | Path) -> Corpus:
    out = Path(out)
    marker = out / "corpus.json"
    if not marker.is_file():
        raise FileNotFoundError(
            f"{out}: not a finished toy-world corpus (no corpus.json); run `lvmae toyworld generate --out {out}`"
        )
    meta = json.loads(marker.read_text())
    meta.pop("corpus_version", None)
    spec = CorpusSpec(**{**meta, "minutes": tuple(meta["minutes"])})
    return Corpus(out, spec, pq.read_table(out / "videos.parquet"), pq.read_table(out / "truth.parquet"), 0.0)


def generate(spec: CorpusSpec, out: str | Path, *, workers: int | None = None, progress: bool | None = None) -> Corpus:
    """Render and encode every video of `spec` into `out`; truth files and corpus.json come last."""
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").unlink(missing_ok=True)
    frames = frame_counts(spec)
    workers = max(1, min(workers or os.cpu_count() or 1, spec.videos))
    started = time.perf_counter()
    results: list[tuple[dict, list[dict]] | None] = [None] * spec.videos
    # Longest first so the pool does not end waiting on one long video.
    order = sorted(range(spec.videos), key=lambda i: -frames[i])
    with bar(
        total=sum(frames) / spec.fps,
        desc="toyworld render+encode",
        unit="video-s",
        unit_scale=True,
        disable=None if progress is None else not progress,
    ) as pbar:
        if workers == 1:
            for i in order:
                results[i] = _make_video(spec, i, frames[i], out)
                pbar.update(frames[i] / spec.fps)
        else:
            with ProcessPoolExecutor(workers) as pool:
                futures = {pool.submit(_make_video, spec, i, frames[i], out): i for i in order}
                for future in as_completed(futures):
                    i = futures[future]
                    results[i] = future.result()
                    pbar.update(frames[i] / spec.fps)
    videos = pa.Table.from_pylist([r[0] for r in results])
    truth = pa.Table.from_pylist([row for r in results for row in r[1]])
    pq.write_table(videos, out / "videos.parquet")
    pq.write_table(truth, out / "truth.parquet")
    atomic_write_text(out / "captions.txt", "\n".join(caption_bank()) + "\n")
    atomic_write_json(out / "corpus.json", spec_key(spec))  # the marker of a finished corpus, last
    return Corpus(out, spec, videos, truth, time.perf_counter() - started)
