"""Run extraction: videos -> segments -> both frozen models -> store shards, on Ray or in one process.

Ray pipeline (Ray Data, streaming): one decode task per video (CPU, `segment_batches`) feeds an
actor pool running the models (`FrozenModels`, CPU or GPU); batches span videos so the models
stay fed. Encoded rows (about 4 KB a segment) stream back to the driver, which writes each shard
as soon as all of its videos are done: one writer per shard, committed shards survive a killed
job, and `resume` skips them on the next run. Decode tasks that die are retried by Ray; encoder
actors that die are restarted and their batches retried (Ray Data's defaults); rows are keyed by
(video, segment), so a retry neither loses nor duplicates anything. With `extract.decoder` on NVDEC
(`decodes_on_gpu`), there are no decode tasks: each encoder actor decodes its videos on its GPU and
encodes them there (`DecodeAndEncode`), so frames never cross to the host.

The local runner does the same work in this process, one video at a time (no Ray).

Both take the config sections they read: `extract`, `segment`, `encoder`, `tokenizer` and `ray`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lvmae.extract.decode import DecodeLimits
from lvmae.extract.encoder import check_model_name, check_pretrained, encoder_image_size
from lvmae.extract.inputs import InputError, scan_inputs
from lvmae.extract.plan import Plan, plan_extraction
from lvmae.extract.work import DecodeAndEncode, FrozenModels, ShardAssembler, VideoJob, segment_batches
from lvmae.foundation.loader import ConfigError
from lvmae.foundation.progress import Summary, bar, human_seconds
from lvmae.foundation.runtime import check_fits_a_node, check_resources, init_ray, live_nodes, ray_node_id
from lvmae.foundation.schema import Config, EncoderConfig, ExtractConfig, RayConfig, SegmentConfig, TokenizerConfig
from lvmae.store import NoStore, Store, StoreError, StoreIdentity
from lvmae.store.manifest import COLUMNS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Models:
    """The config sections that say what extraction computes: the segment spec and both models."""

    segment: SegmentConfig
    encoder: EncoderConfig
    tokenizer: TokenizerConfig

    @classmethod
    def of(cls, cfg: Config) -> Models:
        """The sections of a whole config."""
        return cls(segment=cfg.segment, encoder=cfg.encoder, tokenizer=cfg.tokenizer)


@dataclass
class ExtractReport:
    videos_ok: int = 0
    videos_failed: int = 0
    segments: int = 0
    video_seconds: float = 0.0
    shards_written: int = 0
    shards_replaced: int = 0  # of those written, shards that were committed before (re-extracted whole)
    shards_skipped: int = 0  # committed shards of the input's videos left as they are
    failures: list[tuple[str, str]] = field(default_factory=list)  # (uri, error) of this run
    earlier_failures: list[dict] = field(default_factory=list)  # failed rows of skipped shards
    skipped_files: dict[str, int] = field(default_factory=dict)  # extension -> files not taken as video
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # Ray node -> videos decoded, segments encoded
    seconds: float = 0.0
    decoder: str = ""  # where frames were decoded: "cpu" or "nvdec" (extract.decoder resolved)

    def count_work(self, batch: dict) -> None:
        """Tally where a batch was decoded and encoded (Ray runner: its rows name their nodes). Work a
        lost node did and a retry did again counts on both."""
        end = batch["end"]
        for key, rows, what in (("decode_node", end, "videos"), ("encode_node", ~end, "segments")):
            for node in batch[key][rows] if key in batch else ():
                work = self.nodes.setdefault(str(node), {"videos": 0, "segments": 0})
                work[what] += 1

    def summary(self, store_uri: str, runner: str) -> Summary:
        s = Summary(f"extract ({runner}): {store_uri}")
        s.started -= self.seconds
        s.add("videos", f"{self.videos_ok:,} ok, {self.videos_failed:,} failed")
        if self.earlier_failures:
            transient = sum(1 for f in self.earlier_failures if f.get("error_kind") == "transient")
            s.add(
                "failed in earlier runs",
                f"{len(self.earlier_failures):,} ({transient:,} transient: `--retry-failed` tries them again)",
            )
        s.add("segments", self.segments)
        s.add("video time", human_seconds(self.video_seconds))
        if self.decoder:
            s.add("decoding", _DECODING[self.decoder])
        replaced = f" ({self.shards_replaced} replaced)" if self.shards_replaced else ""
        s.add("shards", f"{self.shards_written} written{replaced}, {self.shards_skipped} already committed (kept)")
        if self.skipped_files:
            s.add(
                "files skipped",
                ", ".join(f"{n} {ext or '(no extension)'}" for ext, n in sorted(self.skipped_files.items())),
            )
        if self.nodes:
            s.add(
                f"Ray nodes ({len(self.nodes)})",
                "; ".join(
                    f"{node[:8]}: {w['videos']:,} videos decoded, {w['segments']:,} segments encoded"
                    for node, w in sorted(self.nodes.items())
                ),
            )
        if self.seconds > 0:
            s.add(
                "rate",
                f"{self.segments / self.seconds:,.1f} segments/s, "
                f"{self.video_seconds / 3600 / self.seconds:,.4f} video-hours/s",
            )
        for uri, error in self.failures:
            s.note(f"failed: {error if uri in error else f'{uri}: {error}'}")
        for f in self.earlier_failures:
            s.note(f"failed earlier ({f.get('error_kind') or 'permanent'}): {f['error']}")
        return s


_DECODING = {
    "cpu": "CPU (FFmpeg in software, frames converted on the CPU)",
    "nvdec": "GPU (NVDEC, frames converted on the encoder's GPU)",
}


def decodes_on_gpu(ex: ExtractConfig) -> bool:
    """Whether the Ray runner's encoder actors decode with NVDEC (`extract.decoder`) instead of CPU
    decode tasks feeding them. `auto` asks a task on a GPU the actors would use whether NVDEC works there."""
    if ex.decoder == "cpu":
        return False
    if not ex.actor_num_gpus:
        if ex.decoder == "nvdec":
            raise ConfigError("extract.decoder = nvdec: the encoder actors have no GPU; set extract.actor_num_gpus")
        return False
    if ex.decoder == "nvdec":
        return True
    import ray

    from lvmae.extract.nvdec import nvdec_missing

    if ray.cluster_resources().get("GPU", 0) < ex.actor_num_gpus:
        return False  # the actors cannot be placed either: check_resources says so

    missing = ray.get(ray.remote(num_gpus=ex.actor_num_gpus, num_cpus=0)(nvdec_missing).remote("cuda"))
    if missing is not None:
        log.warning("extract.decoder = auto: decode tasks on the CPU, since %s", missing)
    return missing is None


def check_models(models: Models) -> None:
    """Refuse a model name, pretrained tag or weights file that cannot load, before anything is written."""
    check_model_name(models.encoder.model, models.encoder.model_configs)
    check_pretrained(models.encoder.model, models.encoder.pretrained)
    if not Path(models.tokenizer.checkpoint).is_file():
        raise ConfigError(
            f"tokenizer.checkpoint: {str(models.tokenizer.checkpoint)!r} does not exist; fit one with "
            "`lvmae tokenizer fit --out FILE`"
        )


def store_identity(models: Models) -> StoreIdentity:
    """What the store records about the models and the segment spec, computed without loading models."""
    from lvmae.extract.encoder import EncoderIdentity
    from lvmae.extract.tokenizer.frozen import tokenizer_identity

    return StoreIdentity(
        encoder=EncoderIdentity.of(models.encoder.model, models.encoder.pretrained).to_dict(),
        tokenizer=tokenizer_identity(models.tokenizer.checkpoint, models.tokenizer.kappa),
        segment=dataclasses.asdict(models.segment),
    )


def decode_chunk_bytes(ex: ExtractConfig, spec: SegmentConfig, image_size: int) -> int:
    """Bytes of RGB frames for both models in one chunk of `extract.chunk_segments` segments."""
    per_segment = 3 * (spec.clip_frames * image_size**2 + spec.tok_frames * spec.tok_size**2)
    return int(ex.chunk_segments * per_segment)


def decoder_frame_bytes(ex: ExtractConfig) -> int:
    """What FFmpeg's own frames can take in one decode task: each of its threads, plus a few frames
    held for reordering, a YUV 4:2:0 frame of at most `extract.max_pixels` (larger ones are refused),
    whatever the videos' sizes turn out to be."""
    return (math.ceil(ex.decode_num_cpus) + 3) * ex.max_pixels * 3 // 2


