"""The Python API: what `import lvmae` gives, and what every `lvmae` subcommand calls.

Each entry point is a plain function with typed arguments. It takes the config (`load_config`) for the
settings a user did not give, raises an `LvmaeError` subclass naming the file, key or value at fault,
and never exits or prints a summary (long work shows a progress bar). The stages' own functions, which
take only the config sections they read, are one floor down (`lvmae.extract.runner.run_extract`,
`lvmae.pretrain.train.train`, ...); these wire a whole config to them.

    import lvmae

    cfg = lvmae.load_config("pipeline.yaml", ["pretrain.preset=tiny"])
    lvmae.extract_videos(cfg, "videos/")                       # -> ExtractReport; writes cfg.paths.store
    store = lvmae.open_store(cfg.paths.store)                  # store.sequence(video_id).emb: (T, D)
    run = lvmae.train(cfg)                                     # -> TrainResult; writes model.pt
    model = lvmae.load_model(run.out_dir / "model.pt")
    feats = lvmae.features(model, store.sequence(video_id))    # (T, W) float32
    lvmae.build_index(cfg)                                     # the FAISS index of the store
    hits = lvmae.search(cfg, "a red circle on a blue background")
    mse = lvmae.evaluate(cfg, checkpoint=run.out_dir / "model.pt")  # held-out MSE vs copying
    inspection, which = lvmae.inspect(cfg, checkpoint=run.out_dir / "model.pt")
    table, notes = lvmae.probe(cfg, "label", checkpoints=[run.out_dir / "model.pt"])
    lvmae.write_report(lvmae.DemoLayout(out).artifacts(), out / "report.html")
    app = lvmae.create_app(cfg)                                # FastAPI: uvicorn.run(app)

The stages' subpackages own the short names (`lvmae.extract`, `lvmae.pretrain` are modules), so the
entry points that run them are `extract_videos` and `train`. Defaults follow the CLI's: a store left
out is `paths.store`, an index folder `retrieval.index_dir`, a checkpoint
`pretrain.checkpoint_dir/model.pt`, a device `pretrain.device`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lvmae.demo import DemoError, DemoLayout, DemoRun, run_demo
from lvmae.foundation.errors import UsageError
from lvmae.foundation.schema import Config
from lvmae.foundation.schema import load_config as _load_config
from lvmae.pretrain.data import WindowDataset, collate_windows
from lvmae.report import Artifacts, write_report

if TYPE_CHECKING:
    from fastapi import FastAPI

    from lvmae.evaluation.inspection import Inspection
    from lvmae.evaluation.probes import ProbeReport
    from lvmae.evaluation.reconstruction import EvalResult
    from lvmae.extract.runner import ExtractReport
    from lvmae.pretrain.checkpoint import Pretrained
    from lvmae.pretrain.train import TrainResult
    from lvmae.retrieval.index import SegmentIndex
    from lvmae.retrieval.search import Result, Searcher
    from lvmae.store import Segments, Store

__all__ = [
    "Artifacts",
    "DemoLayout",
    "DemoRun",
    "WindowDataset",
    "build_index",
    "collate_windows",
    "create_app",
    "evaluate",
    "extract_videos",
    "features",
    "inspect",
    "load_config",
    "load_model",
    "open_index",
    "open_searcher",
    "open_store",
    "probe",
    "run_demo",
    "search",
    "search_like",
    "train",
    "update_index",
    "write_report",
]


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """The pipeline config: the file `path` (None: ./pipeline.yaml when there is one, else the built-in
    defaults), with `KEY=VALUE` overrides (e.g. "pretrain.mask_ratio=0.5"). Raises ConfigError naming the key."""
    return _load_config(path, overrides)


def _store_uri(cfg: Config, store: str | Path | None) -> str:
    return str(store if store is not None else cfg.paths.store)


def _checkpoint(cfg: Config, checkpoint: str | Path | None) -> Path:
    return Path(checkpoint) if checkpoint is not None else cfg.pretrain.checkpoint_dir / "model.pt"


# ---- stage 1: extract ---------------------------------------------------------------------------


def extract_videos(
    cfg: Config,
    inputs: str | Path | None = None,
    *,
    store: str | Path | None = None,
    runner: str | None = None,
    resume: bool | None = None,
    retry: str | None = None,
) -> ExtractReport:
    """Extract the videos of `inputs` (a folder, a list file or a parquet/CSV table; default
    `extract.inputs`) into the store at `store`: segments, the frozen encoder's embeddings, the
    tokenizer's codes and importance. Committed shards are skipped unless `resume=False`; `retry`
    ("transient" or "all") re-extracts shards holding failed videos. A bad video becomes a failed
    manifest row, not an exception: see the report's `videos_failed`."""
    from lvmae.extract.runner import Models, run_extract

    return run_extract(
        cfg.extract,
        Models.of(cfg),
        cfg.ray,
        store_uri=_store_uri(cfg, store),
        inputs=inputs,
        runner=runner,
        resume=resume,
        retry=retry,
    )


