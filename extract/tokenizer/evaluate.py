"""Held-out checks of a fitted tokenizer on clips whose object masks are known (the toy world's
renderer gives them: `toyworld.heldout.heldout_clips`).

- Reconstruction: PSNR of clips decoded from all tokens.
- Scores: ROC AUC separating tokens over a moving object (at least a quarter of the token's
  footprint is object, in a clip where the object's mask changes) from tokens of static background
  (no object pixel anywhere in the footprint). Tokens over a still object are in neither set.

The toy world's clips come from a freshly generated corpus of another seed, decoded with the same
code the fit uses, so the check sees exactly what extraction will.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lvmae.extract.tokenizer.fit import to_input
from lvmae.extract.tokenizer.model import VideoTokenizer, importance, token_footprint_mean


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half (Mann-Whitney U)."""
    scores = np.concatenate([positive, negative])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average rank of each distinct value (1-based), so ties share their rank.
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class HeldOutClips:
    clips: np.ndarray  # (N, T, S, S, 3) uint8, decoded
    masks: np.ndarray  # (N, T, S, S) bool, object pixels (from the renderer)
    seed: int  # of the corpus they come from


@torch.no_grad()
def evaluate(model: VideoTokenizer, held: HeldOutClips, *, kappa: float = 0.15, batch: int = 32) -> dict:
    model.eval()
    device = next(model.parameters()).device
    sq_err, scores = [], []
    for start in range(0, len(held.clips), batch):
        x = to_input(held.clips[start : start + batch]).to(device)
        codes, _, logits = model.encode(x)
        recon = model.decode(codes).clamp(-1, 1)
        sq_err.append((recon - x).pow(2).mean(dim=(1, 2, 3, 4)).float().cpu())
        scores.append(torch.sigmoid(logits.float()).cpu())
    mse = torch.cat(sq_err)  # (N,) per clip, range [-1, 1]
    scores = torch.cat(scores)  # (N, T', h, w)
    masks = torch.from_numpy(held.masks).float()  # (N, T, S, S)
    coverage = token_footprint_mean(masks)  # (N, T', h, w)
    moving_clip = (held.masks != held.masks[:, :1]).any(axis=(1, 2, 3))  # the object's mask changes
    moving = (coverage >= 0.25) & torch.from_numpy(moving_clip)[:, None, None, None]
    static_bg = coverage == 0
    auc = (
        roc_auc(scores[moving].numpy(), scores[static_bg].numpy()) if moving.any() and static_bg.any() else float("nan")
    )
    imp = importance(scores, kappa)
    empty = torch.from_numpy(~held.masks.any(axis=(1, 2, 3)))
    return {
        "psnr_db": float(10 * torch.log10(4.0 / mse.mean())),
        "psnr_db_worst_clip": float(10 * torch.log10(4.0 / mse.max())),
        "scorer_motion_auc": auc,
        "tokens_moving_object": int(moving.sum()),
        "tokens_static_background": int(static_bg.sum()),
        "importance_moving_clips": float(imp[torch.from_numpy(moving_clip)].mean()) if moving_clip.any() else None,
        "importance_empty_clips": float(imp[empty].mean()) if empty.any() else None,
        "clips": len(held.clips),
        "seed": held.seed,
    }