def decode_task_memory(ex: ExtractConfig, spec: SegmentConfig, image_size: int) -> int:
    """Bytes a decode task holds at its peak: two chunks of converted frames (the one being filled and
    the one handed on; crops are copies, so square), the decoder's own frames at the largest size a
    video may have, plus 192 MiB for the interpreter's share and the rest (a 16-CPU GPU node saw 174 MiB
    peaks of toy-world decoding where the two chunks and the 192 MiB gave 141 MiB)."""
    return 2 * decode_chunk_bytes(ex, spec, image_size) + decoder_frame_bytes(ex) + (192 << 20)


ACTOR_START_TIMEOUT_S = 600
"""How long the Ray pipeline waits for its encoder actors to load their models before it starts."""


def pipeline_units(ex: ExtractConfig, *, decode_tasks: bool = True) -> dict[str, dict[str, float]]:
    """What one encoder actor and one decode task (unless the actors decode) ask of the node they run on."""
    actor = {"CPU": ex.actor_num_cpus, **({"GPU": ex.actor_num_gpus} if ex.actor_num_gpus else {})}
    gpus = f", extract.actor_num_gpus={ex.actor_num_gpus:g}" if ex.actor_num_gpus else ""
    units = {f"extract.actor_num_cpus={ex.actor_num_cpus:g}{gpus} for one encoder actor": actor}
    if decode_tasks:
        units[f"extract.decode_num_cpus={ex.decode_num_cpus:g} for one decode task"] = {"CPU": ex.decode_num_cpus}
    return units


