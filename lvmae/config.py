"""Typed configuration: `pipeline.yaml` is parsed once into the dataclasses below.

Every section is a dataclass; every field carries a docstring (read back by `field_docs`) and
`__post_init__` checks values. Code past `load_config` reads attributes, never raw dicts.

Errors name the key: an unknown key suggests the closest valid one, a wrong type names the key,
the value and the expected type, a bad value names the key, the value and what is allowed.
Relative paths resolve against the directory of the config file (the working directory when
there is none).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import math
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

DEFAULT_CONFIG_NAME = "pipeline.yaml"


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key."""


class _BadValue(Exception):
    """Raised by `__post_init__` checks; the loader adds the section path to the key."""

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(key, value, allowed)
        self.key, self.value, self.allowed = key, value, allowed


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise _BadValue(key, value, allowed)


def _is_device(device: str) -> bool:
    return device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())


class Uri(str):
    """A store location: a local path (resolved like any path) or an fsspec URI such as memory://x."""


class PathOrTag(str):
    """A file path if it names an existing file (resolved against the config), else a name or tag."""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


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
        _check(self.seconds > 0, "seconds", self.seconds, "a positive number of seconds")
        _check(0 < self.min_fraction <= 1, "min_fraction", self.min_fraction, "a fraction in (0, 1]")
        _check(self.clip_frames >= 1, "clip_frames", self.clip_frames, "at least 1")
        _check(self.tok_frames >= 1 and (self.tok_frames - 1) % 4 == 0, "tok_frames",
               self.tok_frames, "1 + 4k frames (1, 5, 9, 13, ...)")
        _check(self.tok_fps > 0, "tok_fps", self.tok_fps, "a positive frame rate")
        _check(self.tok_size >= 8 and self.tok_size % 8 == 0, "tok_size", self.tok_size,
               "a multiple of 8 pixels, at least 8")


@dataclass
class EncoderConfig:
    model: str = "toyclip"
    """open_clip model name (e.g. ViT-B-32); `toyclip` is the toy world's stand-in architecture."""
    pretrained: PathOrTag = PathOrTag("toyworld/weights/toyclip.pt")
    """open_clip pretrained tag (e.g. laion2b_s34b_b79k) or a checkpoint file path."""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu, cuda or cuda:N."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Weights and activations dtype: auto is fp32 on CPU and bf16 on GPU."""
    batch_size: int = 256
    """Frames per encoder forward pass."""

    def __post_init__(self):
        _check(_is_device(self.device), "device", self.device, "auto, cpu, cuda or cuda:N")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")


@dataclass
class TokenizerConfig:
    checkpoint: Path = Path("toyworld/weights/tokenizer.pt")
    """Fitted tokenizer checkpoint (weights plus its own architecture config)."""
    kappa: float = 0.15
    """Token budget: fraction of a clip's tokens kept by the scorer; importance = mean of the top-kappa scores."""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu, cuda or cuda:N."""
    batch_size: int = 32
    """Clips per tokenizer forward pass."""

    def __post_init__(self):
        _check(0 < self.kappa <= 1, "kappa", self.kappa, "a fraction in (0, 1]")
        _check(_is_device(self.device), "device", self.device, "auto, cpu, cuda or cuda:N")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")


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

    def __post_init__(self):
        _check(self.shard_videos >= 1, "shard_videos", self.shard_videos, "at least 1")
        _check(self.actors >= 1, "actors", self.actors, "at least 1")
        _check(self.actor_num_cpus > 0, "actor_num_cpus", self.actor_num_cpus, "a positive number of CPUs")
        _check(self.actor_num_gpus >= 0, "actor_num_gpus", self.actor_num_gpus, "0 or more GPUs")
        _check(self.decode_num_cpus > 0, "decode_num_cpus", self.decode_num_cpus, "a positive number of CPUs")
        _check(self.decode_tasks is None or self.decode_tasks >= 1, "decode_tasks", self.decode_tasks, "null or at least 1")
        _check(self.encode_batch >= 1, "encode_batch", self.encode_batch, "at least 1")
        _check(self.chunk_segments >= 1, "chunk_segments", self.chunk_segments, "at least 1")


@dataclass
class PretrainConfig:
    preset: str = "small"
    """Model size preset: a name in pretrain/presets/ (tiny, small, base, large) or a YAML file."""
    max_segments: int = 4096
    """Longest training window in segments; windows are random length up to this, random start."""
    min_segments: int = 64
    """Shortest training window in segments; a batch's window length is drawn log-uniformly in [min_segments, max_segments]."""
    encoder_mask: Literal["random", "semantic", "adaptive"] = "random"
    """Which segments the encoder does not see."""
    semantic_direction: Literal["dissimilar", "similar"] = "dissimilar"
    """Semantic encoder masking hides the segments least (dissimilar) or most (similar) like the previous segment."""
    mask_ratio: float = 0.5
    """Fraction of a window's segments hidden from the encoder."""
    decoder_mask: Literal["all", "random", "adaptive"] = "adaptive"
    """Which hidden segments the decoder reconstructs: all, a random fraction, or the top-kappa by importance."""
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
        _check(self.max_segments >= 2, "max_segments", self.max_segments, "at least 2")
        _check(2 <= self.min_segments <= self.max_segments, "min_segments", self.min_segments,
               "at least 2 and at most max_segments")
        _check(0 < self.mask_ratio < 1, "mask_ratio", self.mask_ratio, "a fraction in (0, 1)")
        _check(0 < self.kappa <= 1, "kappa", self.kappa, "a fraction in (0, 1]")
        _check(self.code_weight >= 0, "code_weight", self.code_weight, "a weight >= 0")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               "device", self.device, "auto, cpu, cuda or cuda:N")
        _check(self.num_workers >= 1, "num_workers", self.num_workers, "at least 1")
        _check(self.cpus_per_worker >= 0, "cpus_per_worker", self.cpus_per_worker, "a number of CPUs >= 0")
        _check(self.steps >= 1, "steps", self.steps, "at least 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")
        _check(self.lr > 0, "lr", self.lr, "a positive learning rate")
        _check(self.warmup >= 0, "warmup", self.warmup, "steps >= 0")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _check(self.grad_clip >= 0, "grad_clip", self.grad_clip, "a norm >= 0 (0 disables clipping)")
        _check(0 <= self.val_fraction < 1, "val_fraction", self.val_fraction, "a fraction in [0, 1)")
        _check(self.val_interval >= 0, "val_interval", self.val_interval, "steps >= 0")
        _check(self.val_batches >= 1, "val_batches", self.val_batches, "at least 1")
        _check(self.checkpoint_interval >= 1, "checkpoint_interval", self.checkpoint_interval, "at least 1 step")


