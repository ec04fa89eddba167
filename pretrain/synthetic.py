"""Structured synthetic stores: long sequences whose segments follow a few fixed procedures.

For tests, benchmarks and trying `lvmae pretrain` before any video is extracted. A video runs one
procedure, an ordered list of steps, over and over; each step holds for a few segments, and a segment's
embedding is its step's prototype plus noise, L2-normalised. Some procedures use the same steps in
another order, so the order, not the set of steps, tells them apart. Context therefore predicts a
hidden segment well (the step before and after, the procedure's order), better than copying the nearest
visible segment, which carries its own noise and is wrong across step boundaries.

Importance is high on a step's first segment (where the content changes) and low elsewhere, plus noise:
the shape a token scorer gives. With `tokenizer=True` every segment also gets FSQ codes whose digits
depend on the step, so a code head has something to learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvmae.store import Store, StoreIdentity

SEGMENT_SECONDS = 2.0
FSQ_LEVELS = (4, 4, 3)
TOKEN_GRID = (1, 2, 2)


@dataclass(frozen=True)
class ProcedureWorld:
    """Step prototypes (K, D) and procedures (P lists of step indices)."""

    prototypes: np.ndarray
    procedures: list[list[int]]


def make_world(
    dim: int = 32, *, steps: int = 8, procedures: int = 4, steps_per_procedure: int = 5, seed: int = 0
) -> ProcedureWorld:
    """Half of the procedures are reorderings of the other half's steps."""
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((steps, dim))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    procs: list[list[int]] = []
    while len(procs) < procedures:
        base = rng.choice(steps, size=steps_per_procedure, replace=False).tolist()
        procs.append(base)
        if len(procs) < procedures:
            procs.append(rng.permutation(base).tolist())
    return ProcedureWorld(protos.astype(np.float32), procs)


def make_video(
    world: ProcedureWorld,
    procedure: int,
    n_segments: int,
    rng: np.random.Generator,
    *,
    noise: float = 0.3,
    min_step: int = 3,
    max_step: int = 8,
) -> dict[str, np.ndarray]:
    """One video's arrays: emb (n, D) float16 unit rows, importance (n,), span (n, 2), and the step of
    each segment (n,) for checks."""
    order = world.procedures[procedure]
    step_of = np.empty(n_segments, dtype=np.int64)
    first = np.zeros(n_segments, dtype=bool)
    i, k = 0, 0
    while i < n_segments:
        length = int(rng.integers(min_step, max_step + 1))
        step_of[i : i + length] = order[k % len(order)]
        first[i] = True
        i, k = i + length, k + 1
    dim = world.prototypes.shape[1]
    emb = world.prototypes[step_of] + noise * rng.standard_normal((n_segments, dim)) / np.sqrt(dim)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    importance = np.clip(np.where(first, 0.8, 0.2) + 0.1 * rng.standard_normal(n_segments), 0, 1)
    t0 = np.arange(n_segments, dtype=np.float32) * SEGMENT_SECONDS
    return {
        "emb": emb.astype(np.float16),
        "importance": importance.astype(np.float32),
        "span": np.stack([t0, t0 + SEGMENT_SECONDS], 1),
        "step": step_of,
    }


def step_codes(step_of: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """FSQ codes (n, t, h, w) whose most common index is a function of the step; scores alike."""
    size = int(np.prod(FSQ_LEVELS))
    base = (step_of * 7) % size
    noise = rng.integers(0, size, (len(step_of), *TOKEN_GRID))
    keep = rng.random((len(step_of), *TOKEN_GRID)) < 0.75
    codes = np.where(keep, base[:, None, None, None], noise).astype(np.int16)
    return codes, rng.random(codes.shape).astype(np.float16)


def write_procedure_store(
    uri: str,
    *,
    videos: int = 12,
    segments: tuple[int, int] = (40, 400),
    dim: int = 32,
    procedures: int = 4,
    noise: float = 0.3,
    tokenizer: bool = False,
    seed: int = 0,
    shard_videos: int = 8,
    video_seed: int | None = None,
    id_prefix: str = "video",
) -> Store:
    """A store of `videos` procedure videos with lengths spread over `segments`; the manifest gets a
    `procedure` label column and a `group` column (procedures 2g and 2g + 1 share their steps). `seed`
    fixes the world (steps and procedures) and, unless `video_seed` is given, the videos: another
    `video_seed` draws other videos of the same world, a held-out set."""
    world = make_world(dim, procedures=procedures, seed=seed)
    rng = np.random.default_rng(seed + 1 if video_seed is None else [seed, video_seed])
    ident = StoreIdentity(
        encoder={"name": "synthetic-procedures", "weights_sha256": "0" * 64, "dim": dim},
        tokenizer={"name": "synthetic-fsq", "weights_sha256": "1" * 64, "levels": list(FSQ_LEVELS)}
        if tokenizer
        else None,
        segment={"seconds": SEGMENT_SECONDS},
    )
    store = Store.create(uri, ident)
    lengths = np.geomspace(segments[0], segments[1], videos).round().astype(int)
    for shard in range(0, videos, shard_videos):
        with store.shard_writer(f"{shard // shard_videos:06d}") as writer:
            for v in range(shard, min(shard + shard_videos, videos)):
                procedure = v % procedures
                arrays = make_video(world, procedure, int(lengths[v]), rng, noise=noise)
                step_of = arrays.pop("step")
                if tokenizer:
                    arrays["codes"], arrays["scores"] = step_codes(step_of, rng)
                writer.add_video(
                    video_id=f"{id_prefix}{v:04d}",
                    uri=f"synthetic://{id_prefix}{v:04d}",
                    duration=float(lengths[v]) * SEGMENT_SECONDS,
                    fps=8.0,
                    **arrays,
                    extra={"procedure": procedure, "group": procedure // 2},  # a group: one set of steps
                )
    return store