def pipeline_resources(ex: ExtractConfig, *, decode_tasks: bool = True) -> dict[str, dict[str, float]]:
    """What the pipeline must hold at once, by Ray resource and the settings that ask for it: the
    encoder actors and at least one decode task (unless the actors decode, `decodes_on_gpu`). An actor
    pool holding every CPU starves the decode tasks and the job hangs without a word (seen on a 2-CPU
    machine)."""
    cpus = {f"extract.actors={ex.actors} x extract.actor_num_cpus={ex.actor_num_cpus:g}": ex.actors * ex.actor_num_cpus}
    if decode_tasks:
        cpus[f"extract.decode_num_cpus={ex.decode_num_cpus:g} for one decode task"] = ex.decode_num_cpus
    request = {"CPU": cpus}
    if ex.actor_num_gpus:
        request["GPU"] = {
            f"extract.actors={ex.actors} x extract.actor_num_gpus={ex.actor_num_gpus:g}": ex.actors * ex.actor_num_gpus
        }
    return request


class _Progress:
    def __init__(self, total_videos: int, report: ExtractReport):
        self.report = report
        self.bar = bar(total=total_videos, desc="extract", unit="video")
        self.started = time.perf_counter()

    def finished(self, records: list[dict]) -> None:
        for r in records:
            if r["status"] == "ok":
                self.report.videos_ok += 1
                self.report.segments += r["n_segments"]
                self.report.video_seconds += r["duration"]
            else:
                self.report.videos_failed += 1
                self.report.failures.append((r["uri"], r["error"] or "failed"))
        if records:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            self.bar.update(len(records))
            self.bar.set_postfix(
                failed=self.report.videos_failed,
                seg=self.report.segments,
                seg_s=f"{self.report.segments / elapsed:.1f}",
                vh_s=f"{self.report.video_seconds / 3600 / elapsed:.3f}",
            )

    def close(self) -> None:
        self.bar.close()