@dataclass
class RetrievalConfig:
    index: Literal["flat", "hnsw", "ivfpq"] = "flat"
    """FAISS index over segment embeddings (cosine similarity)."""
    k: int = 5
    """Results returned per query."""

    def __post_init__(self):
        _check(self.k >= 1, "k", self.k, "at least 1")


@dataclass
class ToyworldConfig:
    out: Path = Path("runs/toyworld")
    """Where the generated corpus goes (videos/, truth.parquet, captions.txt)."""
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
        _check(self.videos >= 1, "videos", self.videos, "at least 1")
        lo, hi = self.minutes
        _check(0 < lo <= hi, "minutes", list(self.minutes), "[min, max] with 0 < min <= max")
        _check(self.size >= 16 and self.size % 2 == 0, "size", self.size, "an even number of pixels, at least 16")
        _check(self.fps > 0, "fps", self.fps, "a positive frame rate")


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    """Where `lvmae demo` puts every stage's outputs; finished stages are skipped on a re-run."""
    pretrain_steps: int = 1000
    """Pretraining steps the demo runs (pretrain.steps is for real runs); the rest of pretrain applies."""

    def __post_init__(self):
        _check(self.pretrain_steps >= 1, "pretrain_steps", self.pretrain_steps, "at least 1")


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
        return _plain(self)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class _Raw:
    """A `--set` value: the text as typed plus its YAML reading (str fields keep the text)."""

    def __init__(self, text: str):
        self.text = text
        try:
            self.parsed = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            self.parsed = text

    def __repr__(self):
        return repr(self.text)


def find_default_config(cwd: Path | None = None) -> Path | None:
    """`pipeline.yaml` in the working directory, if there is one."""
    candidate = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
    return candidate if candidate.is_file() else None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                *, use_default_file: bool = True) -> Config:
    """Read `path` (or ./pipeline.yaml, or built-in defaults), apply `key=value` overrides, check all.

    Raises ConfigError naming the offending key.
    """
    if path is None and use_default_file:
        path = find_default_config()
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        raw = loaded
        base = path.parent
    for item in overrides:
        _apply_override(raw, item)
    cfg = _build(Config, raw, prefix="", base=base, where=str(path) if path else "defaults")
    cfg.source = path
    return cfg


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value (e.g. pretrain.mask_ratio=0.75), got {item!r}")
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])!r} is a value, not a section")
        node = child
    node[parts[-1]] = _Raw(value)


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _public_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _build(cls: type, raw: Any, *, prefix: str, base: Path, where: str):
    if isinstance(raw, _Raw):
        raw = raw.parsed
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {raw!r}")
    fields = {f.name: f for f in _public_fields(cls)}
    hints = _type_hints(cls)
    for key, value in raw.items():
        if key not in fields:
            origin = "--set" if _has_override(value) else where
            raise ConfigError(_unknown_key_message(str(key), value, prefix, list(fields), origin))
    kwargs = {}
    for name in fields:
        tp = hints[name]
        if name in raw:
            kwargs[name] = _coerce(raw[name], tp, f"{prefix}{name}", base, where)
        elif dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, {}, prefix=f"{prefix}{name}.", base=base, where=where)
        elif _is_path_type(tp) and _default(fields[name]) is not None:
            # Defaults are relative to the config file too, like the values written in it.
            kwargs[name] = _coerce(str(_default(fields[name])), tp, f"{prefix}{name}", base, where)
    try:
        return cls(**kwargs)
    except _BadValue as bad:
        full = f"{prefix}{bad.key}"
        doc = field_docs(cls).get(bad.key, "")
        hint = f" ({doc})" if doc else ""
        raise ConfigError(f"{full}: {bad.value!r} is not allowed; expected {bad.allowed}{hint}") from None


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _is_path_type(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_path_type(a) for a in typing.get_args(tp))
    return tp in (Path, Uri, PathOrTag)


