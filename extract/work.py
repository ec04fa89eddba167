"""Per-video and per-batch work of extraction, free of Ray: the runners (`extract.runner`) call these.

Shape legend: `n` segments in a batch, `F` clip frames, `T` tokenizer frames, `S`/`s` frame sides,
`D` embedding width, `(t, h, w)` token grid.

One contract for per-video work: `segment_batches` never raises. A video that cannot be read ends
with a batch whose single row says `failed` and why; segments it yielded before failing are then
dropped by the assembler. So a worker never dies on one bad input and the job goes on.

Batches are dicts of numpy arrays (what Ray Data moves between stages). Segment rows carry frames;
the one "end" row of each video carries its status, duration and segment count (with empty-sized
frames, zeros of the same shape, so every batch has one schema).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from lvmae.extract.decode import ARRAYS, DecodeLimits, Pixels, VideoError, is_transient
from lvmae.extract.segments import VideoSummary, iter_segments
from lvmae.foundation.runtime import ray_node_id
from lvmae.foundation.schema import EncoderConfig, SegmentConfig, TokenizerConfig
from lvmae.store import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoJob:
    video_id: str
    uri: str
    shard_id: str

    @classmethod
    def from_rows(cls, rows: dict) -> Iterator[VideoJob]:
        """The jobs of a batch of rows (`video_id`, `uri`, `shard_id`), as the Ray runner hands them on."""
        for video_id, uri, shard_id in zip(rows["video_id"], rows["uri"], rows["shard_id"]):
            yield cls(str(video_id), str(uri), str(shard_id))


def _rows(
    n: int,
    job: VideoJob,
    *,
    end: bool,
    status: str = "",
    error: str = "",
    error_kind: str = "",
    duration: float = 0.0,
    fps: float = 0.0,
    n_segments: int = 0,
) -> dict:
    return {
        "video_id": np.array([job.video_id] * n, dtype=object),
        "shard_id": np.array([job.shard_id] * n, dtype=object),
        "end": np.full(n, end),
        "status": np.array([status] * n, dtype=object),
        "error": np.array([error] * n, dtype=object),
        "error_kind": np.array([error_kind] * n, dtype=object),
        "duration": np.full(n, duration),
        "fps": np.full(n, fps),
        "n_segments": np.full(n, n_segments, dtype=np.int64),
    }


def failure_kind(exc: BaseException) -> str:
    """ "transient" when trying again may succeed (I/O, a missing file, memory, a timeout), else "permanent"."""
    transient = exc.transient if isinstance(exc, VideoError) else is_transient(exc)
    return "transient" if transient else "permanent"


def segment_batches(
    job: VideoJob,
    spec: SegmentConfig,
    image_size: int,
    chunk: int = 32,
    limits: DecodeLimits | None = None,
    pixels: Pixels = ARRAYS,
) -> Iterator[dict]:
    """Yield the video's segments in batches of up to `chunk`, then one end row. Never raises.
    `pixels` decodes and holds the frames (`extract.nvdec`: tensors on the GPU; the end row's are
    numpy zeros whatever it is)."""
    summary: list[VideoSummary] = []
    clip_shape = (spec.clip_frames, image_size, image_size, 3)
    tok_shape = (spec.tok_frames, spec.tok_size, spec.tok_size, 3)
    try:
        for c in iter_segments(job.uri, spec, image_size, chunk=chunk, summary=summary, limits=limits, pixels=pixels):
            n = len(c.spans)
            yield {
                **_rows(n, job, end=False),
                "seg": np.arange(c.first, c.first + n, dtype=np.int64),
                "span": c.spans,
                "clip": c.clip,
                "tok": c.tok,
            }
    except Exception as exc:  # noqa: BLE001 - any failure of one video becomes its failed row
        if not isinstance(exc, VideoError):
            log.warning("video %s (%s) failed unexpectedly", job.video_id, job.uri, exc_info=True)
        message = str(exc) if isinstance(exc, VideoError) else f"{job.uri}: {type(exc).__name__}: {exc}"
        end = _rows(1, job, end=True, status="failed", error=message, error_kind=failure_kind(exc))
    else:
        s = summary[0]
        end = _rows(1, job, end=True, status="ok", duration=s.duration, fps=s.fps, n_segments=s.n_segments)
    yield {
        **end,
        "seg": np.full(1, -1, dtype=np.int64),
        "span": np.zeros((1, 2), np.float32),
        "clip": np.zeros((1, *clip_shape), np.uint8),
        "tok": np.zeros((1, *tok_shape), np.uint8),
    }


class FrozenModels:
    """Runs both frozen models, the image-text encoder and the tokenizer, over a batch of segments
    (rows of any videos); drops the frames.

    Built once per worker (a Ray actor, or the local loop) from the config's encoder and
    tokenizer sections.
    """

    def __init__(self, encoder_cfg: EncoderConfig, tokenizer_cfg: TokenizerConfig, *, threads: int | None = None):
        import torch

        from lvmae.extract.encoder import ImageTextEncoder
        from lvmae.extract.tokenizer import FrozenTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.encoder = ImageTextEncoder.from_config(encoder_cfg)
        self.tokenizer = FrozenTokenizer(
            tokenizer_cfg.checkpoint,
            kappa=tokenizer_cfg.kappa,
            device=tokenizer_cfg.device,
            batch_size=tokenizer_cfg.batch_size,
        )
        self.node = ray_node_id()  # a Ray actor's node, marked on its rows ("" in the local runner)

    def __call__(self, batch: dict) -> dict:
        seg = ~batch["end"]
        n = len(batch["end"])
        out = {k: v for k, v in batch.items() if k not in ("clip", "tok")}
        emb = np.zeros((n, self.encoder.dim), np.float16)
        # Frames are numpy arrays, or tensors on the device where decoded there (`extract.nvdec`),
        # whose batches hold segments only.
        clip, tok = (batch[k] if seg.all() else batch[k][seg] for k in ("clip", "tok"))
        grid = self.tokenizer.grid(tok.shape[1], tok.shape[2])
        codes, scores, imp = np.zeros((n, *grid), np.int16), np.zeros((n, *grid), np.float16), np.zeros(n, np.float32)
        if seg.any():
            emb[seg] = self.encoder.encode_segments(clip).astype(np.float16)
            tokens = self.tokenizer.tokenize(tok)
            codes[seg], scores[seg], imp[seg] = tokens.indices, tokens.scores, tokens.importance
        if self.node:
            out["encode_node"] = np.array([self.node] * n, dtype=object)
        return {**out, "emb": emb, "codes": codes, "scores": scores, "importance": imp}


class DecodeAndEncode:
    """Both stages in one worker: decode a video's segments and run the models on them as they come,
    video after video. The local runner works this way, and so do the Ray runner's actors when the
    frames are decoded on their GPU (`extract.decoder`, `extract.nvdec`): then they never leave it.

    Called with rows of video jobs (`video_id`, `uri`, `shard_id`), yields encoded batches, a video's
    end row among them; like `segment_batches`, never raises for one bad video.
    """

    def __init__(
        self,
        encoder_cfg: EncoderConfig,
        tokenizer_cfg: TokenizerConfig,
        *,
        spec: SegmentConfig,
        image_size: int,
        chunk: int,
        limits: DecodeLimits,
        decoder: str = "cpu",
        threads: int | None = None,
    ):
        from lvmae.extract.nvdec import pixels_for

        self.models = FrozenModels(encoder_cfg, tokenizer_cfg, threads=threads)
        self.pixels = pixels_for(decoder, self.models.encoder.device)
        self.spec, self.image_size, self.chunk, self.limits = spec, image_size, chunk, limits

    def video(self, job: VideoJob) -> Iterator[dict]:
        for batch in segment_batches(job, self.spec, self.image_size, self.chunk, self.limits, self.pixels):
            out = self.models(batch)
            if self.models.node:
                out["decode_node"] = out["encode_node"]
            yield out

    def __call__(self, rows: dict) -> Iterator[dict]:
        for job in VideoJob.from_rows(rows):
            yield from self.video(job)


@dataclass
class _Video:
    job: VideoJob
    extra: dict
    segments: dict[int, tuple] = field(default_factory=dict)  # seg -> (emb, codes, scores, importance, span)
    end: dict | None = None

    @property
    def complete(self) -> bool:
        if self.end is None:
            return False
        return self.end["status"] == "failed" or len(self.segments) >= self.end["n_segments"]


class ShardAssembler:
    """Collects encoded rows per video and writes a shard once all of its videos are complete.

    Rows may arrive in any order and more than once (a retried task yields its rows again): they
    are keyed by (video, segment), so a retry overwrites instead of duplicating.
    """

    def __init__(self, shards: dict[str, list[tuple[VideoJob, dict]]]):
        self.pending = {sid: {job.video_id: _Video(job, extra) for job, extra in jobs} for sid, jobs in shards.items()}

    def add(self, batch: dict) -> list[dict]:
        """Take one encoded batch; returns the end records of videos completed by it."""
        finished = []
        for i in range(len(batch["end"])):
            video = self.pending.get(batch["shard_id"][i], {}).get(batch["video_id"][i])
            if video is None:
                continue  # a late duplicate of a video whose shard is already written
            was_complete = video.complete
            if batch["end"][i]:
                video.end = {
                    "status": batch["status"][i],
                    "error": batch["error"][i] or None,
                    "error_kind": batch["error_kind"][i] or None,
                    "duration": float(batch["duration"][i]),
                    "fps": float(batch["fps"][i]),
                    "n_segments": int(batch["n_segments"][i]),
                }
            else:
                video.segments[int(batch["seg"][i])] = (
                    batch["emb"][i],
                    batch["codes"][i],
                    batch["scores"][i],
                    batch["importance"][i],
                    batch["span"][i],
                )
            if video.complete and not was_complete:
                finished.append({"video_id": video.job.video_id, "uri": video.job.uri, **video.end})
        return finished

    def complete_shards(self) -> list[str]:
        return [sid for sid, videos in self.pending.items() if all(v.complete for v in videos.values())]

    def write(self, store, shard_id: str, *, overwrite: bool = False) -> list[dict]:
        """Write (and forget) a complete shard. A video whose features the store refuses (not finite,
        a wrong shape) becomes a failed row and the rest of the shard commits; returns the end records
        of those videos, now failed."""
        videos = self.pending.pop(shard_id)
        refused = []
        with store.shard_writer(shard_id, overwrite=overwrite) as writer:
            for video in videos.values():
                end = video.end
                job = video.job
                if end["status"] == "ok" and end["n_segments"] > 0:
                    rows = [video.segments[k] for k in range(end["n_segments"])]
                    emb, codes, scores, imp, span = (np.stack(col) for col in zip(*rows))
                    try:
                        writer.add_video(
                            video_id=job.video_id,
                            uri=job.uri,
                            duration=end["duration"],
                            fps=end["fps"],
                            emb=emb,
                            codes=codes,
                            scores=scores,
                            importance=imp,
                            span=span,
                            extra=video.extra,
                        )
                        continue
                    except StoreError as exc:  # bad features of this one video, not of the shard
                        end = {**end, "status": "failed", "error": f"{job.uri}: {exc}", "error_kind": "permanent"}
                        refused.append({"video_id": job.video_id, "uri": job.uri, **end})
                writer.add_failed(
                    video_id=job.video_id,
                    uri=job.uri,
                    error=end["error"] or "no segments",
                    kind=end.get("error_kind") or "permanent",
                    extra=video.extra,
                )
        return refused
