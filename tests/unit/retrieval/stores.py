"""Stores of synthetic segment embeddings for the retrieval tests."""

import numpy as np

from lvmae.store import StoreIdentity

D = 32


def identity(encoder=None):
    return StoreIdentity(
        encoder=encoder or {"name": "toyclip", "pretrained": "toyclip.pt", "weights_sha256": "a" * 64},
        tokenizer=None,
        segment={"seconds": 2.0},
    )


def vectors(n, seed, d=D):
    """Vectors of intrinsic dimension 8 plus noise, like real embeddings (i.i.d. points are all near-ties)."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(1234).standard_normal((8, d))
    x = rng.standard_normal((n, 8)) @ basis + 0.3 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_videos(store, shard_id, videos, *, gaps=None):
    """videos: {video_id: (n, seed)}; gaps: {video_id: row} leaves 10 s missing before that row."""
    gaps = gaps or {}
    with store.shard_writer(shard_id) as w:
        for video_id, (n, seed) in videos.items():
            t0 = np.arange(n, dtype=np.float32) * 2
            if video_id in gaps:
                t0[gaps[video_id] :] += 10
            w.add_video(
                video_id=video_id,
                uri=f"/videos/{video_id}.mp4",
                duration=float(t0[-1] + 2),
                fps=8.0,
                emb=vectors(n, seed),
                importance=np.ones(n, np.float32),
                span=np.stack([t0, t0 + 2], 1),
            )
