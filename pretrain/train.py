"""The training loop, written once for one process and for one rank of a Ray Train run.

`train(cfg, env=...)` runs on whatever `RunEnv` it is given: the local runner gives the device and
nothing else; `pretrain.ray_runner` gives the rank, a DDP wrapper, a cross-rank mean and a metrics
reporter. Nothing here imports Ray.

What makes `--resume` exact: batch k and its masks are a pure function of (seed, rank, k)
(`pretrain.data`), and a checkpoint holds everything else that changes while training: model,
optimizer and scheduler states, the torch RNG state (dropout), and the next step, which is also the
data position. A run killed anywhere resumes from its last checkpoint and logs the same losses, step
for step, as a run never interrupted.

A checkpoint also records the store it was trained on (uri, identity and a fingerprint of the
training videos), and `--resume` on another store is refused unless forced: the same steps on other
data are not the run that was started.

The run's files (checkpoint, model, metrics) are `pretrain.checkpoint`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from lvmae.foundation.files import stale_temp_files
from lvmae.foundation.optim import decay_groups, warmup_cosine
from lvmae.foundation.progress import bar
from lvmae.foundation.runtime import autocast, resolve_device
from lvmae.foundation.schema import PretrainConfig
from lvmae.pretrain.checkpoint import (
    CHECKPOINT,
    METRICS,
    MODEL,
    PretrainError,
    TrainResult,
    check_new_run,
    load_state,
    plain_settings,
    read_result,
    save_state,
    truncate_metrics,
)
from lvmae.pretrain.data import VAL_STREAM, Batch, Video, WindowSource, ok_videos, split_videos
from lvmae.pretrain.masking import decoder_mask, encoder_mask, hidden_count
from lvmae.pretrain.model import LVMAE, ModelConfig, Output, count_params
from lvmae.pretrain.presets import model_config
from lvmae.store import Store, StoreError, StoreIdentity

log = logging.getLogger("lvmae.pretrain")


def _identity(x):
    return x


@dataclass
class RunEnv:
    """Where one training process runs. The defaults are a single local process."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1
    wrap_model: Callable[[nn.Module], nn.Module] = _identity  # e.g. DDP
    average: Callable[[Tensor], Tensor] = _identity  # mean of a tensor over ranks
    report: Callable[[dict[str, Any]], None] | None = None  # called with every step's metrics row
    progress: bool = True  # show the progress bar (main rank only)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# --- what a run builds -------------------------------------------------------------------------------


def build_model_config(p: PretrainConfig, store: Store) -> ModelConfig:
    """The preset's architecture with D from the store and the objective from the config."""
    dim_in = store.dims().emb
    if dim_in is None:
        raise PretrainError(f"store {store.uri} has no segments to train on")
    levels: tuple[int, ...] = ()
    if p.code_head:
        tokenizer = store.identity.tokenizer
        if not tokenizer or not tokenizer.get("levels"):
            raise PretrainError(
                f"pretrain.code_head is on but store {store.uri} has no tokenizer with FSQ levels "
                "in its identity; set pretrain.code_head=false"
            )
        levels = tuple(int(level) for level in tokenizer["levels"])
    return model_config(p.preset, dim_in=dim_in, loss=p.loss, code_levels=levels, code_weight=p.code_weight)


