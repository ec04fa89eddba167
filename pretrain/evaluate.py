"""Masked-segment reconstruction on held-out videos, against copying the nearest visible segment.

    python -m pretrain.evaluate STORE CHECKPOINT [--ratio R] [--decoder trained|all] [--split val|all] [--json]

Shape letters: `B` windows, `T` segments in a window, `D` embedding width.

Every segment of every held-out video is covered once: videos are cut into consecutive windows of the
checkpoint's `max_segments`, each window hides `round(ratio * T)` segments at random (seeded, so two
checkpoints are scored on the same masks), and the decoder reconstructs the hidden segments its
training taught it to: with `decoder="trained"` (default) the checkpoint's own decoder mask picks them
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

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pretrain.checkpoint import Pretrained, load_pretrained
from pretrain.data import EVAL_STREAM, ok_videos, read_batch, split_videos, step_seeds, tile_windows
from pretrain.masking import DECODER_MASKS, decoder_mask, random_mask
from store import Store


def nearest_visible(visible: Tensor) -> Tensor:
    """For each position, the index of the nearest visible position of its row (earlier on a tie).

    visible (B, T) bool, at least one True per row -> (B, T) int64.
    """
    B, T = visible.shape
    pos = torch.arange(T).expand(B, T)
    big = torch.full_like(pos, 2 * T)
    # Last visible index at or before t, and first at or after t (running max / reversed running min).
    before = torch.where(visible, pos, -big).cummax(1).values  # (B, T)
    after = torch.where(visible, pos, big).flip(1).cummin(1).values.flip(1)  # (B, T)
    return torch.where((pos - before) <= (after - pos), before, after).clamp(0, T - 1)


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
    p = pretrained.pretrain
    ratio = float(p["mask_ratio"] if ratio is None else ratio)
    kind = p["decoder_mask"] if decoder == "trained" else decoder
    if kind not in DECODER_MASKS:
        raise ValueError(f"unknown decoder mask {decoder!r}; expected trained or {', '.join(DECODER_MASKS)}")
    videos = ok_videos(store)
    if split == "val":
        videos = split_videos(videos, float(p["val_fraction"]))[1]
        if not videos:
            raise ValueError(
                "the checkpoint's training held out no videos of this store "
                f"(val_fraction {p['val_fraction']}); use split 'all'"
            )
    model = pretrained.model
    device = next(model.parameters()).device
    windows = tile_windows(videos, pretrained.max_segments)
    sums = torch.zeros(2, dtype=torch.float64)
    n_reconstructed = 0
    for k in range(0, len(windows), batch_windows):
        batch = read_batch(store, windows[k : k + batch_windows])
        generator = step_seeds(seed, EVAL_STREAM, 0, k)[1]
        hidden = random_mask(batch.valid, ratio, generator=generator)  # (B, T)
        selected = decoder_mask(
            kind, hidden=hidden, importance=batch.importance, kappa=float(p["kappa"]), generator=generator
        )  # (B, T)
        out = model(batch.emb.to(device), batch.valid.to(device), hidden.to(device), selected.to(device))
        unit = F.normalize(batch.emb, dim=-1)  # (B, T, D)
        index, keep = out.index.cpu(), out.keep.cpu()  # (B, S)
        target = unit.gather(1, index[..., None].expand(-1, -1, unit.shape[-1]))  # (B, S, D)
        source = nearest_visible(batch.valid & ~hidden).gather(1, index)  # (B, S): copied position
        copied = unit.gather(1, source[..., None].expand(-1, -1, unit.shape[-1]))  # (B, S, D)
        for i, pred in enumerate((out.pred.float().cpu(), copied)):
            sums[i] += (pred - target).pow(2).mean(-1)[keep].sum().double()
        n_reconstructed += int(keep.sum())
    return EvalResult(
        model_mse=float(sums[0] / max(n_reconstructed, 1)),
        copy_nearest_mse=float(sums[1] / max(n_reconstructed, 1)),
        reconstructed_segments=n_reconstructed,
        videos=len(videos),
        windows=len(windows),
        ratio=ratio,
        split=split,
        decoder=kind,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pretrain.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("store", metavar="STORE", help="feature store (path or fsspec URI)")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="model.pt or checkpoint.pt of a pretraining run")
    parser.add_argument("--ratio", type=float, help="fraction of each window hidden (default: the run's mask_ratio)")
    parser.add_argument(
        "--decoder",
        default="trained",
        help="which hidden segments are reconstructed: trained (the checkpoint's decoder mask, "
        f"default) or one of {', '.join(DECODER_MASKS)}",
    )
    parser.add_argument(
        "--split",
        choices=("val", "all"),
        default="val",
        help="val: the videos the run held out (default); all: every video",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation masks (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = reconstruction_mse(
        load_pretrained(args.checkpoint, args.device),
        Store.open(args.store),
        split=args.split,
        ratio=args.ratio,
        decoder=args.decoder,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"{result.split} videos: {result.videos}, windows: {result.windows}, hidden segments "
            f"reconstructed: {result.reconstructed_segments} (ratio {result.ratio:g}, decoder mask {result.decoder})"
        )
        print(f"model reconstruction MSE:   {result.model_mse:.6f}")
        print(f"copy-nearest-visible MSE:   {result.copy_nearest_mse:.6f}")
        print(f"model / copy:               {result.model_mse / result.copy_nearest_mse:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
