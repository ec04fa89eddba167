"""Masked-segment reconstruction on held-out videos, against copying the nearest visible segment.

    lvmae evaluate [--store URI] [--checkpoint FILE] [--ratio R] [--decoder trained|all] [--split val|all] [--json]

Shape letters: `B` windows, `T` segments in a window, `D` embedding width.

`reconstruct` is the one reconstruction path: this MSE and `lvmae inspect` (`lvmae.evaluation.inspection`)
both read it. Every segment of every held-out video is covered once: videos are cut into consecutive
windows of the checkpoint's `max_segments`, each window hides `round(ratio * T)` segments (at random
here; `reconstruct` also takes the semantic, adaptive and span masks) drawn from a generator keyed by
(seed, video id, window start), so two checkpoints are scored on the same masks and a video's masks do
not depend on which other videos are evaluated with it, and the decoder reconstructs the hidden
segments its training taught it to: with `decoder="trained"` (default) the checkpoint's own decoder mask picks them
(for `adaptive`, the top-kappa hidden segments by importance), with `decoder="all"` every hidden
segment is a query. A decoder trained on a few high-importance queries is not asked for every hidden
segment at once: its mask tokens attend to each other, and about seven times as many of them is a different
input (on toy-world runs such a model lost to copying under `all` and beat it under its own mask).
Both predictions are scored against the L2-normalised embedding as in training: MSE averaged over D,
then over the reconstructed segments.

The baseline copies, for each hidden segment, the nearest visible segment of its window (the earlier
one on a tie): what a model that learned nothing about long-range structure could still do, and hard
to beat where consecutive segments are near copies of each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lvmae.foundation.errors import UsageError
from lvmae.pretrain.checkpoint import Pretrained
from lvmae.pretrain.data import (
    EVAL_STREAM,
    Batch,
    Video,
    id_hash,
    ok_videos,
    read_batch,
    split_videos,
    step_seeds,
    tile_windows,
)
from lvmae.pretrain.masking import DECODER_MASKS, ENCODER_MASKS, SPAN_LENGTHS, decoder_mask, encoder_mask
from lvmae.store import Store


def check_ratio(ratio: float | None) -> None:
    """A mask ratio asked for (None: the checkpoint's own) must hide some and keep some of a window."""
    if ratio is not None and not 0 < ratio < 1:
        raise UsageError("ratio", "a fraction in (0, 1)", value=ratio)


def visible_neighbours(visible: Tensor) -> tuple[Tensor, Tensor]:
    """For each position, the last visible position at or before it and the first at or after it.

    visible (B, T) bool -> (before, after), both (B, T) int64; `before` is -2T where no visible
    position comes before, `after` is 2T where none comes after (far enough to lose every tie).
    """
    B, T = visible.shape
    pos = torch.arange(T).expand(B, T)
    big = torch.full_like(pos, 2 * T)
    # Running max from the left, and reversed running min from the right.
    before = torch.where(visible, pos, -big).cummax(1).values  # (B, T)
    after = torch.where(visible, pos, big).flip(1).cummin(1).values.flip(1)  # (B, T)
    return before, after


def nearest_visible(visible: Tensor) -> Tensor:
    """For each position, the index of the nearest visible position of its row (earlier on a tie).

    visible (B, T) bool, at least one True per row -> (B, T) int64.
    """
    T = visible.shape[1]
    before, after = visible_neighbours(visible)
    pos = torch.arange(T).expand_as(before)
    return torch.where((pos - before) <= (after - pos), before, after).clamp(0, T - 1)


# --- the one reconstruction path: seeded masks over held-out windows, the decoders' outputs ------------


@dataclass
class Decoded:
    """What one decoder mask reconstructed in a batch of windows."""

    kind: str  # the decoder mask that picked the segments (all, random, adaptive)
    index: Tensor  # (B, S) int64: window positions of the reconstructed segments
    keep: Tensor  # (B, S) bool: False = padding of the gathered list
    pred: Tensor  # (B, S, D) float32 on the CPU: the reconstructions (unnormalised, as the head gives them)


@dataclass
class Reconstructed:
    """One batch of held-out windows: the embeddings, the encoder mask, and each decoder's output."""

    batch: Batch  # on the CPU
    unit: Tensor  # (B, T, D) float32: the L2-normalised embeddings, the targets
    hidden: Tensor  # (B, T) bool: True = hidden from the encoder
    decoded: dict[str, Decoded]  # by the name asked for ("trained", "all", ...)


def decoder_kind(pretrained: Pretrained, decoder: str) -> str:
    """The decoder mask `decoder` names: "trained" is the checkpoint's own, else a mask name."""
    kind = pretrained.pretrain["decoder_mask"] if decoder == "trained" else decoder
    if kind not in DECODER_MASKS:
        raise ValueError(f"unknown decoder mask {decoder!r}; expected trained or {', '.join(DECODER_MASKS)}")
    return kind


def evaluation_videos(pretrained: Pretrained, store: Store, split: str) -> list[Video]:
    """The store's ok videos to evaluate: "all", or "val", those the checkpoint's training held out
    (its `val_fraction` split, the same for every run on the store)."""
    videos = ok_videos(store)
    if split == "all":
        return videos
    if split != "val":
        raise ValueError(f"unknown split {split!r}; expected val or all")
    held_out = split_videos(videos, float(pretrained.pretrain["val_fraction"]))[1]
    if not held_out:
        raise ValueError(
            "the checkpoint's training held out no videos of this store "
            f"(val_fraction {pretrained.pretrain['val_fraction']}); use split 'all'"
        )
    return held_out


def trained_on_store(pretrained: Pretrained, store: Store, videos: list[Video] | None = None) -> bool:
    """Whether `store` is the one the checkpoint trained on (`pretrain.train.trained_on`); `videos` are
    its ok videos, read when not given."""
    from lvmae.pretrain.train import trained_on

    videos = ok_videos(store) if videos is None else videos
    return trained_on(pretrained.store, float(pretrained.pretrain["val_fraction"]), store, videos)


def held_out_videos(pretrained: Pretrained, store: Store) -> tuple[list[Video], str]:
    """The videos of `store` the checkpoint never trained on, and a phrase saying which they are: on the
    store it trained on (same identity, same training videos), the videos its training held out;
    on any other store, every ok video."""
    videos = ok_videos(store)
    if not trained_on_store(pretrained, store, videos):
        return videos, f"every video ({len(videos)}): the checkpoint trained on another store"
    val = split_videos(videos, float(pretrained.pretrain["val_fraction"]))[1]
    if not val:
        raise ValueError(
            f"store {store.uri} is the one checkpoint {pretrained.name} trained on, and its training "
            "held out none of its videos: inspect a store of other videos"
        )
    return val, f"the {len(val)} videos its training held out of the store it trained on"


@torch.no_grad()
def reconstruct(
    pretrained: Pretrained,
    store: Store,
    videos: list[Video],
    *,
    mask: str = "random",
    ratio: float | None = None,
    decoders: tuple[str, ...] = ("trained",),
    seed: int = 0,
    batch_windows: int = 8,
) -> Iterator[Reconstructed]:
    """Every segment of `videos` once, in consecutive windows of the checkpoint's `max_segments` (its
    trained context), `batch_windows` windows at a time: a seeded encoder mask (`mask`, hiding
    `ratio`, default the checkpoint's mask_ratio; semantic and span masks take the checkpoint's
    direction and lengths) and, for each name in `decoders`, the segments that decoder mask selects
    and their reconstructions. A window's masks depend only on (seed, video id, window start), so two
    checkpoints, or two decoders, are scored on the same hidden segments."""
    p = pretrained.pretrain
    if mask not in ENCODER_MASKS:
        raise ValueError(f"unknown encoder mask {mask!r}; expected {', '.join(ENCODER_MASKS)}")
    ratio = float(p["mask_ratio"] if ratio is None else ratio)
    kinds = {name: decoder_kind(pretrained, name) for name in decoders}
    kappa = float(p["kappa"])
    model = pretrained.model
    device = next(model.parameters()).device
    windows = tile_windows(videos, pretrained.max_segments)
    for k in range(0, len(windows), batch_windows):
        # a model with a code head scores its codes too, so it is given them (predictions do not use them)
        batch = read_batch(store, windows[k : k + batch_windows], codes=model.code_head is not None)
        if batch.emb.shape[-1] != model.cfg.dim_in:
            raise ValueError(
                f"store {store.uri} holds {batch.emb.shape[-1]}-wide embeddings, but checkpoint "
                f"{pretrained.name} was trained on {model.cfg.dim_in}-wide ones: evaluate it on a store of its encoder"
            )
        hidden = torch.zeros_like(batch.valid)  # (B, T)
        selected = {name: torch.zeros_like(batch.valid) for name in kinds}  # each (B, T)
        for b, window in enumerate(batch.windows):
            # A window's masks come from its own generator, keyed by (seed, video, start): a video shows
            # the same masks whichever other videos are evaluated with it (a timeline matches the table).
            generator = step_seeds(seed, EVAL_STREAM, window_key(window.video_id), window.start)[1]
            L = window.length
            row = encoder_mask(
                mask,
                emb=batch.emb[b : b + 1, :L],
                importance=batch.importance[b : b + 1, :L],
                valid=batch.valid[b : b + 1, :L],
                ratio=ratio,
                generator=generator,
                direction=p.get("semantic_direction", "dissimilar"),
                span=tuple(p.get("span_lengths", SPAN_LENGTHS)),
            )  # (1, L)
            hidden[b, :L] = row[0]
            after_mask = generator.get_state()  # each decoder draws as if it were the only one asked for
            for name, kind in kinds.items():
                generator.set_state(after_mask)
                selected[name][b, :L] = decoder_mask(
                    kind, hidden=row, importance=batch.importance[b : b + 1, :L], kappa=kappa, generator=generator
                )[0]
        decoded = {}
        for name, kind in kinds.items():
            codes = None if batch.codes is None else batch.codes.to(device)
            out = model(
                batch.emb.to(device), batch.valid.to(device), hidden.to(device), selected[name].to(device), codes
            )
            decoded[name] = Decoded(kind, out.index.cpu(), out.keep.cpu(), out.pred.float().cpu())
        yield Reconstructed(batch, F.normalize(batch.emb, dim=-1), hidden, decoded)


def window_key(video_id: str) -> int:
    """A video's part of its windows' mask seeds: 63 bits of the hash that also splits train from val."""
    return id_hash(video_id) >> 1


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """x (B, T, D), index (B, S) -> (B, S, D): the rows of each window at `index`."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


@dataclass
class EvalResult:
    model_mse: float
    copy_nearest_mse: float
    reconstructed_segments: int  # hidden segments the decoder reconstructed (every hidden one under `all`)
    videos: int
    windows: int
    ratio: float
    split: str
    decoder: str  # the decoder mask that picked the reconstructed segments


@torch.no_grad()
def reconstruction_mse(
    pretrained: Pretrained,
    store: Store,
    *,
    split: str = "val",
    ratio: float | None = None,
    decoder: str = "trained",
    seed: int = 0,
    batch_windows: int = 8,
) -> EvalResult:
    """Model and copy-nearest MSE on the reconstructed masked segments of the `split` videos ("val":
    those the checkpoint's training held out; "all": every video); `decoder` "trained" (the
    checkpoint's decoder mask) or any decoder mask name, such as "all"."""
    check_ratio(ratio)
    ratio = float(pretrained.pretrain["mask_ratio"] if ratio is None else ratio)
    kind = decoder_kind(pretrained, decoder)
    videos = evaluation_videos(pretrained, store, split)
    sums = torch.zeros(2, dtype=torch.float64)
    n_reconstructed = n_windows = 0
    for rec in reconstruct(
        pretrained, store, videos, ratio=ratio, decoders=(decoder,), seed=seed, batch_windows=batch_windows
    ):
        out = rec.decoded[decoder]
        target = gather_rows(rec.unit, out.index)  # (B, S, D)
        source = nearest_visible(rec.batch.valid & ~rec.hidden).gather(1, out.index)  # (B, S): copied position
        copied = gather_rows(rec.unit, source)  # (B, S, D)
        for i, pred in enumerate((out.pred, copied)):
            sums[i] += (pred - target).pow(2).mean(-1)[out.keep].sum().double()
        n_reconstructed += int(out.keep.sum())
        n_windows += len(rec.batch.windows)
    return EvalResult(
        model_mse=float(sums[0] / max(n_reconstructed, 1)),
        copy_nearest_mse=float(sums[1] / max(n_reconstructed, 1)),
        reconstructed_segments=n_reconstructed,
        videos=len(videos),
        windows=n_windows,
        ratio=ratio,
        split=split,
        decoder=kind,
    )