def open_store(uri: str | Path) -> Store:
    """The feature store at `uri` (a folder or an fsspec URI): `videos()` is its manifest,
    `sequence(video_id)` one video's arrays in time order."""
    from lvmae.store import Store

    return Store.open(str(uri))


# ---- stage 2: pretrain --------------------------------------------------------------------------


def train(
    cfg: Config,
    *,
    store: str | Path | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
) -> TrainResult:
    """Train the LV-MAE on the store's sequences as `cfg.pretrain` says, in this process or on Ray Train
    (`pretrain.trainer`); writes checkpoint.pt, model.pt and metrics.jsonl to `out` (default
    `pretrain.checkpoint_dir`). `resume` continues that run; `force` lets it continue on another store."""
    p = cfg.pretrain
    out_dir = Path(out) if out is not None else p.checkpoint_dir
    if p.trainer == "ray":
        from lvmae.pretrain.ray_runner import run

        return run(p, cfg.ray, store_uri=_store_uri(cfg, store), out_dir=out_dir, resume=resume, force=force)
    from lvmae.pretrain.train import train as train_locally

    return train_locally(p, store_uri=_store_uri(cfg, store), out_dir=out_dir, resume=resume, force=force)


def load_model(checkpoint: str | Path, device: str = "cpu") -> Pretrained:
    """A trained LV-MAE, frozen, from a run's model.pt (or checkpoint.pt); `device` as torch names it or
    "auto"."""
    from lvmae.foundation.runtime import resolve_device
    from lvmae.pretrain.checkpoint import load_pretrained

    return load_pretrained(checkpoint, resolve_device(device))


def features(model: Pretrained, sequence: Segments | np.ndarray, *, chunk: int | None = None) -> np.ndarray:
    """The encoder's output for every segment of a sequence (a store `Sequence` or its (T, D) embeddings):
    (T, W) float32. Sequences longer than the model's context (`chunk`, default its `max_segments`) are
    encoded in consecutive chunks of about equal length."""
    from lvmae.pretrain.features import sequence_features

    emb = sequence if isinstance(sequence, np.ndarray) else sequence.emb
    return sequence_features(model.model, emb, chunk=chunk or model.max_segments)


# ---- stage 3: index, search ---------------------------------------------------------------------


def build_index(
    cfg: Config, *, store: str | Path | None = None, out: str | Path | None = None, kind: str | None = None
) -> SegmentIndex:
    """Build the FAISS index of the store's segment embeddings (`kind`: flat, hnsw, ivfpq or auto; default
    `retrieval.index`) and save it in `out` (default `retrieval.index_dir`)."""
    from lvmae.foundation.locks import folder_lock
    from lvmae.retrieval.index import SegmentIndex, check_index_folder

    folder = Path(out if out is not None else cfg.retrieval.index_dir)
    check_index_folder(folder)  # before the lock file goes in: a folder of other files is refused as it is
    with folder_lock(folder, "index build"):  # a second build into the folder is refused now, not after its work
        index = SegmentIndex.build(open_store(_store_uri(cfg, store)), cfg.retrieval, kind=kind)
        index.save(folder)
    return index


