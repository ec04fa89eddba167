"""lvmae's configuration schema: every section of `pipeline.yaml`, as typed dataclasses.

One schema module on the ground floor (rather than a section beside each owner): stages import the
sections they take (`run_extract(ex: ExtractConfig, ...)`, `train(p: PretrainConfig, ...)`), the CLI
loads the whole `Config` once with `load_config`, and `lvmae config keys` lists it all from here.
Field docstrings are the documentation (`foundation.loader.field_docs`); `__post_init__` checks values
and the loader's errors name the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lvmae.foundation.loader import PathOrTag, Uri, check, load, to_plain

DEFAULT_CONFIG_NAME = "pipeline.yaml"


def _is_device(device: str) -> bool:
    return device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())


def _check_optimizer(section: Any) -> None:
    """The settings every fit's AdamW and warmup + cosine schedule (`foundation.optim`) share."""
    check(section.steps >= 1, "steps", section.steps, "at least 1")
    check(section.lr > 0, "lr", section.lr, "a positive learning rate")
    check(section.warmup >= 0, "warmup", section.warmup, "steps >= 0")
    check(section.weight_decay >= 0, "weight_decay", section.weight_decay, "a number >= 0")


@dataclass
class PathsConfig:
    work_dir: Path = Path("runs")
    """Root directory for what the stages write (checkpoints, indexes, logs)."""
    store: Uri = Uri("runs/store")
    """Zarr store of segment features: a local path or an fsspec URI (file://, memory://, s3://)."""


@dataclass
class SegmentConfig:
    seconds: float = 2.0
    """Segment length in seconds of presentation time (2 s in the toy world, 5 s for real footage)."""
    min_fraction: float = 0.5
    """A trailing partial segment is kept when it is at least this fraction of a segment."""
    clip_frames: int = 8
    """Frames sampled uniformly inside a segment for the image encoder."""
    tok_frames: int = 9
    """Consecutive frames (1 + 4k) given to the tokenizer per segment."""
    tok_fps: float = 8.0
    """Frame rate (frames/s) at which tokenizer frames are taken."""
    tok_size: int = 64
    """Tokenizer frame side in pixels (frames are resized and centre-cropped to a square)."""

    def __post_init__(self):
        check(self.seconds > 0, "seconds", self.seconds, "a positive number of seconds")
        check(0 < self.min_fraction <= 1, "min_fraction", self.min_fraction, "a fraction in (0, 1]")
        check(self.clip_frames >= 1, "clip_frames", self.clip_frames, "at least 1")
        check(
            self.tok_frames >= 1 and (self.tok_frames - 1) % 4 == 0,
            "tok_frames",
            self.tok_frames,
            "1 + 4k frames (1, 5, 9, 13, ...)",
        )
        check(self.tok_fps > 0, "tok_fps", self.tok_fps, "a positive frame rate")
        check(
            self.tok_size >= 8 and self.tok_size % 8 == 0,
            "tok_size",
            self.tok_size,
            "a multiple of 8 pixels, at least 8",
        )


@dataclass
class EncoderConfig:
    model: str = "toyclip"
    """open_clip model name (e.g. ViT-B-32); `toyclip` is the toy world's stand-in architecture."""
    pretrained: PathOrTag = PathOrTag("lvmae:toyworld/weights/toyclip.pt")
    """open_clip pretrained tag (e.g. laion2b_s34b_b79k) or a checkpoint file path; `lvmae:...` is a file shipped in the package."""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu, cuda or cuda:N."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Weights and activations dtype: auto is fp32 on CPU and bf16 on GPU."""
    batch_size: int = 256
    """Frames per encoder forward pass."""
    model_configs: list[Path] = field(default_factory=lambda: [Path("lvmae:toyworld/model_configs")])
    """Folders of extra open_clip model configs (JSON) registered before the model is built; the default holds the toy world's `toyclip`."""

    def __post_init__(self):
        check(_is_device(self.device), "device", self.device, "auto, cpu, cuda or cuda:N")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")