def make_optimizer(model: nn.Module, p: PretrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(decay_groups(model, p.weight_decay), lr=p.lr, betas=(0.9, 0.95))


def make_masks(batch: Batch, p: PretrainConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(hidden, selected), both (B, T) bool, for one batch under the config's masking."""
    hidden = encoder_mask(
        p.encoder_mask,
        emb=batch.emb,
        importance=batch.importance,
        valid=batch.valid,
        ratio=p.mask_ratio,
        generator=generator,
        direction=p.semantic_direction,
        span=p.span_lengths,
    )
    selected = decoder_mask(
        p.decoder_mask, hidden=hidden, importance=batch.importance, kappa=p.kappa, generator=generator
    )
    return hidden, selected


def forward(model: nn.Module, batch: Batch, hidden: Tensor, selected: Tensor, device: torch.device) -> Output:
    with autocast(device):  # bf16 on GPU; fp32 on CPU, where bf16 matmuls are slower
        return model(batch.emb, batch.valid, hidden.to(device), selected.to(device), batch.codes)


# --- checkpoints ---------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def train_fingerprint(videos: list[Video]) -> str:
    """sha256 of the sorted (video_id, n_segments) pairs of a run's training videos: what it trains on,
    short of the embeddings themselves."""
    pairs = sorted((v.video_id, v.n_segments) for v in videos)
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def store_record(store: Store, train_videos: list[Video]) -> dict[str, Any]:
    """The checkpoint's "store" entry: which store, and which of its videos, a run trains on."""
    return {
        "uri": store.uri,
        "identity": store.identity.to_attrs(),
        "train_fingerprint": train_fingerprint(train_videos),
        "train_videos": len(train_videos),
        "train_segments": sum(v.n_segments for v in train_videos),
    }


def trained_on(saved: dict[str, Any] | None, val_fraction: float, store: Store, videos: list[Video]) -> bool:
    """Whether a checkpoint's "store" record (`store_record`) is this store: the same identity and the
    same training videos when its ok `videos` are split by the run's `val_fraction`. A record without a
    fingerprint (saved before they were recorded) is never taken for it."""
    if not saved or saved.get("identity") != store.identity.to_attrs() or "train_fingerprint" not in saved:
        return False
    return train_fingerprint(split_videos(videos, val_fraction)[0]) == saved["train_fingerprint"]


def check_same_store(state: dict[str, Any], store: Store, videos: list[Video], path: Path, *, force: bool) -> None:
    """Refuse (PretrainError naming both stores) to resume the checkpoint `state`, read from `path`, on
    a store other than the one it was trained on: another identity, or other training videos
    (`videos` are the store's ok videos). `force` resumes anyway, with a warning. A checkpoint saved
    before fingerprints were recorded is checked on its identity only."""
    saved = state.get("store")
    if not saved:
        return
    then = saved.get("uri", "?")
    problem = None
    if saved.get("identity") != store.identity.to_attrs():
        old = saved["identity"]
        try:
            keys = StoreIdentity(old["encoder"], old["tokenizer"], old["segment"]).differences(store.identity)
        except (KeyError, TypeError, StoreError):  # a malformed record: it differs, whatever it holds
            keys = ["identity"]
        problem = f"another identity (differs in {', '.join(keys) or 'schema_version'})"
    elif "train_fingerprint" in saved and not trained_on(saved, state["pretrain"]["val_fraction"], store, videos):
        # The split of the checkpoint's own val_fraction: a changed val_fraction is a changed setting
        # (warned about in _restore), not another store.
        now = store_record(store, split_videos(videos, state["pretrain"]["val_fraction"])[0])
        problem = (
            f"other training videos ({now['train_videos']} videos, {now['train_segments']:,} segments; "
            f"the run trained on {saved['train_videos']} videos, {saved['train_segments']:,} segments)"
        )
    if problem is None:
        return
    message = f"{path} was trained on store {then}, but store {store.uri} has {problem}"
    if force:
        log.warning("%s; resuming anyway (--force): the run is no longer the one that was started", message)
        return
    raise PretrainError(
        f"{message}; resume on {then}, choose another output folder (--out or pretrain.checkpoint_dir), "
        "or pass --force to resume on this store anyway"
    )


def _restore(
    state: dict[str, Any],
    model: LVMAE,
    mcfg: ModelConfig,
    p: PretrainConfig,
    opt: torch.optim.Optimizer,
    sched: LambdaLR,
    path: Path,
) -> int:
    if state.get("model_config") != mcfg.to_dict():
        raise PretrainError(
            f"{path} was trained with model {state.get('model_config')}, but this config builds "
            f"{mcfg.to_dict()}; resume with the same preset, store and objective, or choose "
            "another pretrain.checkpoint_dir"
        )
    changed = sorted(k for k, v in plain_settings(p).items() if state["pretrain"].get(k) != v)
    if changed:
        log.warning(
            "resuming %s with changed settings %s: the run is no longer the one that was started",
            path,
            ", ".join(f"pretrain.{k}" for k in changed),
        )
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


# --- the loop -------------------------------------------------------------------------------------------


def validate(model: nn.Module, batches: list[tuple[Batch, Tensor, Tensor]], env: RunEnv) -> float:
    """Mean loss over fixed held-out batches (same windows and masks at every validation)."""
    model.eval()
    total = torch.zeros((), device=env.device)
    with torch.no_grad():
        for batch, hidden, selected in batches:
            total += forward(model, batch.to(env.device), hidden, selected, env.device).loss.float()
    model.train()
    return float(env.average(total / len(batches)))


def train(
    p: PretrainConfig,
    *,
    store_uri: str,
    out_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    env: RunEnv | None = None,
) -> TrainResult:
    """Train (or resume) an LV-MAE on the sequences of the store at `store_uri`; returns what the
    metrics say. `out_dir` defaults to `p.checkpoint_dir`. `force` resumes a checkpoint trained on
    another store (see `check_same_store`) instead of refusing."""
    began = time.perf_counter()
    env = env or RunEnv(device=resolve_device(p.device, "pretrain.device"))
    out = Path(out_dir if out_dir is not None else p.checkpoint_dir)
    store = Store.open(store_uri)
    videos = ok_videos(store)
    train_videos, val_videos = split_videos(videos, p.val_fraction)
    if not train_videos:
        raise PretrainError(f"store {store.uri} has no videos with segments to train on")
    longest = min(max(v.n_segments for v in train_videos), p.max_segments)
    if hidden_count(longest, p.mask_ratio) == 0:
        # Every window would hide nothing: the loss is 0 on every step and the model learns nothing.
        raise PretrainError(
            f"store {store.uri}: its longest training video has {longest} segment{'s' * (longest != 1)}, and "
            f"pretrain.mask_ratio {p.mask_ratio:g} hides none of a window that short (one segment always stays "
            "visible): train on longer videos (shorter segments), or raise pretrain.mask_ratio"
        )

    mcfg = build_model_config(p, store)
    torch.manual_seed(p.seed)  # the same init on every rank (DDP broadcasts rank 0's weights anyway)
    model = LVMAE(mcfg).to(env.device)
    opt = make_optimizer(model, p)
    sched = LambdaLR(opt, partial(warmup_cosine, warmup=p.warmup, steps=p.steps))

    ckpt_path, metrics_path = out / CHECKPOINT, out / METRICS
    start = 0
    check_new_run(out, resume)
    if resume and ckpt_path.exists():
        state = load_state(ckpt_path)
        check_same_store(state, store, videos, ckpt_path, force=force)
        start = _restore(state, model, mcfg, p, opt, sched, ckpt_path)
        log.info("resuming %s at step %d", ckpt_path, start)
    elif resume:
        log.warning("--resume: no checkpoint in %s; starting a new run", out)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in stale_temp_files(out):  # a checkpoint save cut short by a kill
            stale.unlink()
        if start:
            truncate_metrics(metrics_path, start)
        else:
            metrics_path.unlink(missing_ok=True)

    net = env.wrap_model(model)
    windows: dict[str, Any] = dict(
        batch_size=p.batch_size,
        min_segments=p.min_segments,
        max_segments=p.max_segments,
        seed=p.seed,
        rank=env.rank,
        codes=p.code_head,
    )
    source = WindowSource(store, train_videos, **windows)
    val_batches = []
    if val_videos:
        val_source = WindowSource(store, val_videos, stream=VAL_STREAM, **windows)
        val_batches = [
            (b, *make_masks(b, p, val_source.mask_generator(k)))
            for k, b in ((k, val_source.batch(k)) for k in range(p.val_batches))
        ]

    def checkpoint(next_step: int) -> None:
        if env.is_main:
            save_state(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": _rng_state(),
                    "step": next_step,
                    "data_position": next_step,
                    "model_config": mcfg.to_dict(),
                    "pretrain": plain_settings(p),
                    "store": store_record(store, train_videos),
                },
                ckpt_path,
            )

    metrics = open(metrics_path, "a") if env.is_main else None
    progress = bar(
        total=p.steps,
        initial=start,
        desc="pretrain",
        unit="step",
        disable=None if env.progress and env.is_main else True,
    )
    model.train()
    try:
        for step, batch in source.iterate(start, p.steps):
            t0 = time.perf_counter()
            hidden, selected = make_masks(batch, p, source.mask_generator(step))
            output = forward(net, batch.to(env.device), hidden, selected, env.device)
            opt.zero_grad(set_to_none=True)
            output.loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip if p.grad_clip > 0 else math.inf)
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            losses = env.average(torch.stack([output.loss.detach().float(), output.recon.detach().float()]))
            step_s = time.perf_counter() - t0
            segments = batch.segments * env.world_size
            row = {
                "step": step,
                "loss": float(losses[0]),
                "recon": float(losses[1]),
                "lr": lr,
                "grad_norm": float(grad_norm),
                "segments": segments,
                "window": max(w.length for w in batch.windows),
                "step_s": step_s,
            }
            if output.code is not None:
                row["code"] = float(env.average(output.code.detach().float()))
            if metrics:
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
            progress.update(1)
            progress.set_postfix(loss=f"{row['loss']:.4f}", seg_s=f"{segments / step_s:,.0f}")
            next_step = step + 1
            last = next_step == p.steps
            if val_batches and ((p.val_interval and next_step % p.val_interval == 0) or last):
                val_loss = validate(net, val_batches, env)
                row["val_loss"] = val_loss
                if metrics:
                    metrics.write(json.dumps({"step": step, "val_loss": val_loss}) + "\n")
                    metrics.flush()
            if next_step % p.checkpoint_interval == 0 or last:
                checkpoint(next_step)
            if env.report:
                env.report(row)
        if env.is_main:
            save_state(
                {
                    "model": model.state_dict(),
                    "model_config": mcfg.to_dict(),
                    "pretrain": plain_settings(p),
                    "step": p.steps,
                    "store": store_record(store, train_videos),
                },
                out / MODEL,
            )
    finally:
        progress.close()
        if metrics:
            metrics.close()
    return read_result(out, resumed_from=start, params=count_params(model), wall_s=time.perf_counter() - began)
