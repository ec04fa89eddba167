"""Held-out toy-world clips with the renderer's object masks: the ground truth of the tokenizer's checks
(`extract.tokenizer.evaluate`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from lvmae.extract.tokenizer.evaluate import HeldOutClips
from lvmae.extract.tokenizer.fit import load_frames
from lvmae.foundation.schema import CorpusSpec
from lvmae.toyworld.generate import generate, load_corpus, render_frames, video_plan


def heldout_clips(
    n: int = 256, seed: int = 5000, frames: int = 9, size: int = 64, fps: float = 8.0, videos: int = 12
) -> HeldOutClips:
    """`n` clips at random places of a fresh corpus of one-minute videos (12: every procedure class once)."""
    spec = CorpusSpec(videos=videos, minutes=(1.0, 1.0), seed=seed, size=size, fps=fps)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        generate(spec, tmp, workers=1, progress=False)
        corpus = load_corpus(tmp)
        rows = corpus.videos.to_pylist()
        pool = load_frames([Path(tmp) / r["uri"] for r in rows], fps, size, progress=False)
    clips, masks = [], []
    for _ in range(n):
        k = int(rng.integers(len(rows)))
        start = int(rng.integers(0, len(pool[k]) - frames + 1))
        idx = np.arange(start, start + frames)
        _, mask = render_frames(video_plan(spec, rows[k]["index"], rows[k]["n_frames"]), idx, fps, size)
        clips.append(pool[k][idx])
        masks.append(mask)
    return HeldOutClips(np.stack(clips), np.stack(masks), seed)