@dataclass
class TokenizerFitConfig:
    steps: int = 5000
    """Optimizer steps of `lvmae tokenizer fit`."""
    batch_size: int = 8
    """Clips per step (clip length, side and frame rate come from the segment section)."""
    lr: float = 1.0e-3
    """Peak learning rate (AdamW), after warmup; cosine decay to 5 % of it at `steps`."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup: int = 200
    """Linear learning-rate warmup, steps."""
    drop_ratio: float = 0.3
    """Fraction of tokens dropped in the half of each batch that is decoded from a subset (the scorer's signal)."""
    scorer_weight: float = 0.5
    """Weight of the scorer's loss beside the reconstruction loss."""
    recon_loss: Literal["mse", "l1"] = "mse"
    """Reconstruction loss (the scorer's target is squared error either way)."""
    seed: int = 0
    """Seed of the init, the clips and the dropped tokens."""
    max_minutes: float | None = None
    """Stop after this much fitting time, then save (null: run every step)."""
    checkpoint_every: int = 500
    """Save the resumable state every this many steps."""
    log_every: int = 25
    """Write a loss-log row every this many steps."""
    threads: int | None = None
    """torch CPU threads (null: torch's default)."""
    eval_clips: int = 256
    """Held-out toy-world clips scored after a fit and by `lvmae tokenizer eval`."""
    eval_seed: int = 5000
    """Seed of the held-out toy-world corpus those clips come from (never the fit's)."""

    def __post_init__(self):
        check(self.batch_size >= 2, "batch_size", self.batch_size, "at least 2 (half of a batch drops tokens)")
        check(0 < self.drop_ratio < 1, "drop_ratio", self.drop_ratio, "a fraction in (0, 1)")
        _check_optimizer(self)
        check(self.max_minutes is None or self.max_minutes > 0, "max_minutes", self.max_minutes, "null or > 0")
        check(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, "at least 1 step")
        check(self.log_every >= 1, "log_every", self.log_every, "at least 1 step")
        check(self.eval_clips >= 1, "eval_clips", self.eval_clips, "at least 1")


@dataclass
class TokenizerConfig:
    checkpoint: Path = Path("lvmae:toyworld/weights/tokenizer.pt")
    """Fitted tokenizer checkpoint (weights plus its own architecture config)."""
    kappa: float = 0.15
    """Token budget: fraction of a clip's tokens kept by the scorer; importance = mean of the top-kappa scores."""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu, cuda or cuda:N."""
    batch_size: int = 32
    """Clips per tokenizer forward pass."""
    fit: TokenizerFitConfig = field(default_factory=TokenizerFitConfig)
    """`lvmae tokenizer fit`: fitting the tokenizer and its scorer."""

    def __post_init__(self):
        check(0 < self.kappa <= 1, "kappa", self.kappa, "a fraction in (0, 1]")
        check(_is_device(self.device), "device", self.device, "auto, cpu, cuda or cuda:N")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")


@dataclass
class RayConfig:
    address: str | None = None
    """Ray cluster to join: null starts a local Ray (RAY_ADDRESS, when set, wins), `auto` joins a running one."""
    num_cpus: int | None = None
    """CPUs for a local Ray (null: all of this machine's)."""


@dataclass
class ExtractConfig:
    inputs: Path | None = None
    """Videos to extract: a directory (searched recursively), a text file of paths/URIs, or a parquet/CSV with a `uri` column."""
    shard_videos: int = 16
    """Videos per store shard; exactly one task writes a shard."""
    resume: bool = True
    """Skip shards already committed in the store."""
    strict: bool = False
    """Exit non-zero when any video fails (otherwise only when none succeeds)."""
    runner: Literal["ray", "local"] = "ray"
    """ray: decode tasks feed an actor pool running the models; local: one process, one video at a time."""
    actors: int = 1
    """Encoder actors (each runs both frozen models); one per GPU on a GPU node."""
    actor_num_cpus: float = 1.0
    """CPUs each encoder actor reserves (its torch threads: this, rounded up)."""
    actor_num_gpus: float = 0.0
    """GPUs each encoder actor reserves (0 on a CPU machine, 1 per actor on a GPU node)."""
    decode_num_cpus: float = 1.0
    """CPUs each decode task reserves."""
    decode_tasks: int | None = None
    """Most decode tasks at once (null: as many as the free CPUs allow)."""
    encode_batch: int = 64
    """Segments per encoder-actor batch (batches span videos)."""
    chunk_segments: int = 32
    """Segments a decode task hands on at a time; bounds its memory whatever the video length."""
    schemes: list[str] = field(default_factory=list)
    """URI schemes FFmpeg reads (e.g. [http, https]) accepted besides local files; an input of any other scheme is a failed row."""
    open_timeout_s: float = 30.0
    """Seconds a network input may take to open before the video fails (a transient failure)."""
    read_timeout_s: float = 30.0
    """Seconds a network input may stall while reading before the video fails (a transient failure)."""
    video_timeout_s: float | None = 3600.0
    """Wall-time budget of one video's decoding, checked as frames arrive (null: none); a live stream ends here."""
    max_pixels: int = 3840 * 2160
    """Frames with more pixels than this (4K by default) are refused: the video becomes a failed row."""
    max_aspect: float = 4.0
    """Frames longer than this many times their short side (either way) are refused as failed rows."""
    decoder: Literal["auto", "cpu", "nvdec"] = "auto"
    """cpu: FFmpeg decodes in software and converts frames on the CPU; nvdec: FFmpeg's CUDA decoder on the encoder's GPU, frames converted and resized there and never copied to the host (the encoder actors decode); auto: nvdec where the encoder runs on CUDA and PyAV has CUDA, else cpu."""
    sparse_decode: bool = True
    """Decode only the frames the samplers need: each sampled frame is the nearest decoded one within half its sample interval (false: every frame is decoded and each sample is the frame on screen at its time)."""

    def __post_init__(self):
        check(self.shard_videos >= 1, "shard_videos", self.shard_videos, "at least 1")
        check(self.actors >= 1, "actors", self.actors, "at least 1")
        check(self.actor_num_cpus > 0, "actor_num_cpus", self.actor_num_cpus, "a positive number of CPUs")
        check(self.actor_num_gpus >= 0, "actor_num_gpus", self.actor_num_gpus, "0 or more GPUs")
        check(self.decode_num_cpus > 0, "decode_num_cpus", self.decode_num_cpus, "a positive number of CPUs")
        check(
            self.decode_tasks is None or self.decode_tasks >= 1, "decode_tasks", self.decode_tasks, "null or at least 1"
        )
        check(self.encode_batch >= 1, "encode_batch", self.encode_batch, "at least 1")
        check(self.chunk_segments >= 1, "chunk_segments", self.chunk_segments, "at least 1")
        check(self.open_timeout_s > 0, "open_timeout_s", self.open_timeout_s, "a positive number of seconds")
        check(self.read_timeout_s > 0, "read_timeout_s", self.read_timeout_s, "a positive number of seconds")
        check(
            self.video_timeout_s is None or self.video_timeout_s > 0,
            "video_timeout_s",
            self.video_timeout_s,
            "null or a positive number of seconds",
        )
        check(self.max_pixels >= 64, "max_pixels", self.max_pixels, "at least 64 pixels")
        check(self.max_aspect >= 1, "max_aspect", self.max_aspect, "a ratio of at least 1")
        check(
            all(s and "://" not in s for s in self.schemes),
            "schemes",
            self.schemes,
            "scheme names such as http or s3, without ://",
        )


@dataclass
class PretrainConfig:
    preset: str = "small"
    """Model size preset: a name in pretrain/presets/ (tiny, small, base, large) or a YAML file."""
    max_segments: int = 4096
    """Longest training window in segments; windows are random length up to this, random start."""
    min_segments: int = 64
    """Shortest training window in segments; a batch's window length is drawn log-uniformly in [min_segments, max_segments]."""
    encoder_mask: Literal["random", "semantic", "adaptive", "span"] = "random"
    """Which segments the encoder does not see: random, semantic (by similarity to the previous segment),
    adaptive (more often the important ones) or span (runs of consecutive segments, see span_lengths)."""
    semantic_direction: Literal["dissimilar", "similar"] = "dissimilar"
    """Semantic encoder masking hides the segments least (dissimilar) or most (similar) like the previous segment."""
    span_lengths: tuple[int, int] = (5, 20)
    """Span encoder masking hides pieces of this many consecutive segments, [min, max] (uniform)."""
    mask_ratio: float = 0.75
    """Fraction of a window's segments hidden from the encoder (0.75: see bench.representation in the README)."""
    decoder_mask: Literal["all", "random", "adaptive", "mix"] = "mix"
    """Which hidden segments the decoder reconstructs: all, a random fraction, the top-kappa by importance,
    or mix (the top-kappa plus as many again at random)."""
    kappa: float = 0.15
    """Fraction of hidden segments the decoder reconstructs under random and adaptive decoder masks."""
    loss: Literal["mse", "cosine"] = "mse"
    """Reconstruction loss on the L2-normalised embeddings of the reconstructed segments."""
    code_head: bool = False
    """Also predict each reconstructed segment's FSQ token codes (needs a store with a tokenizer)."""
    code_weight: float = 0.1
    """Weight of the code-head loss added to the reconstruction loss."""
    trainer: Literal["local", "ray"] = "local"
    """local: one process on `device`; ray: Ray Train TorchTrainer with DDP over num_workers workers."""
    device: str = "auto"
    """Local trainer's device: auto (cuda when available, else cpu), cpu, cuda or cuda:N; bf16 autocast on cuda."""
    num_workers: int = 2
    """Ray trainer: training workers (DDP ranks); each reads its own windows."""
    cpus_per_worker: float = 1.0
    """Ray trainer: CPUs reserved per worker."""
    use_gpu: bool = False
    """Ray trainer: one GPU per worker (NCCL); false trains on CPU workers (gloo)."""
    placement: Literal["pack", "spread"] = "pack"
    """Ray trainer: pack puts the workers on as few nodes as hold them (Ray's default); spread puts
    them on different nodes where it can (one worker per node on a cluster of num_workers nodes)."""
    max_failures: int = 2
    """Ray trainer: times a run survives a lost or failed worker (a node gone, a killed process) by
    restarting every worker from the last checkpoint (Ray Train's FailureConfig); 0: fail at once,
    -1: no limit. An error in the run itself is tried again as often before it is reported."""
    steps: int = 2000
    """Optimizer steps in the whole run (warmup included)."""
    batch_size: int = 4
    """Windows per step per worker; the effective batch is batch_size * workers windows."""
    lr: float = 1.0e-3
    """Peak learning rate (AdamW), reached after warmup, then cosine decay to zero at `steps`."""
    warmup: int = 100
    """Linear learning-rate warmup, steps."""
    weight_decay: float = 0.05
    """AdamW weight decay, on weight matrices only (not biases, norms, the mask token)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    seed: int = 0
    """Seed of the model init and of every window and mask: the same seed gives the same run."""
    val_fraction: float = 0.1
    """Fraction of videos held out for validation, chosen by a hash of the video id."""
    val_interval: int = 200
    """Validation loss every this many steps, and at the end (0: only at the end)."""
    val_batches: int = 4
    """Batches of held-out windows (fixed windows and masks) per validation."""
    checkpoint_dir: Path = Path("runs/pretrain")
    """Where checkpoint.pt (resumable state), model.pt (final weights) and metrics.jsonl go."""
    checkpoint_interval: int = 200
    """Save a resumable checkpoint every this many steps, and at the end."""
    embeddings_store: Uri = Uri("runs/store-lvmae")
    """Where `lvmae embed-sequences` writes the encoder's per-segment outputs (a store: path or fsspec URI)."""

    def __post_init__(self):
        check(self.max_segments >= 2, "max_segments", self.max_segments, "at least 2")
        check(
            2 <= self.min_segments <= self.max_segments,
            "min_segments",
            self.min_segments,
            "at least 2 and at most max_segments",
        )
        lo, hi = self.span_lengths
        check(1 <= lo <= hi, "span_lengths", list(self.span_lengths), "[min, max] segments with 1 <= min <= max")
        check(0 < self.mask_ratio < 1, "mask_ratio", self.mask_ratio, "a fraction in (0, 1)")
        check(0 < self.kappa <= 1, "kappa", self.kappa, "a fraction in (0, 1]")
        check(self.code_weight >= 0, "code_weight", self.code_weight, "a weight >= 0")
        check(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "device",
            self.device,
            "auto, cpu, cuda or cuda:N",
        )
        check(self.num_workers >= 1, "num_workers", self.num_workers, "at least 1")
        check(self.cpus_per_worker >= 0, "cpus_per_worker", self.cpus_per_worker, "a number of CPUs >= 0")
        check(self.max_failures >= -1, "max_failures", self.max_failures, "restarts >= 0, or -1 for no limit")
        _check_optimizer(self)
        check(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")
        check(self.grad_clip >= 0, "grad_clip", self.grad_clip, "a norm >= 0 (0 disables clipping)")
        check(0 <= self.val_fraction < 1, "val_fraction", self.val_fraction, "a fraction in [0, 1)")
        check(self.val_interval >= 0, "val_interval", self.val_interval, "steps >= 0")
        check(self.val_batches >= 1, "val_batches", self.val_batches, "at least 1")
        check(self.checkpoint_interval >= 1, "checkpoint_interval", self.checkpoint_interval, "at least 1 step")


@dataclass
class RetrievalConfig:
    index: Literal["auto", "flat", "hnsw", "ivfpq"] = "auto"
    """FAISS index kind over segment embeddings (cosine similarity): flat (exact), hnsw (HNSW graph),
    ivfpq (IVF + product quantizer + refine), or auto: chosen from the vector count, D and
    max_index_memory (see `retrieval.kinds`)."""
    max_index_memory: str = "8GiB"
    """Memory an index may take (auto's budget), with a unit: e.g. 8GiB, 512MiB, 2GB."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where FAISS builds and searches: auto = a GPU when faiss-gpu and a GPU are present, else CPU."""
    text_precision: Literal["auto", "fp32", "bf16"] = "auto"
    """The query text tower's weights: auto = bf16 where it runs natively (a GPU, or a CPU with
    AVX512-BF16/AMX: a single query then reads half the weight bytes, cosine 0.9999 to fp32), else fp32."""
    index_dir: Path = Path("runs/index")
    """The index folder `lvmae index build` writes and `lvmae search` reads."""
    captions: Path = Path("runs/toyworld/captions.txt")
    """The caption bank: a text file of captions, one a line, encoded with the store's own encoder."""
    k: int = 10
    """Moments returned per query."""
    per_video: int = 3
    """Moments of one video in a query's top before other videos' strong answers (0: no limit); its
    further moments come after those, never after a weaker one."""
    depth: int = 256
    """Segments fetched per query before they are merged into moments."""
    merge_margin: float = 0.1
    """Adjacent hits join a moment while within this fraction of the query's contrast (its best hit
    minus its 10th-percentile score over the index) of the moment's best segment; a deeper dip
    between two steps keeps them apart."""
    hnsw_m: int = 32
    """HNSW: graph neighbours per vector (M)."""
    ef_construction: int = 40
    """HNSW: candidate list length while building (larger: better graph, slower build)."""
    ef_search: int = 128
    """HNSW: candidate list length while searching (larger: higher recall, slower queries)."""
    nprobe: int = 192
    """IVF-PQ: inverted lists visited per query."""
    refine_factor: int = 24
    """IVF-PQ: candidates re-ranked with the refine codes, as a multiple of the first 10 results asked for."""
    train_sample: int = 65536
    """IVF-PQ: vectors sampled evenly from the store to train the quantizers."""

    def __post_init__(self):
        parse_bytes(self.max_index_memory, "max_index_memory")
        check(self.k >= 1, "k", self.k, "at least 1")
        check(self.per_video >= 0, "per_video", self.per_video, "0 (no limit) or more")
        check(self.depth >= 1, "depth", self.depth, "at least 1")
        check(0 <= self.merge_margin <= 1, "merge_margin", self.merge_margin, "a fraction in [0, 1]")
        for key in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "refine_factor"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "at least 1")
        check(self.train_sample >= 10_000, "train_sample", self.train_sample, "at least 10000")

    @property
    def max_index_bytes(self) -> int:
        return parse_bytes(self.max_index_memory, "max_index_memory")


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def parse_bytes(text: str, key: str) -> int:
    """'8GiB', '512 MiB', '2GB', '1e9' -> bytes; anything else is an error naming `key`."""
    value = str(text).strip()
    number = value.rstrip("KMGTiBkmgtb ")
    unit = value[len(number) :].strip().upper()
    try:
        amount = float(number)
    except ValueError:
        amount = -1.0
    check(amount > 0 and unit in _UNITS, key, text, "a size with a unit, e.g. 8GiB, 512MiB or 2GB")
    return int(amount * _UNITS[unit])


@dataclass(frozen=True)
class CorpusSpec:
    """What a toy-world corpus is: the same spec renders the same frames and truth."""

    videos: int = 24
    """Number of videos to generate."""
    minutes: tuple[float, float] = (1.0, 64.0)
    """Range of video lengths in minutes."""
    seed: int = 0
    """Random seed: the same seed gives the same frames and truth."""
    size: int = 64
    """Frame side in pixels."""
    fps: float = 8.0
    """Frames per second."""

    def __post_init__(self):
        check(self.videos >= 1, "videos", self.videos, "at least 1")
        lo, hi = self.minutes
        check(0 < lo <= hi, "minutes", list(self.minutes), "[min, max] with 0 < min <= max")
        check(
            self.size >= 16 and self.size % 2 == 0,
            "size",
            self.size,
            "an even number of pixels, at least 16 (yuv420p needs even sides)",
        )
        check(self.fps > 0, "fps", self.fps, "a positive frame rate")

    def corpus(self) -> CorpusSpec:
        """The corpus part alone (a `ToyworldConfig` also says where it goes and how to fit on it)."""
        return CorpusSpec(self.videos, (self.minutes[0], self.minutes[1]), self.seed, self.size, self.fps)


@dataclass(frozen=True)
class EncoderFitConfig:
    steps: int = 1500
    """Optimizer steps of `lvmae toyworld fit-encoder`."""
    batch_size: int = 240
    """Frames per step, each with a distinct caption (at most the caption bank's size)."""
    lr: float = 2.0e-3
    """Peak learning rate (AdamW), after warmup; cosine decay to 0 at `steps`."""
    weight_decay: float = 0.05
    """AdamW weight decay, on weight matrices only (not norms, biases, embeddings, the temperature)."""
    warmup: int = 150
    """Linear learning-rate warmup, steps."""
    seed: int = 0
    """Seed of the init and of the rendered frames."""
    size: int = 64
    """Frame side in pixels."""
    eval_frames: int = 1000
    """Held-out frames of the zero-shot check after a fit and of `lvmae toyworld eval-encoder`."""
    eval_seed: int = 1000
    """Seed of the held-out corpus those frames come from."""
    max_minutes: float | None = None
    """Stop early (still saving) after this much wall time (null: run every step)."""
    threads: int | None = None
    """torch CPU threads (null: torch's default)."""

    def __post_init__(self):
        check(self.batch_size >= 2, "batch_size", self.batch_size, "at least 2")
        _check_optimizer(self)
        check(self.max_minutes is None or self.max_minutes > 0, "max_minutes", self.max_minutes, "null or > 0")
        check(self.eval_frames >= 1, "eval_frames", self.eval_frames, "at least 1")


@dataclass(frozen=True)
class ToyworldConfig(CorpusSpec):
    out: Path = Path("runs/toyworld")
    """Where the generated corpus goes (videos/, truth.parquet, captions.txt)."""
    fit: EncoderFitConfig = field(default_factory=EncoderFitConfig)
    """`lvmae toyworld fit-encoder`: fitting the stand-in open_clip encoder."""


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    """Where `lvmae demo` puts every stage's outputs; finished stages are skipped on a re-run."""
    pretrain_steps: int = 2000
    """Pretraining steps the demo runs (pretrain.steps is for real runs); the rest of pretrain applies."""
    heldout_videos: int = 120
    """Videos of the held-out corpus: the same world (so the same classes) from another seed, which the
    demo generates and extracts; inspection and probes run on it, never on the training videos (120:
    10 of each of the 12 classes, so every probe split has every class)."""
    heldout_minutes: tuple[float, float] = (1.0, 2.0)
    """Range of the held-out videos' lengths in minutes."""
    heldout_seed: int = 1
    """Seed of the held-out corpus; must differ from toyworld.seed."""

    def __post_init__(self):
        check(self.pretrain_steps >= 1, "pretrain_steps", self.pretrain_steps, "at least 1")
        check(self.heldout_videos >= 1, "heldout_videos", self.heldout_videos, "at least 1")
        lo, hi = self.heldout_minutes
        check(0 < lo <= hi, "heldout_minutes", list(self.heldout_minutes), "[min, max] with 0 < min <= max")

    def heldout(self, world: CorpusSpec) -> CorpusSpec:
        """The held-out corpus: this section's videos, lengths and seed, the world's frame size and rate."""
        return CorpusSpec(self.heldout_videos, self.heldout_minutes, self.heldout_seed, world.size, world.fps)


@dataclass
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    """Where things are read and written."""
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    """How videos are cut into segments and which frames each model sees."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Frozen image-text encoder (open_clip)."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Frozen MAGVIT-FSQ tokenizer with token scorer."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Ray runtime for distributed stages."""
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    """Stage 1: batch feature extraction into the store."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Stage 2: LV-MAE pretraining with adaptive masking."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    """Stage 3: FAISS text-to-segment retrieval and reconstruction inspection."""
    toyworld: ToyworldConfig = field(default_factory=ToyworldConfig)
    """The embedded default's procedural corpus."""
    demo: DemoConfig = field(default_factory=DemoConfig)
    """`lvmae demo`: every stage on the embedded default."""
    source: Path | None = field(default=None, metadata={"internal": True})
    """The config file this was read from (None for built-in defaults); not a YAML key."""

    def to_dict(self) -> dict[str, Any]:
        """The effective config as plain YAML/JSON-able data (paths as strings)."""
        return to_plain(self)


def find_default_config(cwd: Path | None = None) -> Path | None:
    """`pipeline.yaml` in the working directory, if there is one."""
    candidate = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
    return candidate if candidate.is_file() else None


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), *, use_default_file: bool = True
) -> Config:
    """Read `path` (or ./pipeline.yaml, or built-in defaults), apply `key=value` overrides, check all.

    Raises ConfigError naming the offending key.
    """
    if path is None and use_default_file:
        path = find_default_config()
    cfg, source = load(Config, path, overrides)
    cfg.source = source
    return cfg
