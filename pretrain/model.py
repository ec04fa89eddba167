"""LV-MAE: a masked autoencoder over the sequence of a long video's segment embeddings.

Shape legend (every tensor below is marked with it):
    B  windows in a batch
    T  segments in a window (padded to the longest window of the batch)
    D  input embedding width (the frozen image-text encoder's)
    W  model width: the encoder's, or the decoder's inside a transformer block
    Wd decoder width, where both appear
    H  attention heads
    V  visible segments per window, padded to the most in the batch
    S  selected (reconstructed) segments per window, padded likewise
    C  code-head outputs: one softmax per FSQ digit, sum(levels) logits in all

The encoder runs over the visible segments only and the decoder over the visible segments plus one mask
token per selected segment, so with mask ratio r and decoder fraction kappa their token counts are
(1-r)T and (1-r)T + r*kappa*T, never T. Positions come from the segment's index in its window,
computed on the fly, so windows longer than any seen in training get positions all the same. With
`rotary` (the default) every attention rotates queries and keys by position (RoPE) and nothing is added
to the tokens: a score depends only on the distance between two segments, and "look at my neighbours"
is easy to learn. Without it, sin-cos of the index is added to the tokens as in LV-MAE (on toy-world
runs, reading a hidden segment off its neighbours then took far more steps). Tokens are gathered out of
time order; attention has no causal mask, so only the positions tell order, and padded
tokens are excluded by key-padding masks given to `scaled_dot_product_attention`.

Targets are the L2-normalised embeddings of the selected segments; the loss is MSE (or 1 - cosine) on
those positions only. The optional code head predicts, for each selected segment, the distribution of
each FSQ digit over the segment's tokens (see `code_targets`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelConfig:
    """Architecture (from a preset) plus what the data fixes (D, FSQ levels) and the objective."""

    dim_in: int  # D
    width: int = 256  # encoder W
    depth: int = 6
    heads: int = 4
    decoder_width: int = 128  # Wd
    decoder_depth: int = 4
    decoder_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    loss: Literal["mse", "cosine"] = "mse"
    code_levels: tuple[int, ...] = field(default_factory=tuple)  # FSQ levels; empty = no code head
    code_weight: float = 0.1  # weight of the code loss against the reconstruction loss
    rotary: bool = True  # also rotate queries and keys by position (RoPE) in every attention

    def __post_init__(self):
        for name in ("width", "decoder_width"):
            w, h = getattr(self, name), getattr(self, name.replace("width", "heads"))
            if w % h or w % 2 or (w // h) % 2:  # even: sin-cos and rotary positions are pairs of channels
                raise ValueError(f"{name} {w} must be even and split into {h} heads of even width")
        if self.loss not in ("mse", "cosine"):
            raise ValueError(f"loss must be mse or cosine; got {self.loss!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "code_levels": list(self.code_levels)}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        # Checkpoints from before `rotary` existed were trained without it.
        return cls(**{"rotary": False, **d, "code_levels": tuple(d.get("code_levels", ()))})


# --- positions and gathers ------------------------------------------------------------------------


def sincos(index: Tensor, width: int) -> Tensor:
    """Fixed 1-D sin-cos positions of segment indices, as in MAE and LV-MAE, for any index.

    index (B, N) int -> (B, N, width) float32.
    """
    angle = sincos_angles(index, width)  # (B, N, W/2)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)  # (B, N, W)


def sincos_angles(index: Tensor, width: int) -> Tensor:
    """index * 10000^(-2i/width) for i < width/2: (B, N) int -> (B, N, width/2) float32."""
    half = width // 2
    freq = torch.exp(torch.arange(half, device=index.device, dtype=torch.float32) * (-math.log(10000.0) / half))
    return index.to(torch.float32)[..., None] * freq


def rotary_angles(index: Tensor, head_width: int) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotary angles of segment indices (RoPE): channel pair i of a head turns by
    index * 10000^(-2i/head_width), so a query-key product depends on their distance in segments.

    index (B, N) int -> cos, sin (B, 1, N, head_width/2), broadcast over heads.
    """
    angle = sincos_angles(index, head_width)[:, None]  # (B, 1, N, Wh/2)
    return angle.cos(), angle.sin()


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (B, H, N, Wh) rotated pairwise (channel i with i + Wh/2) by the angles -> (B, H, N, Wh)."""
    a, b = x.chunk(2, dim=-1)  # 2 × (B, H, N, Wh/2)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1).to(x.dtype)


def gather_index(mask: Tensor) -> tuple[Tensor, Tensor]:
    """The positions where `mask` is True, per row in time order, padded to the longest row.

    mask (B, T) bool -> index (B, N) int64, keep (B, N) bool, N = max row count. Padding entries of
    `index` point at some position of the row (harmless to gather) and have keep False.
    """
    n = mask.sum(1)
    width = int(n.max()) if mask.numel() else 0
    # Stable sort of 0 (selected) before 1 (not): selected positions first, in time order.
    index = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :width]  # (B, N)
    keep = torch.arange(width, device=mask.device) < n[:, None]  # (B, N)
    return index, keep


def take(x: Tensor, index: Tensor) -> Tensor:
    """Rows of x at index: x (B, T, ...) , index (B, N) -> (B, N, ...)."""
    expanded = index.view(*index.shape, *([1] * (x.dim() - 2))).expand(*index.shape, *x.shape[2:])
    return x.gather(1, expanded)


# --- transformer ---------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, mask: Tensor | None, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """x (B, N, W), mask (B, 1, 1, N) bool, True = a real key (None: no padding), rope: cos and sin
        (B, 1, N, W/H/2) to rotate queries and keys by (None: no rotation) -> (B, N, W)."""
        B, N, W = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)  # 3 × (B, H, N, W/H)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, N, W/H)
        return self.proj(y.transpose(1, 2).reshape(B, N, W))  # (B, N, W)


class MLP(nn.Module):
    def __init__(self, width: int, ratio: float, dropout: float):
        super().__init__()
        hidden = int(width * ratio)
        self.fc = nn.Linear(width, hidden)
        self.out = nn.Linear(hidden, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.out(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio, dropout)

    def forward(self, x: Tensor, mask: Tensor | None, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), mask, rope)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float, dropout: float, rotary: bool = False):
        super().__init__()
        self.head_width, self.rotary = width // heads, rotary
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, keep: Tensor, index: Tensor) -> Tensor:
        """x (B, N, W), keep (B, N) bool key-padding mask (True = a real token), index (B, N) the
        tokens' segment positions (for rotary attention) -> (B, N, W)."""
        # No mask at all when nothing is padded, so SDPA may pick its fastest kernel; decided once per
        # stack, as reading keep.all() waits for the GPU.
        mask = None if bool(keep.all()) else keep[:, None, None, :]  # (B, 1, 1, N): every head and query alike
        rope = rotary_angles(index, self.head_width) if self.rotary else None  # 2 × (B, 1, N, W/H/2)
        for block in self.blocks:
            x = block(x, mask, rope)
        return self.norm(x)


