"""MAGVIT-v2-style causal video tokenizer with FSQ and a token scorer, in one file.

Shape legend: `B` clips, `C` channels, `T` frames (1 + 4k), `H`/`W` pixels, `T'` latent frames
(1 + k), `h`/`w` latent grid (H/4, W/4), `L` FSQ dimensions (len(levels)).

Causality: every temporal convolution pads on the past side only (replicating the first frame)
and normalisation is per frame, so latent frame j depends on frames 0 .. 4j and nothing later.
The first frame is encoded alone (latent 0), then time is downsampled 4x: 9 frames -> 3 latents.
Space is downsampled 4x: 64x64 -> 16x16. The full-resolution stages use spatial-only kernels
(temporal mixing happens at 16x16, where it is 16x cheaper).

Token scorer: a small conv head on the encoder's last features (detached, so it cannot distort the
codes) predicting, per latent token, how much the reconstruction of that token's footprint
suffers when the token is dropped. `score = sigmoid(logit)` in (0, 1); segment importance is the
mean of a clip's top-kappa scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from vector_quantize_pytorch import FSQ


@dataclass(frozen=True)
class TokenizerArch:
    """Architecture; saved in every checkpoint so a file rebuilds its own model."""

    channels: tuple[int, int, int] = (32, 48, 64)  # 32x32 stage, 16x16 x 5-frame stage, latent stage
    levels: tuple[int, ...] = (8, 8, 8, 6, 5)  # FSQ levels: 15,360 codes, fits int16
    scorer_channels: int = 32
    groups: int = 8  # GroupNorm groups (per frame)

    @property
    def codebook_size(self) -> int:
        n = 1
        for level in self.levels:
            n *= level
        return n

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> TokenizerArch:
        return TokenizerArch(
            channels=tuple(d["channels"]),
            levels=tuple(d["levels"]),
            scorer_channels=d["scorer_channels"],
            groups=d["groups"],
        )


SPATIAL_DOWN = 4
TEMPORAL_DOWN = 4


def latent_frames(frames: int) -> int:
    """9 -> 3: the first frame alone, then one latent per 4 frames."""
    if frames < 1 or (frames - 1) % TEMPORAL_DOWN:
        raise ValueError(f"clips need 1 + {TEMPORAL_DOWN}k frames, got {frames}")
    return 1 + (frames - 1) // TEMPORAL_DOWN


class CausalConv3d(nn.Module):
    """Conv3d that pads time on the past side only (replicating frame 0) and space symmetrically."""

    def __init__(self, cin: int, cout: int, kernel=(3, 3, 3), stride=(1, 1, 1)):
        super().__init__()
        kt, kh, kw = kernel
        self.time_pad = kt - 1
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=(0, kh // 2, kw // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, 0), mode="replicate")
        return self.conv(x)


class FrameNorm(nn.GroupNorm):
    """GroupNorm over each frame separately: statistics over time would leak the future into the past."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        B, C, T, H, W = x.shape
        y = super().forward(x.transpose(1, 2).reshape(B * T, C, H, W))
        return y.reshape(B, T, C, H, W).transpose(1, 2)