def update_index(
    cfg: Config, *, store: str | Path | None = None, folder: str | Path | None = None
) -> tuple[SegmentIndex, list[str]]:
    """Add to the index in `folder` the shards its store committed since it was built; returns the index
    and the ids of the shards added (saved when there are any). The store must be the index's own."""
    from lvmae.foundation.locks import folder_lock
    from lvmae.retrieval.errors import RetrievalError
    from lvmae.retrieval.index import SegmentIndex, read_header, store_address

    folder = Path(folder if folder is not None else cfg.retrieval.index_dir)
    read_header(folder)  # an index is there (else the error says so, and no lock file is left)
    with folder_lock(folder, "index build"):
        index = SegmentIndex.load(folder, writable=True)
        source = open_store(store if store is not None else index.store_uri)
        if index.store_uri != store_address(source):
            raise RetrievalError(
                f"index {folder} covers store {index.store_uri}, not {store_address(source)}: name its store, or another folder"
            )
        added = index.update(source)
        if added:
            index.save(folder)
    return index, added


def open_index(folder: str | Path, *, verify: bool = False) -> SegmentIndex:
    """The saved index in `folder` (read-only; large ones memory-mapped); `verify` checks every file's
    sha256 against its header, not only its size."""
    from lvmae.retrieval.index import SegmentIndex

    return SegmentIndex.load(folder, verify=verify)


def open_searcher(cfg: Config, *, index: str | Path | None = None, captions: str | Path | None = None) -> Searcher:
    """A searcher over the index in `index` (default `retrieval.index_dir`), refused when its store has
    moved on; `captions` is the caption bank naming each moment (default `retrieval.captions`).
    `searcher.text(queries, k=)` and `searcher.like(video_id, seconds, k=)` answer with moments."""
    from lvmae.retrieval.search import open_searcher as open_

    return open_(index if index is not None else cfg.retrieval.index_dir, cfg.retrieval, cfg.encoder, captions=captions)


def search(
    cfg: Config,
    query: str,
    *,
    k: int | None = None,
    per_video: int | None = None,
    index: str | Path | None = None,
    captions: str | Path | None = None,
) -> list[Result]:
    """The top `k` moments (default `retrieval.k`) of the indexed videos that show the text `query`.
    For many queries, open one searcher (`open_searcher`) and call its `text`."""
    return open_searcher(cfg, index=index, captions=captions).text([query], k=k, per_video=per_video)[0]


def search_like(
    cfg: Config,
    video_id: str,
    seconds: float,
    *,
    k: int | None = None,
    per_video: int | None = None,
    index: str | Path | None = None,
    captions: str | Path | None = None,
) -> list[Result]:
    """The top `k` moments that look like the segment of `video_id` on screen at `seconds`, itself excluded."""
    return open_searcher(cfg, index=index, captions=captions).like(video_id, seconds, k=k, per_video=per_video)


# ---- evaluation ---------------------------------------------------------------------------------


def evaluate(
    cfg: Config,
    *,
    store: str | Path | None = None,
    checkpoint: str | Path | None = None,
    split: str = "val",
    ratio: float | None = None,
    decoder: str = "trained",
    seed: int = 0,
    device: str | None = None,
) -> EvalResult:
    """Masked-segment reconstruction MSE of a checkpoint on the videos its run held out (`split="val"`)
    or on every video ("all"), beside copying the nearest visible segment. `decoder`: "trained" (the
    checkpoint's decoder mask) or a decoder mask name such as "all"."""
    from lvmae.evaluation.reconstruction import check_ratio, reconstruction_mse

    check_ratio(ratio)  # before the model loads
    model = load_model(_checkpoint(cfg, checkpoint), device or cfg.pretrain.device)
    return reconstruction_mse(
        model, open_store(_store_uri(cfg, store)), split=split, ratio=ratio, decoder=decoder, seed=seed
    )


