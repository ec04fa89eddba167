"""Fit the video tokenizer and its token scorer jointly on short clips sampled from videos.

Shape legend: `B` clips, `T` frames, `S` frame side, `T'`/`h`/`w` latent grid.

One step: encode a batch of clips, quantise with FSQ, decode. In half of the clips a random
`drop_ratio` of tokens is dropped (replaced by the learned "dropped" embedding) before decoding,
so the decoder also learns to fill tokens in from their context. The reconstruction error left
over each dropped token's footprint (detached) is how much the picture needed that token; the scorer
regresses its logarithm, standardised over the batch (which spans clips, so scores compare across
clips). This is a direct, per-token signal: the paper's straight-through top-k gave the scorer
almost nothing to learn from in CPU-sized runs (ROC AUC 0.54 after 10 minutes).

The fit keeps a resumable checkpoint (`<out>.ckpt`: weights, optimizer, step, RNG) and a loss log
(`<out>.log.jsonl`); the shipped file (`<out>`) holds fp16 weights plus the architecture.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lvmae.extract.decode import frames_at, probe
from lvmae.extract.tokenizer.model import TokenizerArch, VideoTokenizer, token_footprint_mean
from lvmae.foundation.files import atomic_write, sha256_file
from lvmae.foundation.optim import warmup_cosine
from lvmae.foundation.progress import bar
from lvmae.foundation.provenance import write_provenance
from lvmae.foundation.schema import SegmentConfig, TokenizerFitConfig

LR_FLOOR = 0.05
"""The learning rate decays to this fraction of its peak, not to 0: the scorer keeps learning late."""


# --------------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------------


def load_frames(
    paths: Sequence[str | Path], fps: float, size: int, *, progress: bool | None = None
) -> list[np.ndarray]:
    """Every video resampled to `fps` and centre-cropped to `size` x `size`: one (N, S, S, 3) array each.

    Clips for fitting are drawn from these in memory (about 12 KB a frame at 64 px).
    """
    out = []
    for path in bar(list(paths), desc="load clips", unit="video", disable=None if progress is None else not progress):
        info = probe(path)
        times = np.arange(0.0, max(info.duration, 1.0 / fps), 1.0 / fps)
        frames, _ = frames_at(path, times, short_side=size, crop=True)
        out.append(frames)
    return out


def sample_clips(videos: list[np.ndarray], rng: np.random.Generator, batch: int, frames: int) -> np.ndarray:
    """`batch` clips of `frames` consecutive frames at random places: (B, T, S, S, 3) uint8."""
    usable = [v for v in videos if len(v) >= frames]
    if not usable:
        raise ValueError(f"no video has {frames} frames at the fit's frame rate")
    weights = np.array([len(v) - frames + 1 for v in usable], dtype=np.float64)
    which = rng.choice(len(usable), size=batch, p=weights / weights.sum())
    clips = []
    for k in which:
        start = rng.integers(0, len(usable[k]) - frames + 1)
        clips.append(usable[k][start : start + frames])
    return np.stack(clips)


def to_input(clips: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B, T, S, S, 3) uint8 (an array, or a tensor on any device) -> (B, 3, T, S, S) float in [-1, 1]."""
    x = clips if isinstance(clips, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(clips))
    x = x.permute(0, 4, 1, 2, 3).float()
    return x.div_(127.5).sub_(1.0)


# --------------------------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------------------------


