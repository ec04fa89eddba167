"""The fitted tokenizer as extraction runs it: frozen, batched, clips in, tokens and scores out.

Shape legend: `B` clips, `T` frames, `S` frame side, `T'`/`h`/`w` latent grid.

Segment importance is the mean of the clip's top-kappa token scores: high when a few tokens carry
much that the rest of the clip cannot fill in (a moving object), low for an empty or uniform clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lvmae.extract.tokenizer.fit import load_tokenizer, to_input
from lvmae.extract.tokenizer.model import importance, latent_frames
from lvmae.foundation.files import sha256_file
from lvmae.foundation.runtime import resolve_device


def tokenizer_identity(checkpoint: str | Path, kappa: float, *, levels: list[int] | None = None) -> dict:
    """What a store records about the tokenizer: file, sha256, FSQ levels and the importance budget."""
    checkpoint = Path(checkpoint)
    if levels is None:
        levels = list(torch.load(checkpoint, map_location="cpu", weights_only=True)["arch"]["levels"])
    return {
        "name": "magvit-fsq",
        "file": checkpoint.name,
        "weights_sha256": sha256_file(checkpoint),
        "levels": levels,
        "kappa": kappa,
    }


@dataclass
class TokenizerOutput:
    indices: np.ndarray  # (B, T', h, w) int16 FSQ indices (the codebook has < 2^15 entries)
    scores: np.ndarray  # (B, T', h, w) float16 in (0, 1)
    importance: np.ndarray  # (B,) float32


class FrozenTokenizer:
    def __init__(self, checkpoint: str | Path, *, kappa: float = 0.15, device: str = "auto", batch_size: int = 32):
        self.checkpoint = Path(checkpoint)
        self.device = resolve_device(device, "tokenizer.device")
        self.model = load_tokenizer(self.checkpoint, self.device).requires_grad_(False)
        self.kappa = kappa
        self.batch_size = batch_size
        levels = list(self.model.arch.levels)
        if self.model.arch.codebook_size > np.iinfo(np.int16).max + 1:
            raise ValueError(f"{checkpoint}: codebook of {self.model.arch.codebook_size} codes does not fit int16")
        self.identity = tokenizer_identity(self.checkpoint, kappa, levels=levels)

    def grid(self, frames: int, size: int) -> tuple[int, int, int]:
        """(T', h, w) for clips of `frames` frames of `size` x `size` pixels."""
        return latent_frames(frames), size // 4, size // 4

    @torch.no_grad()
    def tokenize(self, clips: np.ndarray) -> TokenizerOutput:
        """clips (B, T, S, S, 3) uint8 (an array, or a tensor on any device) -> FSQ indices, token
        scores, importance."""
        idx, scores, imp = [], [], []
        for start in range(0, len(clips), self.batch_size):
            x = to_input(clips[start : start + self.batch_size]).to(self.device)
            _, indices, logits = self.model.encode(x)
            s = torch.sigmoid(logits.float())
            idx.append(indices.to(torch.int16).cpu())
            scores.append(s.to(torch.float16).cpu())
            imp.append(importance(s, self.kappa).cpu())
        if not idx:
            T, h, w = self.grid(clips.shape[1], clips.shape[2]) if clips.ndim == 5 else (0, 0, 0)
            return TokenizerOutput(
                np.zeros((0, T, h, w), np.int16), np.zeros((0, T, h, w), np.float16), np.zeros(0, np.float32)
            )
        return TokenizerOutput(
            torch.cat(idx).numpy(), torch.cat(scores).numpy(), torch.cat(imp).numpy().astype(np.float32)
        )

    @torch.no_grad()
    def reconstruct(self, indices: np.ndarray) -> np.ndarray:
        """FSQ indices (B, T', h, w) -> clips (B, T, S, S, 3) uint8, decoded from all tokens."""
        codes = self.model.codes_from_indices(torch.from_numpy(indices.astype(np.int64)).to(self.device))
        x = self.model.decode(codes).clamp(-1, 1)
        return ((x + 1) * 127.5).round().byte().permute(0, 2, 3, 4, 1).cpu().numpy()