def run_extract(
    ex: ExtractConfig,
    models: Models,
    ray_cfg: RayConfig,
    *,
    store_uri: str,
    inputs=None,
    runner: str | None = None,
    resume: bool | None = None,
    retry: str | None = None,
) -> ExtractReport:
    """Extract the input videos (`inputs`, default `ex.inputs`) that the store at `store_uri` does not
    have yet (`extract.plan`); returns what happened (also for `--strict`). `resume=False` re-extracts
    the committed shards of the input's videos, `retry` ("transient" or "all") those holding failures.

    The store's root is written only when the first shard commits, after the models have run: a
    misspelt model or a missing weights file leaves no store behind with a wrong identity."""
    source = inputs or ex.inputs
    if source is None:
        raise InputError("extract.inputs is not set: name a directory, list file or parquet/CSV of videos")
    listing = scan_inputs(source)
    check_models(models)
    identity = store_identity(models)
    store = _LazyStore(store_uri, identity)
    plan = plan_extraction(
        listing.videos,
        store.committed_videos(),
        ex.shard_videos,
        resume=ex.resume if resume is None else resume,
        retry=retry,
    )
    report = ExtractReport(
        shards_skipped=len(plan.kept), earlier_failures=plan.earlier_failures, skipped_files=listing.skipped
    )
    jobs = {sid: [(VideoJob(v.video_id, v.uri, sid), v.extra) for v in planned] for sid, planned in plan.shards.items()}
    runner = runner or ex.runner
    started = time.perf_counter()
    if jobs:
        writer = _ShardCommitter(store, plan, report)
        if runner == "ray":
            _run_ray(ex, models, ray_cfg, jobs, writer, report)
        else:
            _run_local(ex, models, jobs, writer, report)
    report.seconds = time.perf_counter() - started
    return report


class _LazyStore:
    """The store, created (its root written) at the first commit, or opened now when it exists, so its
    committed shards can be planned against and a store of another identity is refused at once."""

    def __init__(self, uri: str, identity: StoreIdentity):
        self.uri, self.identity = uri, identity
        try:
            Store.open(uri)
        except NoStore:
            self._store: Store | None = None
        else:
            self._store = Store.create(uri, identity)  # refuses another identity, writes nothing

    def committed_videos(self) -> pa.Table:
        return self._store.videos() if self._store is not None else COLUMNS.empty_table()

    def get(self) -> Store:
        if self._store is None:
            self._store = Store.create(self.uri, self.identity)
        return self._store


class _ShardCommitter:
    """Commits complete shards and keeps the report true: a video the store refused is a failure."""

    def __init__(self, store: _LazyStore, plan: Plan, report: ExtractReport):
        self.store, self.plan, self.report = store, plan, report

    def commit_complete(self, assembler: ShardAssembler) -> None:
        for sid in assembler.complete_shards():
            replace = sid in self.plan.replace
            store = self.store.get()
            planned = sorted(v.video_id for v in self.plan.shards[sid])
            try:
                refused = assembler.write(store, sid, overwrite=replace)
            except StoreError:
                # Another job with the same list committed the same videos under the same id first: fine.
                committed = store.videos()
                if (
                    replace
                    or sorted(committed.filter(pc.equal(committed["shard_id"], sid))["video_id"].to_pylist()) != planned
                ):
                    raise
                self.report.shards_skipped += 1
                continue
            self.report.shards_written += 1
            self.report.shards_replaced += replace
            for r in refused:
                self.report.videos_ok -= 1
                self.report.videos_failed += 1
                self.report.segments -= r["n_segments"]
                self.report.video_seconds -= r["duration"]
                self.report.failures.append((r["uri"], r["error"]))


def _run_local(ex: ExtractConfig, models: Models, jobs, committer: _ShardCommitter, report: ExtractReport) -> None:
    work = DecodeAndEncode(
        models.encoder,
        models.tokenizer,
        spec=models.segment,
        image_size=encoder_image_size(models.encoder),
        chunk=ex.chunk_segments,
        limits=DecodeLimits.from_config(ex),
        decoder=ex.decoder,
    )
    report.decoder = "nvdec" if work.pixels.hwaccel is not None else "cpu"
    assembler = ShardAssembler(jobs)
    progress = _Progress(sum(len(v) for v in jobs.values()), report)
    try:
        for vids in jobs.values():
            for job, _ in vids:
                for batch in work.video(job):
                    progress.finished(assembler.add(batch))
            committer.commit_complete(assembler)
    finally:
        progress.close()


# ---- Ray ---------------------------------------------------------------------------------------