def _has_override(value: Any) -> bool:
    if isinstance(value, _Raw):
        return True
    return isinstance(value, dict) and any(_has_override(v) for v in value.values())


def _leaf_path(value: Any) -> str:
    """'.a.b' for {a: {b: 1}}: the first full key under an unknown section, so the error names it."""
    if isinstance(value, dict) and value:
        first = next(iter(value))
        return f".{first}{_leaf_path(value[first])}"
    return ""


def _unknown_key_message(key: str, value: Any, prefix: str, valid: list[str], where: str) -> str:
    full = f"{prefix}{key}{_leaf_path(value)}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    section = prefix.rstrip(".") or "the top level"
    msg = f"unknown key {full!r} in {where}"
    if full != f"{prefix}{key}":
        msg += f" (there is no section {prefix + key!r})"
    if close:
        msg += f"; did you mean {prefix + close[0]!r}?"
    else:
        msg += f"; valid keys in {section}: {', '.join(valid)}"
    return msg


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               Path: "a path", Uri: "a path or URI", PathOrTag: "a path or a name"}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp in _TYPE_WORDS:
        return _TYPE_WORDS[tp]
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        inner = _describe(args[0]) if args else "values"
        if origin is tuple and Ellipsis not in typing.get_args(tp):
            return f"a list of {len(args)} items ({inner})"
        return f"a list of {inner}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, base: Path, where: str) -> Any:
    text = value.text if isinstance(value, _Raw) else None
    parsed = value.parsed if isinstance(value, _Raw) else value

    def bad() -> ConfigError:
        return ConfigError(f"{key}: {parsed!r} ({type(parsed).__name__}) is the wrong type; "
                           f"expected {_describe(tp)}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if parsed is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, base, where)
            except ConfigError as exc:
                errors.append(exc)
        raise bad()
    if origin is Literal:
        choices = typing.get_args(tp)
        got = text.strip() if text is not None else parsed
        if got in choices:
            return got
        raise ConfigError(f"{key}: {got!r} is not allowed; expected {_describe(tp)}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, parsed, prefix=f"{key}.", base=base, where=where)
    if origin in (list, tuple):
        if not isinstance(parsed, (list, tuple)):
            raise bad()
        args = typing.get_args(tp)
        if origin is tuple and args and Ellipsis not in args:
            if len(parsed) != len(args):
                raise bad()
            return tuple(_coerce(v, a, f"{key}[{i}]", base, where) for i, (v, a) in enumerate(zip(parsed, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]", base, where) for i, v in enumerate(parsed)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return parsed
    if tp is bool:
        if isinstance(parsed, bool):
            return parsed
        raise bad()
    if tp is int:
        if isinstance(parsed, int) and not isinstance(parsed, bool):
            return parsed
        raise bad()
    if tp is float:
        if isinstance(parsed, str):
            # YAML 1.1 reads 3e-4 (no dot) as a string; a float field takes it as the number it spells.
            try:
                parsed = float(parsed)
            except ValueError:
                raise bad() from None
        if isinstance(parsed, (int, float)) and not isinstance(parsed, bool) and math.isfinite(parsed):
            return float(parsed)
        raise bad()
    if tp in (str, Path, Uri, PathOrTag):
        if text is not None:
            s = text.strip()
        elif isinstance(parsed, str):
            s = parsed
        else:
            raise bad()
        if not s:
            raise ConfigError(f"{key}: an empty value is not allowed; expected {_describe(tp)}")
        if tp is str:
            return s
        if tp is Path:
            return _resolve(s, base)
        if tp is Uri:
            return Uri(s if "://" in s else str(_resolve(s, base)))
        candidate = _resolve(s, base)
        return PathOrTag(str(candidate) if candidate.exists() else s)
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # a schema bug, not a user error


def _resolve(s: str, base: Path) -> Path:
    p = Path(s).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in _public_fields(type(obj))}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, str):
        return str(obj)
    return obj


# --------------------------------------------------------------------------------------------
# Introspection: field docs and key listing
# --------------------------------------------------------------------------------------------


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a config dataclass, by field name."""
    source = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(source).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def iter_keys(cls: type = Config, prefix: str = ""):
    """Yield (dotted key, type description, default, doc) for every leaf key of the schema."""
    hints = _type_hints(cls)
    docs = field_docs(cls)
    defaults = cls()
    for f in _public_fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from iter_keys(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", _describe(tp), _plain(getattr(defaults, f.name)), docs.get(f.name, "")


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)


def dump_json(cfg: Config) -> str:
    return json.dumps(cfg.to_dict(), indent=2)