def standardise(log_err: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the batch's dropped tokens. Batch statistics, not running ones:
    the errors fall steadily as the autoencoder learns, and a lagging running mean turned the
    targets into a drifting offset the scorer chased instead of the ranking it should learn."""
    return (log_err - log_err.mean()) / log_err.std().clamp_min(1e-3)


def train_step(
    model: VideoTokenizer, x: torch.Tensor, settings: TokenizerFitConfig, generator: torch.Generator
) -> dict:
    """Losses of one step (not yet backpropagated): total, reconstruction, scorer; and PSNR."""
    B = x.shape[0]
    codes, _, logits = model.encode(x)  # (B, L, T', h, w), (B, T', h, w)
    keep = torch.ones_like(logits)
    half = B // 2
    drop = torch.rand(logits[:half].shape, generator=generator) < settings.drop_ratio
    keep[:half] = (~drop).float()
    recon = model.decode(codes, keep)  # (B, 3, T, S, S)
    err = (recon - x).pow(2)
    rec_loss = err.mean() if settings.recon_loss == "mse" else (recon - x).abs().mean()
    with torch.no_grad():
        # Error each dropped token left behind, over its own footprint (pixels x frames).
        token_err = token_footprint_mean(err[:half].mean(1))  # (half, T', h, w)
        target = standardise(torch.log(token_err[drop] + 1e-5))
        full_mse = err[half:].mean()
    # Huber: a few tokens with huge errors (an object's edge dropped) must not dominate the ranking.
    score_loss = F.smooth_l1_loss(logits[:half][drop], target)
    total = rec_loss + settings.scorer_weight * score_loss
    psnr = 10 * math.log10(4.0 / max(float(full_mse), 1e-10))  # signal range [-1, 1]: peak^2 = 4
    return {"loss": total, "rec": rec_loss.item(), "score": score_loss.item(), "psnr": psnr}


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def save_tokenizer(model: VideoTokenizer, path: Path, meta: dict) -> None:
    """The shipped form: fp16 weights, architecture and metadata; `load_tokenizer` rebuilds the model."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    atomic_write(path, lambda f: torch.save({"arch": model.arch.to_dict(), "state_dict": state, "meta": meta}, f))


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> VideoTokenizer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"tokenizer checkpoint {str(path)!r} does not exist; fit one with `lvmae tokenizer fit --out FILE`"
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "arch" not in blob or "state_dict" not in blob:
        raise ValueError(f"{path}: not an lvmae tokenizer checkpoint (needs 'arch' and 'state_dict')")
    model = VideoTokenizer(TokenizerArch.from_dict(blob["arch"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    return model.to(device).eval()


def _resume_path(out: Path) -> Path:
    return out.with_suffix(".ckpt")


def _save_resume(
    out: Path, model, opt, step: int, rng: np.random.Generator, gen: torch.Generator, settings: dict, elapsed: float
) -> None:
    blob = {
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "step": step,
        "rng": json.dumps(rng.bit_generator.state),
        "torch_gen": gen.get_state(),
        "settings": settings,
        "elapsed": elapsed,
    }
    atomic_write(_resume_path(out), lambda f: torch.save(blob, f))


def record_provenance(checkpoint: str | Path, fit: dict, heldout: dict) -> dict:
    """Write the provenance beside `checkpoint`: the fit (command, settings, steps, time) and the
    held-out figures."""
    checkpoint = Path(checkpoint)
    return write_provenance(
        checkpoint,
        {
            "file": checkpoint.name,
            "sha256": sha256_file(checkpoint),
            "fit": fit,
            "heldout": heldout,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        },
    )


# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------


def fit_tokenizer(
    videos: Sequence[str | Path],
    out: str | Path,
    settings: TokenizerFitConfig,
    segment: SegmentConfig,
    *,
    arch: TokenizerArch = TokenizerArch(),
    resume: bool = False,
    progress: bool | None = None,
    meta: dict | None = None,
) -> tuple[VideoTokenizer, dict]:
    """Fit on clips of `segment.tok_frames` frames, `segment.tok_size` pixels, at `segment.tok_fps`
    from `videos`; write `out` (+ `.ckpt` for resuming, `.log.jsonl`). Returns (model, meta)."""
    out = Path(out)
    recorded = {**asdict(settings), "frames": segment.tok_frames, "size": segment.tok_size, "fps": segment.tok_fps}
    out.parent.mkdir(parents=True, exist_ok=True)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    model = VideoTokenizer(arch)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.99))
    rng = np.random.default_rng(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    step, elapsed_before = 0, 0.0
    log_path = out.with_suffix(".log.jsonl")
    if resume and _resume_path(out).is_file():
        blob = torch.load(_resume_path(out), map_location="cpu", weights_only=True)
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["opt"])
        step, elapsed_before = blob["step"], blob["elapsed"]
        rng.bit_generator.state = json.loads(blob["rng"])
        gen.set_state(blob["torch_gen"])
    elif log_path.exists():
        log_path.unlink()
    pool = load_frames(videos, segment.tok_fps, segment.tok_size, progress=progress)

    def lr_at(s: int) -> float:
        return settings.lr * warmup_cosine(s, warmup=settings.warmup, steps=settings.steps, floor=LR_FLOOR)

    autoencoder_params = [p for n, p in model.named_parameters() if not n.startswith("scorer.")]
    model.train()
    started = time.perf_counter()
    recent: list[dict] = []
    with (
        bar(
            total=settings.steps,
            initial=step,
            desc="fit tokenizer",
            unit="step",
            disable=None if progress is None else not progress,
        ) as pbar,
        open(log_path, "a") as log,
    ):
        while step < settings.steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            x = to_input(sample_clips(pool, rng, settings.batch_size, segment.tok_frames))
            losses = train_step(model, x, settings, gen)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            # Clip the autoencoder and the scorer apart: a noisy scorer gradient must not shrink
            # the reconstruction's step through a shared norm.
            torch.nn.utils.clip_grad_norm_(autoencoder_params, 1.0)
            torch.nn.utils.clip_grad_norm_(model.scorer.parameters(), 1.0)
            opt.step()
            step += 1
            recent.append({k: float(v) for k, v in losses.items() if k != "loss"} | {"loss": losses["loss"].item()})
            pbar.update(1)
            if step % settings.log_every == 0 or step == settings.steps:
                mean = {k: float(np.mean([r[k] for r in recent])) for k in recent[0]}
                recent.clear()
                log.write(
                    json.dumps(
                        {
                            "step": step,
                            "lr": lr_at(step - 1),
                            **mean,
                            "seconds": round(elapsed_before + time.perf_counter() - started, 1),
                        }
                    )
                    + "\n"
                )
                log.flush()
                pbar.set_postfix(rec=f"{mean['rec']:.4f}", psnr=f"{mean['psnr']:.1f}", score=f"{mean['score']:.3f}")
            if step % settings.checkpoint_every == 0:
                _save_resume(out, model, opt, step, rng, gen, recorded, elapsed_before + time.perf_counter() - started)
            if settings.max_minutes and elapsed_before + time.perf_counter() - started > settings.max_minutes * 60:
                break
    fit_seconds = elapsed_before + time.perf_counter() - started
    _save_resume(out, model, opt, step, rng, gen, recorded, fit_seconds)
    model.eval()
    info = {
        **(meta or {}),
        "settings": recorded,
        "steps_done": step,
        "fit_seconds": round(fit_seconds, 1),
        "videos": len(pool),
        "clip_frames_in_memory": int(sum(len(v) for v in pool)),
    }
    save_tokenizer(model, out, info)
    return model, info