def inspect(
    cfg: Config,
    *,
    store: str | Path | None = None,
    checkpoint: str | Path | None = None,
    captions: str | Path | None = None,
    truth: str | Path | None = "auto",
    mask: str = "random",
    ratio: float | None = None,
    decoders: tuple[str, ...] = ("trained", "all"),
    seed: int = 0,
    device: str | None = None,
    video: str | None = None,
    progress: bool = True,
) -> tuple[Inspection, str]:
    """Hide segments of the store's videos the checkpoint did not train on (or of the one `video`), let
    its decoder reconstruct them and rank the caption bank against each reconstruction beside the
    baselines; returns the `Inspection` (`.metrics()`: caption R@1/R@5 per decoder and split) and a
    phrase saying which videos. `truth`: a truth parquet, "auto" or None."""
    from lvmae.evaluation.inspection import run_inspection

    return run_inspection(
        _store_uri(cfg, store),
        _checkpoint(cfg, checkpoint),
        encoder=cfg.encoder,
        retrieval=cfg.retrieval,
        captions=captions,
        truth=truth,
        mask=mask,
        ratio=ratio,
        decoders=decoders,
        seed=seed,
        device=device or cfg.pretrain.device,
        video=video,
        cache_dir=cfg.paths.work_dir / "captions",
        progress=progress,
    )


def probe(
    cfg: Config,
    label: str,
    *,
    store: str | Path | None = None,
    group: str | None = None,
    checkpoints: Sequence[str | Path] | None = None,
    seeds: int = 3,
    device: str | None = None,
    progress: bool = True,
) -> tuple[ProbeReport, list[str]]:
    """Classify the store's videos by manifest column `label` with linear and attentive probes on frozen
    features: the raw embeddings, and each checkpoint's LV-MAE encoder (default: the run in
    `pretrain.checkpoint_dir` when it has a model.pt; [] for none), over `seeds` seeds. Returns the
    report (`.to_json()`: one row per features, head and labels per class) and notes."""
    from lvmae.evaluation.probes import run_probe

    if checkpoints is None:
        default = _checkpoint(cfg, None)
        checkpoints = [default] if default.is_file() else []
    return run_probe(
        _store_uri(cfg, store),
        label,
        group=group,
        checkpoints=checkpoints,
        seeds=seeds,
        device=device or cfg.pretrain.device,
        progress=progress,
    )


# ---- the web app --------------------------------------------------------------------------------


def create_app(
    cfg: Config,
    *,
    index: str | Path | None = None,
    store: str | Path | None = None,
    checkpoint: str | Path | None = None,
    captions: str | Path | None = None,
    truth: str | Path | None = "auto",
    device: str | None = None,
    demo: str | Path | None = None,
    hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The search and inspection web app (FastAPI) over the index in `index` (default
    `retrieval.index_dir`) and its store; with `checkpoint`, the video view shows a reconstruction.
    `demo` names a demo's output folder instead (its index, store, model and captions). It answers
    requests addressed to `hosts` only (default: localhost, 127.0.0.1, [::1]). Serve it with uvicorn,
    bound to localhost unless you mean otherwise."""
    from lvmae.foundation.runtime import resolve_device
    from lvmae.web import LOCAL_HOSTS, Service, make_app

    if demo is not None:
        if index is not None or store is not None or checkpoint is not None:
            raise UsageError(("demo", "index", "store", "checkpoint"), "give demo, or index/store/checkpoint, not both")
        layout = DemoLayout(Path(demo))
        if not (layout.index / "index.json").is_file():
            raise DemoError(f"{demo}: no index there ({layout.index}); run `lvmae demo --out {demo}` first")
        index, store = layout.index, layout.store
        checkpoint = layout.model if layout.model.is_file() else None
        captions = captions or layout.captions
    service = Service.open(
        index if index is not None else cfg.retrieval.index_dir,
        cfg.retrieval,
        cfg.encoder,
        store_uri=None if store is None else str(store),
        checkpoint=checkpoint,
        captions=captions,
        truth=truth,
        device=resolve_device(device or cfg.pretrain.device) if checkpoint is not None else "cpu",
    )
    return make_app(service, hosts=LOCAL_HOSTS if hosts is None else hosts)