# --- objective --------------------------------------------------------------------------------------


def reconstruction_loss(pred: Tensor, target: Tensor, keep: Tensor, kind: str = "mse") -> Tensor:
    """Mean over the selected segments of the batch (each segment counts once, whatever its window).

    pred (B, S, D), target (B, S, D) L2-normalised, keep (B, S) bool -> scalar.
    mse: mean over D of the squared error; cosine: 1 - cosine similarity.
    """
    if kind == "mse":
        per = (pred.float() - target).pow(2).mean(-1)  # (B, S)
    else:
        per = 1.0 - F.cosine_similarity(pred.float(), target, dim=-1)  # (B, S)
    # where, not multiply: padded slots are finite here, but where keeps even a NaN out of the sum.
    return torch.where(keep, per, 0.0).sum() / keep.sum().clamp(min=1)


def code_targets(codes: Tensor, levels: tuple[int, ...]) -> Tensor:
    """Per-segment distribution of each FSQ digit over the segment's tokens.

    An FSQ index is a mixed-radix number with one digit per level (digit j = index // prod(levels[:j])
    % levels[j], vector-quantize-pytorch's order). Predicting a histogram per digit (C = sum(levels)
    classes) instead of every token's index (prod(levels) classes × t·h·w tokens) keeps the head a
    single small linear layer: cheap, and still asks which content the segment's tokens hold.

    codes (..., t, h, w) int -> (..., C) float, each digit's block summing to 1.
    """
    flat = codes.flatten(-3).long()  # (..., K) tokens
    parts, base = [], 1
    for level in levels:
        digit = (flat // base) % level  # (..., K)
        parts.append(F.one_hot(digit, level).float().mean(-2))  # (..., level)
        base *= level
    return torch.cat(parts, dim=-1)  # (..., C)


def code_loss(logits: Tensor, target: Tensor, keep: Tensor, levels: tuple[int, ...]) -> Tensor:
    """Soft-target cross-entropy per FSQ digit, averaged over digits and selected segments.
    logits, target (B, S, C), keep (B, S) bool -> scalar."""
    losses = []
    for lg, tg in zip(logits.float().split(list(levels), -1), target.split(list(levels), -1)):
        losses.append(-(tg * F.log_softmax(lg, -1)).sum(-1))  # (B, S)
    per = torch.stack(losses, -1).mean(-1)  # (B, S)
    return torch.where(keep, per, 0.0).sum() / keep.sum().clamp(min=1)


@dataclass
class Output:
    loss: Tensor  # scalar: recon + code_weight * code
    recon: Tensor  # scalar reconstruction loss
    code: Tensor | None  # scalar code loss, when the code head is on
    pred: Tensor  # (B, S, D) predictions for the selected segments
    index: Tensor  # (B, S) their positions in the window
    keep: Tensor  # (B, S) bool: real (not padding) selected slots


# --- the autoencoder -----------------------------------------------------------------------------


class LVMAE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.dim_in, cfg.width)  # D -> W; the reference ties W to D, we don't
        self.encoder = Transformer(cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.rotary)
        self.bridge = nn.Linear(cfg.width, cfg.decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(cfg.decoder_width))
        self.decoder = Transformer(
            cfg.decoder_width, cfg.decoder_depth, cfg.decoder_heads, cfg.mlp_ratio, cfg.dropout, cfg.rotary
        )
        self.head = nn.Linear(cfg.decoder_width, cfg.dim_in)
        self.code_head = nn.Linear(cfg.decoder_width, sum(cfg.code_levels)) if cfg.code_levels else None
        self.apply(self._init)
        nn.init.normal_(self.mask_token, std=0.02)

    @staticmethod
    def _init(module: nn.Module) -> None:
        # MAE's init: xavier-uniform linears with zero bias; LayerNorm keeps its default (1, 0).
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    def absolute(self, index: Tensor, width: int) -> Tensor | float:
        """Absolute positions added to the tokens: sin-cos without rotary attention, none with it (the
        rotation alone tells relative positions, so nothing depends on where the window starts)."""
        return 0.0 if self.cfg.rotary else sincos(index, width)

    def encode(self, emb: Tensor, keep: Tensor, index: Tensor) -> Tensor:
        """Encoder over the given segments. emb (B, N, D), keep (B, N) bool, index (B, N) positions
        -> (B, N, W)."""
        # Unit embeddings have entries of about 1/sqrt(D): scaled to about 1, like the sin-cos positions,
        # so that positions do not drown the content (unscaled, learning to read a hidden segment off its
        # neighbours took several times more steps in our runs).
        x = self.embed(F.normalize(emb, dim=-1) * math.sqrt(self.cfg.dim_in)) + self.absolute(
            index, self.cfg.width
        )  # (B, N, W)
        return self.encoder(x, keep, index)

    def features(self, emb: Tensor, valid: Tensor) -> Tensor:
        """Per-segment encoder outputs with nothing hidden (what downstream stages use).
        emb (B, T, D), valid (B, T) bool -> (B, T, W)."""
        index = torch.arange(emb.shape[1], device=emb.device).expand(emb.shape[:2])  # (B, T)
        return self.encode(emb, valid, index)

    def forward(
        self, emb: Tensor, valid: Tensor, hidden: Tensor, selected: Tensor, codes: Tensor | None = None
    ) -> Output:
        """emb (B, T, D); valid, hidden, selected (B, T) bool (selected ⊆ hidden ⊆ valid);
        codes (B, T, t, h, w) int when the code head is on."""
        vis_idx, vis_keep = gather_index(valid & ~hidden)  # (B, V)
        sel_idx, sel_keep = gather_index(selected)  # (B, S)
        latent = self.encode(take(emb, vis_idx), vis_keep, vis_idx)  # (B, V, W)
        return self.decode(latent, vis_idx, vis_keep, sel_idx, sel_keep, emb, codes)

    def decode(
        self,
        latent: Tensor,
        vis_idx: Tensor,
        vis_keep: Tensor,
        sel_idx: Tensor,
        sel_keep: Tensor,
        emb: Tensor,
        codes: Tensor | None = None,
    ) -> Output:
        """Decoder over the visible latents plus one mask token per selected segment, and the losses.
        latent (B, V, W), vis_idx/vis_keep (B, V), sel_idx/sel_keep (B, S), emb (B, T, D) for the targets."""
        V = vis_idx.shape[1]
        vis = self.bridge(latent) + self.absolute(vis_idx, self.cfg.decoder_width)  # (B, V, Wd)
        queries = self.mask_token.expand(*sel_idx.shape, -1) + self.absolute(
            sel_idx, self.cfg.decoder_width
        )  # (B, S, Wd)
        y = self.decoder(
            torch.cat([vis, queries], 1), torch.cat([vis_keep, sel_keep], 1), torch.cat([vis_idx, sel_idx], 1)
        )  # (B, V+S, Wd)
        y = y[:, V:]  # (B, S, Wd): only the mask tokens are read out

        pred = self.head(y)  # (B, S, D)
        target = F.normalize(take(emb, sel_idx).float(), dim=-1)  # (B, S, D)
        recon = reconstruction_loss(pred, target, sel_keep, self.cfg.loss)
        code = None
        if self.code_head is not None:
            if codes is None:
                raise ValueError("the model has a code head but no codes were given")
            code_target = code_targets(take(codes, sel_idx), self.cfg.code_levels)  # (B, S, C)
            code = code_loss(self.code_head(y), code_target, sel_keep, self.cfg.code_levels)
        loss = recon if code is None else recon + self.cfg.code_weight * code
        return Output(loss=loss, recon=recon, code=code, pred=pred, index=sel_idx, keep=sel_keep)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
