"""Frozen-model throughput and the tokenizer's held-out quality, at the default presets.

    python -m bench.encoders [--quick] [--out FILE]

`encoder_frames_per_s`: the stand-in open_clip encoder on 64x64 frames (batch `encoder.batch_size`);
`tokenizer_clips_per_s`: the shipped tokenizer on 9x64x64 clips (batch `tokenizer.batch_size`), both
on the configured device (CPU here; a GPU when there is one). `tokenizer_fit_seconds` comes from the
shipped checkpoint's provenance; `tokenizer_psnr_db` and `scorer_motion_auc` are measured now on
held-out toy-world clips of another seed (256 clips; 64 with --quick).
"""

from __future__ import annotations

import time

import numpy as np

from bench._common import emit, machine, parse_args
from lvmae.extract.encoder import ImageTextEncoder
from lvmae.extract.tokenizer import FrozenTokenizer
from lvmae.extract.tokenizer.evaluate import evaluate
from lvmae.foundation.provenance import read_provenance
from lvmae.foundation.schema import load_config
from lvmae.toyworld.heldout import heldout_clips


def rate(fn, items: int, seconds: float) -> float:
    """Items per second of `fn` over at least `seconds` (after one warm-up call)."""
    fn()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        done += items
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(None, use_default_file=False)
    seconds = 3.0 if args.quick else 15.0
    rng = np.random.default_rng(0)

    encoder = ImageTextEncoder.from_config(cfg.encoder)
    frames = rng.integers(0, 256, (cfg.encoder.batch_size, encoder.image_size, encoder.image_size, 3), np.uint8)
    encoder_fps = rate(lambda: encoder.encode_frames(frames), len(frames), seconds)
    print(f"encoder {cfg.encoder.model} on {encoder.device}: {encoder_fps:,.0f} frames/s", flush=True)

    tokenizer = FrozenTokenizer(
        cfg.tokenizer.checkpoint,
        kappa=cfg.tokenizer.kappa,
        device=cfg.tokenizer.device,
        batch_size=cfg.tokenizer.batch_size,
    )
    seg = cfg.segment
    clips = rng.integers(0, 256, (cfg.tokenizer.batch_size, seg.tok_frames, seg.tok_size, seg.tok_size, 3), np.uint8)
    tokenizer_cps = rate(lambda: tokenizer.tokenize(clips), len(clips), seconds)
    print(f"tokenizer on {tokenizer.device}: {tokenizer_cps:,.1f} clips/s", flush=True)

    held = heldout_clips(
        64 if args.quick else 256,
        seed=5000,
        frames=seg.tok_frames,
        size=seg.tok_size,
        fps=seg.tok_fps,
        videos=4 if args.quick else 12,
    )
    figures = evaluate(tokenizer.model, held, kappa=cfg.tokenizer.kappa)
    fit = (read_provenance(cfg.tokenizer.checkpoint) or {}).get("fit", {})
    result = {
        "encoder_frames_per_s": round(encoder_fps, 1),
        "tokenizer_clips_per_s": round(tokenizer_cps, 2),
        "tokenizer_fit_seconds": fit.get("fit_seconds"),
        "tokenizer_psnr_db": round(figures["psnr_db"], 2),
        "scorer_motion_auc": round(figures["scorer_motion_auc"], 4),
        "segments_per_s_bound": round(1 / (seg.clip_frames / encoder_fps + 1 / tokenizer_cps), 1),
        "device": str(encoder.device),
        "heldout_clips": figures["clips"],
        "quick": args.quick,
        **machine(),
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