def _decode_tasks_then_actors(ex: ExtractConfig, models: Models, source, spec, size, limits, actors, threads):
    """The CPU plan: one decode task per video (`segment_batches`) feeding the encoder actor pool."""
    import ray.data

    chunk = ex.chunk_segments

    def decode(rows: dict):
        node = ray_node_id()
        for job in VideoJob.from_rows(rows):
            for batch in segment_batches(job, spec, size, chunk, limits):
                yield {**batch, "decode_node": np.array([node] * len(batch["end"]), dtype=object)}

    return (
        # Decode tasks reserve the memory they hold, so Ray never packs more onto a node than fit
        # (a dead decode worker is retried: Ray's default for tasks). Differing remote args also
        # keep Ray Data from fusing this stage into the actor stage, which would decode inside
        # the encoder actors, one video at a time.
        source.map_batches(
            decode,
            batch_size=1,
            num_cpus=ex.decode_num_cpus,
            memory=decode_task_memory(ex, spec, size),
            compute=ray.data.TaskPoolStrategy(size=ex.decode_tasks),
        ).map_batches(
            FrozenModels,
            batch_size=ex.encode_batch,
            **actors,
            fn_constructor_kwargs={
                "encoder_cfg": models.encoder,
                "tokenizer_cfg": models.tokenizer,
                "threads": threads,
            },
        )
    )


def _run_ray(
    ex: ExtractConfig, models: Models, ray_cfg: RayConfig, jobs, committer: _ShardCommitter, report: ExtractReport
) -> None:
    import ray
    import ray.data

    started_here = init_ray(ray_cfg)
    try:
        report.decoder = "nvdec" if decodes_on_gpu(ex) else "cpu"
        tasks = report.decoder == "cpu"  # decode tasks feed the actors, or the actors decode
        remedy = "lower extract.actors or extract.actor_num_cpus (extract.actor_num_gpus: 0 for CPU)"
        check_resources(
            pipeline_resources(ex, decode_tasks=tasks),
            ray.cluster_resources(),
            consequence="decoding would starve and the job would hang",
            remedy=remedy,
        )
        check_fits_a_node(pipeline_units(ex, decode_tasks=tasks), live_nodes(), remedy=remedy)
        spec, size = models.segment, encoder_image_size(models.encoder)
        limits = DecodeLimits.from_config(ex)
        ctx = ray.data.DataContext.get_current()  # this process's; restored below
        saved = ctx.enable_progress_bars, ctx.target_max_block_size, ctx.wait_for_min_actors_s
        ctx.enable_progress_bars = False  # the driver draws one bar of its own
        # Start encoding once every encoder actor has loaded its models: otherwise the first one up
        # took every batch of a short job (seen on a two-node cluster, the other node's actor idle),
        # and an actor that can never be placed ends the job after this long instead of hanging it.
        ctx.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
        # A decode task yields a chunk of segments at a time, but Ray Data packs a task's output into
        # blocks of up to 128 MiB (a whole toy-world video), so the encoder waited for a video to be
        # decoded to its end. Blocks of one chunk let encoding start on a video's first chunk.
        ctx.target_max_block_size = decode_chunk_bytes(ex, spec, size)
        items = [
            {"video_id": job.video_id, "uri": job.uri, "shard_id": job.shard_id}
            for vids in jobs.values()
            for job, _ in vids
        ]
        threads = max(1, math.ceil(ex.actor_num_cpus))
        actors = {
            "compute": ray.data.ActorPoolStrategy(size=ex.actors),
            "num_cpus": ex.actor_num_cpus,
            "num_gpus": ex.actor_num_gpus or None,
        }
        source = ray.data.from_items(items, override_num_blocks=len(items))
        if report.decoder == "nvdec":
            # Each actor decodes its videos on its GPU and encodes them there, one video at a time.
            ds = source.map_batches(
                DecodeAndEncode,
                batch_size=1,
                **actors,
                fn_constructor_kwargs={
                    "encoder_cfg": models.encoder,
                    "tokenizer_cfg": models.tokenizer,
                    "spec": spec,
                    "image_size": size,
                    "chunk": ex.chunk_segments,
                    "limits": limits,
                    "decoder": ex.decoder,
                    "threads": threads,
                },
            )
        else:
            ds = _decode_tasks_then_actors(ex, models, source, spec, size, limits, actors, threads)
        assembler = ShardAssembler(jobs)
        progress = _Progress(len(items), report)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                report.count_work(batch)
                progress.finished(assembler.add(batch))
                committer.commit_complete(assembler)
        finally:
            progress.close()
            ctx.enable_progress_bars, ctx.target_max_block_size, ctx.wait_for_min_actors_s = saved
        if assembler.pending:
            raise RuntimeError(f"the pipeline ended with shards incomplete: {', '.join(sorted(assembler.pending))}")
    finally:
        if started_here:
            ray.shutdown()