class ResBlock(nn.Module):
    def __init__(self, channels: int, groups: int, kernel=(3, 3, 3)):
        super().__init__()
        self.norm1 = FrameNorm(groups, channels)
        self.conv1 = CausalConv3d(channels, channels, kernel)
        self.norm2 = FrameNorm(groups, channels)
        self.conv2 = CausalConv3d(channels, channels, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


def space_to_depth(x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, 4C, T, H/2, W/2)
    B, C, T, H, W = x.shape
    y = F.pixel_unshuffle(x.transpose(1, 2).reshape(B * T, C, H, W), 2)
    return y.reshape(B, T, 4 * C, H // 2, W // 2).transpose(1, 2)


def depth_to_space(x: torch.Tensor) -> torch.Tensor:  # (B, 4C, T, H, W) -> (B, C, T, 2H, 2W)
    B, C4, T, H, W = x.shape
    y = F.pixel_shuffle(x.transpose(1, 2).reshape(B * T, C4, H, W), 2)
    return y.reshape(B, T, C4 // 4, 2 * H, 2 * W).transpose(1, 2)


def depth_to_time(x: torch.Tensor) -> torch.Tensor:
    """(B, 2C, T, H, W) -> (B, C, 2T - 1, H, W): each frame becomes two, then the first is dropped,
    mirroring the encoder's "first frame alone" so 1 + k frames become 1 + 2k."""
    B, C2, T, H, W = x.shape
    y = x.reshape(B, 2, C2 // 2, T, H, W).permute(0, 2, 3, 1, 4, 5).reshape(B, C2 // 2, 2 * T, H, W)
    return y[:, :, 1:]


class Encoder(nn.Module):
    def __init__(self, arch: TokenizerArch):
        super().__init__()
        c0, c1, c2 = arch.channels
        g = arch.groups
        self.stem = CausalConv3d(12, c0, (1, 3, 3))  # 32x32, spatial only
        self.down1 = CausalConv3d(c0, c1, (3, 3, 3), stride=(2, 2, 2))  # T 9 -> 5, 32 -> 16
        self.res1 = ResBlock(c1, g)
        self.down2 = CausalConv3d(c1, c2, (3, 3, 3), stride=(2, 1, 1))  # T 5 -> 3
        self.res2 = ResBlock(c2, g)
        self.norm = FrameNorm(g, c2)
        self.proj = nn.Conv3d(c2, len(arch.levels), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, T, H, W) in [-1, 1] -> (latent (B, L, T', h, w), features (B, c2, T', h, w))."""
        h = self.stem(space_to_depth(x))  # (B, c0, T, H/2, W/2)
        h = self.res1(self.down1(F.silu(h)))  # (B, c1, (T+1)/2, h, w)
        feats = self.res2(self.down2(h))  # (B, c2, T', h, w)
        return self.proj(F.silu(self.norm(feats))), feats


class Decoder(nn.Module):
    def __init__(self, arch: TokenizerArch):
        super().__init__()
        c0, c1, c2 = arch.channels
        g = arch.groups
        L = len(arch.levels)
        self.inp = CausalConv3d(L + 1, c2, (3, 3, 3))  # codes + "dropped" flag
        self.res2 = ResBlock(c2, g)
        self.up_t1 = CausalConv3d(c2, 2 * c1, (3, 3, 3))  # T' 3 -> 5
        self.res1 = ResBlock(c1, g)
        self.up_t2 = CausalConv3d(c1, 2 * c1, (3, 3, 3))  # T 5 -> 9
        self.up_s = CausalConv3d(c1, 4 * c0, (1, 3, 3))  # 16 -> 32
        self.norm0 = FrameNorm(g, c0)
        self.conv0 = CausalConv3d(c0, c0, (1, 3, 3))
        self.norm_out = FrameNorm(g, c0)
        self.out = CausalConv3d(c0, 12, (1, 3, 3))  # 32 -> 64 by depth_to_space

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, L + 1, T', h, w) -> frames (B, 3, T, H, W), unbounded (trained towards [-1, 1])."""
        h = self.res2(self.inp(z))
        h = self.res1(depth_to_time(self.up_t1(F.silu(h))))  # (B, c1, 2T'-1, h, w)
        h = depth_to_time(self.up_t2(F.silu(h)))  # (B, c1, T, h, w)
        h = depth_to_space(self.up_s(F.silu(h)))  # (B, c0, T, 2h, 2w)
        h = h + self.conv0(F.silu(self.norm0(h)))
        return depth_to_space(self.out(F.silu(self.norm_out(h))))  # (B, 3, T, H, W)


class Scorer(nn.Module):
    def __init__(self, arch: TokenizerArch):
        super().__init__()
        c2 = arch.channels[2]
        # The encoder's features grow in scale as it learns; normalising them first keeps the
        # scorer's regression from chasing that drift (its loss blew up without it).
        self.norm = FrameNorm(arch.groups, c2)
        self.conv = CausalConv3d(c2, arch.scorer_channels, (3, 3, 3))
        self.head = nn.Conv3d(arch.scorer_channels, 1, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # (B, c2, T', h, w)
        return self.head(F.silu(self.conv(self.norm(feats))))[:, 0]  # (B, T', h, w) logits


class VideoTokenizer(nn.Module):
    def __init__(self, arch: TokenizerArch = TokenizerArch()):
        super().__init__()
        self.arch = arch
        self.encoder = Encoder(arch)
        self.fsq = FSQ(levels=list(arch.levels))
        self.decoder = Decoder(arch)
        self.scorer = Scorer(arch)
        # What the decoder sees at a dropped token's place (learned; the flag channel marks it too).
        self.dropped = nn.Parameter(torch.zeros(len(arch.levels)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, 3, T, H, W) in [-1, 1] -> (codes (B, L, T', h, w), indices (B, T', h, w), score logits)."""
        latent, feats = self.encoder(x)
        codes, indices = self.fsq(latent)
        logits = self.scorer(feats.detach())
        return codes, indices, logits

    def decode(self, codes: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, L, T', h, w); keep (B, T', h, w) in {0, 1} or None for all tokens."""
        if keep is None:
            keep = torch.ones_like(codes[:, 0])
        keep = keep.unsqueeze(1).to(codes.dtype)  # (B, 1, T', h, w)
        dropped = self.dropped.view(1, -1, 1, 1, 1)
        z = torch.cat([codes * keep + dropped * (1 - keep), 1 - keep], dim=1)  # (B, L + 1, T', h, w)
        return self.decoder(z)

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, T', h, w) -> codes (B, L, T', h, w)."""
        return self.fsq.indices_to_codes(indices.long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes, _, _ = self.encode(x)
        return self.decode(codes)


def token_footprint_mean(values: torch.Tensor) -> torch.Tensor:
    """Average a per-pixel map over each latent token's footprint.

    values (B, T, H, W) -> (B, T', h, w). Latent 0 covers frame 0; latent j >= 1 covers frames
    4j-3 .. 4j (the frames it was the first to see); spatially each token covers 4x4 pixels.
    """
    B, T, H, W = values.shape
    pooled = F.avg_pool2d(values.reshape(B * T, 1, H, W), SPATIAL_DOWN).reshape(B, T, H // 4, W // 4)
    first = pooled[:, :1]
    rest = pooled[:, 1:].reshape(B, (T - 1) // TEMPORAL_DOWN, TEMPORAL_DOWN, H // 4, W // 4).mean(2)
    return torch.cat([first, rest], dim=1)


def importance(scores: torch.Tensor, kappa: float) -> torch.Tensor:
    """Segment importance: mean of the top-kappa fraction of a clip's token scores. (B, ...) -> (B,)."""
    flat = scores.reshape(scores.shape[0], -1)
    k = max(1, int(round(kappa * flat.shape[1])))
    return flat.topk(k, dim=1).values.mean(1)
