"""Which segments the encoder does not see, and which hidden segments the decoder reconstructs.

Shape letters: `B` windows in a batch, `T` segments in a window (padded to the longest), `D` embedding
width.

Conventions shared by every function here:

- A mask is a `(B, T)` bool tensor; **True = hidden** (encoder masks) or **True = selected for
  reconstruction** (decoder masks).
- `valid` is the `(B, T)` key-padding mask of a ragged batch: True = a real segment, False = padding.
  Padding is never hidden and never selected.
- Counts are exact per window: an encoder mask hides `round(ratio * n_valid)` segments, kept between 0
  and `n_valid - 1` so the encoder always sees at least one segment; a decoder mask selects
  `round(kappa * n_hidden)` hidden segments, at least one when anything is hidden, so every window
  that hides something has a target. `round` is torch's, half to even.
- Functions are pure: randomness comes only from the `generator` passed in, so the same generator
  state gives the same mask.

All of them reduce to one step, `select_top`: give every segment a score and take the `count` highest
per window (MAE's "sort noise" with per-window counts); encoder masks hide what it selects, decoder
masks reconstruct it. The strategies differ only in the score.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

SEMANTIC_DIRECTIONS = ("dissimilar", "similar")
ENCODER_MASKS = ("random", "semantic", "adaptive", "span")
SPAN_LENGTHS = (5, 20)  # the span mask's pieces: 5 to 20 consecutive segments


def counts(n: Tensor, fraction: float) -> Tensor:
    """`round(fraction * n)` per window, as int64. `n (B,)` int."""
    return torch.round(n.to(torch.float64) * fraction).to(torch.int64)


def select_top(score: Tensor, count: Tensor, allowed: Tensor) -> Tensor:
    """Mark the `count[b]` highest-scoring allowed positions of each row.

    score (B, T) float, count (B,) int with count[b] <= allowed[b].sum(), allowed (B, T) bool.
    Returns (B, T) bool. Ties keep time order (stable sort), so equal scores pick earlier segments.
    """
    score = score.masked_fill(~allowed, float("-inf"))  # disallowed positions rank last
    order = score.argsort(dim=1, descending=True, stable=True)  # (B, T) positions, best first
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(score.shape[1], device=score.device).expand_as(order))
    return rank < count[:, None]


def _encoder_count(valid: Tensor, ratio: float) -> Tensor:
    """Segments to hide per window: round(ratio * n_valid), leaving at least one visible."""
    n = valid.sum(1)
    return torch.minimum(counts(n, ratio), (n - 1).clamp(min=0))


def hidden_count(n: int, ratio: float) -> int:
    """How many segments every encoder mask hides in a window of `n` segments (0: it can hide none)."""
    return int(_encoder_count(torch.ones(1, n, dtype=torch.bool), ratio)[0])


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    # Drawn on the CPU so a seeded CPU generator gives the same mask whatever the device.
    return torch.rand(shape, generator=generator).to(device)


# --- encoder masks ---------------------------------------------------------------------------------


def random_mask(valid: Tensor, ratio: float, *, generator: torch.Generator | None = None) -> Tensor:
    """MAE's random masking: hide `round(ratio * n_valid)` segments of each window uniformly at random.

    valid (B, T) bool -> (B, T) bool, True = hidden.
    """
    noise = _uniform(valid.shape, generator, valid.device)
    return select_top(noise, _encoder_count(valid, ratio), valid)


def consecutive_similarity(emb: Tensor, valid: Tensor) -> Tensor:
    """Cosine similarity of each segment to the one before it; the first segment of a window, which
    has none, takes its similarity to the next one.

    emb (B, T, D), valid (B, T) bool -> (B, T) float in [-1, 1]. Windows are right-padded, so a valid
    segment's neighbours inside the window are valid too.
    """
    if emb.shape[1] < 2:
        return torch.ones(valid.shape, device=emb.device)
    unit = F.normalize(emb.float(), dim=-1)
    sim = (unit[:, 1:] * unit[:, :-1]).sum(-1)  # (B, T-1): segment t+1 against segment t
    return torch.cat([sim[:, :1], sim], dim=1)  # (B, T)


def semantic_mask(
    emb: Tensor,
    ratio: float,
    *,
    valid: Tensor | None = None,
    direction: str = "dissimilar",
    generator: torch.Generator | None = None,
) -> Tensor:
    """LV-MAE's semantic masking: rank segments by cosine similarity to the previous segment and hide
    the `round(ratio * n_valid)` at one end of that ranking.

    emb (B, T, D), valid (B, T) bool (default: all valid) -> (B, T) bool, True = hidden.

    direction:
      "dissimilar" (default) hides the segments least like their predecessor: the moments where the
          video changes (a new step, a cut). The model must infer what comes next from the wider
          context, which is the long-range structure pretraining is for; copying a neighbour does not
          solve it.
      "similar" hides the segments most like their predecessor: the redundant ones. Each hidden
          segment then sits next to a near-copy, so the task is nearly solved by copying, and the
          segments that carry the change are always visible.

    Without a generator the ranking is deterministic (ties keep time order). With one, near-ties are
    broken at random: a uniform jitter of 1e-6 is added to the similarities, so within a still scene
    (similarities equal up to noise) the hidden segments vary from draw to draw.
    """
    if direction not in SEMANTIC_DIRECTIONS:
        raise ValueError(f"semantic direction must be one of {SEMANTIC_DIRECTIONS}; got {direction!r}")
    valid = torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device) if valid is None else valid
    sim = consecutive_similarity(emb, valid)
    if generator is not None:
        sim = sim + 1e-6 * _uniform(sim.shape, generator, sim.device)
    score = -sim if direction == "dissimilar" else sim
    return select_top(score, _encoder_count(valid, ratio), valid)


def adaptive_mask(
    importance: Tensor,
    ratio: float,
    *,
    valid: Tensor | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """Importance-weighted masking: hide `round(ratio * n_valid)` segments, sampled without replacement
    with probability proportional to `exp(z / temperature)`, where `z` is the importance standardised
    over the window's valid segments. More important segments are hidden more often, but every segment
    can be hidden, so the encoder still learns from unimportant ones.

    importance (B, T) float, valid (B, T) bool (default: all valid) -> (B, T) bool, True = hidden.

    Sampling uses the Gumbel-top-k trick: the top-k of `log p + Gumbel noise` is a draw of k items
    without replacement with probabilities p. Standardising makes the temperature mean the same thing
    whatever the scale of the tokenizer's scores.
    """
    valid = torch.ones(importance.shape, dtype=torch.bool, device=importance.device) if valid is None else valid
    imp = importance.float().masked_fill(~valid, 0.0)
    n = valid.sum(1, keepdim=True).clamp(min=1)
    mean = imp.sum(1, keepdim=True) / n
    var = ((imp - mean) ** 2).masked_fill(~valid, 0.0).sum(1, keepdim=True) / n
    z = (imp - mean) / (var.sqrt() + 1e-6)  # (B, T)
    u = _uniform(importance.shape, generator, importance.device).clamp(1e-12, 1 - 1e-12)
    gumbel = -torch.log(-torch.log(u))
    return select_top(z / temperature + gumbel, _encoder_count(valid, ratio), valid)


def span_mask(
    valid: Tensor,
    ratio: float,
    *,
    lengths: tuple[int, int] = SPAN_LENGTHS,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Masking in time spans (VideoMAE's answer to redundant neighbours, on the segment axis): hide
    `round(ratio * n_valid)` segments of each window as runs of consecutive segments, so a hidden
    segment's neighbours are often hidden too and copying the nearest visible one reaches far.

    valid (B, T) bool -> (B, T) bool, True = hidden.

    Each window is cut into consecutive pieces of `lengths[0]`..`lengths[1]` segments (uniform; what
    is left at the end is a piece of its own, or joins the last one when shorter than `lengths[0]`),
    and whole pieces are hidden in a random order until the count is
    reached; the last piece hidden is cut to its first segments to make the count exact. Two hidden
    pieces that touch make one longer run, and the cut piece may be shorter than `lengths[0]`.
    """
    lo, hi = lengths
    if not 1 <= lo <= hi:
        raise ValueError(f"span lengths must be 1 <= min <= max; got {list(lengths)}")
    B, T = valid.shape
    n_valid = valid.sum(1).tolist()
    score = torch.zeros(B, T)
    for b in range(B):
        n = int(n_valid[b])
        if n == 0:
            continue
        # Enough pieces to cover the window even if every one is as short as allowed.
        sizes = torch.randint(lo, hi + 1, (n // lo + 1,), generator=generator)
        edges = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)])
        piece = torch.searchsorted(edges, torch.arange(n), right=True) - 1  # (n,) piece of each segment
        last = int(piece[-1])
        if last > 0 and int((piece == last).sum()) < lo:  # a leftover shorter than a piece joins the one before
            piece[piece == last] = last - 1
        order = torch.rand(len(sizes), generator=generator).argsort()  # a random order of the pieces
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order))
        offset = torch.arange(n) - edges[piece]  # position inside the piece
        # Pieces in their random order, each from its start: the top `count` are whole pieces plus a prefix.
        score[b, :n] = -(rank[piece] * (T + 1) + offset).to(score.dtype)
    return select_top(score.to(valid.device), _encoder_count(valid, ratio), valid)


# --- decoder masks: which hidden segments the decoder reconstructs ----------------------------------


def _decoder_count(hidden: Tensor, kappa: float) -> Tensor:
    n = hidden.sum(1)
    return torch.where(n > 0, counts(n, kappa).clamp(min=1), torch.zeros_like(n))


def decoder_all(
    hidden: Tensor, importance: Tensor | None = None, kappa: float = 1.0, *, generator: torch.Generator | None = None
) -> Tensor:
    """LV-MAE: reconstruct every hidden segment. hidden (B, T) bool -> (B, T) bool, True = selected.
    `importance`, `kappa` and `generator` are accepted for a common signature and ignored."""
    return hidden.clone()


def decoder_random(
    hidden: Tensor, importance: Tensor | None = None, kappa: float = 0.15, *, generator: torch.Generator | None = None
) -> Tensor:
    """Reconstruct `round(kappa * n_hidden)` hidden segments chosen uniformly at random.
    hidden (B, T) bool -> (B, T) bool, True = selected; a subset of `hidden`."""
    noise = _uniform(hidden.shape, generator, hidden.device)
    return select_top(noise, _decoder_count(hidden, kappa), hidden)


def decoder_adaptive(
    hidden: Tensor, importance: Tensor, kappa: float = 0.15, *, generator: torch.Generator | None = None
) -> Tensor:
    """LVMAE's adaptive decoder masking: reconstruct the `round(kappa * n_hidden)` most important hidden
    segments (ties: earlier first). hidden (B, T) bool, importance (B, T) float -> (B, T) bool,
    True = selected; a subset of `hidden`. Deterministic; `generator` is ignored."""
    return select_top(importance.float(), _decoder_count(hidden, kappa), hidden)


def decoder_mix(
    hidden: Tensor, importance: Tensor, kappa: float = 0.15, *, generator: torch.Generator | None = None
) -> Tensor:
    """Adaptive plus a random share: the `round(kappa * n_hidden)` most important hidden segments, and as
    many again drawn uniformly from the other hidden ones. Every hidden segment can then be a query,
    so the decoder also learns to answer for unimportant ones, at twice adaptive's decoder tokens.
    hidden (B, T) bool, importance (B, T) float -> (B, T) bool, True = selected; a subset of `hidden`."""
    top = decoder_adaptive(hidden, importance, kappa)
    rest = hidden & ~top
    count = torch.minimum(_decoder_count(hidden, kappa), rest.sum(1))
    noise = _uniform(hidden.shape, generator, hidden.device)
    return top | select_top(noise, count, rest)


# --- dispatch by config name --------------------------------------------------------------------------

DECODER_MASKS: dict[str, Callable[..., Tensor]] = {
    "all": decoder_all,
    "random": decoder_random,
    "adaptive": decoder_adaptive,
    "mix": decoder_mix,
}


def encoder_mask(
    kind: str,
    *,
    emb: Tensor,
    importance: Tensor,
    valid: Tensor,
    ratio: float,
    generator: torch.Generator | None,
    direction: str = "dissimilar",
    span: tuple[int, int] = SPAN_LENGTHS,
) -> Tensor:
    """The encoder mask named by `pretrain.encoder_mask`. emb (B, T, D), importance (B, T), valid (B, T)
    -> (B, T) bool, True = hidden. `direction` is the semantic mask's, `span` the span mask's lengths."""
    if kind == "random":
        return random_mask(valid, ratio, generator=generator)
    if kind == "semantic":
        return semantic_mask(emb, ratio, valid=valid, direction=direction, generator=generator)
    if kind == "adaptive":
        return adaptive_mask(importance, ratio, valid=valid, generator=generator)
    if kind == "span":
        return span_mask(valid, ratio, lengths=span, generator=generator)
    raise ValueError(f"unknown encoder mask {kind!r}; expected {', '.join(ENCODER_MASKS)}")


def decoder_mask(
    kind: str, *, hidden: Tensor, importance: Tensor, kappa: float, generator: torch.Generator | None
) -> Tensor:
    """The decoder mask named by `pretrain.decoder_mask`. hidden, importance (B, T) -> (B, T) bool,
    True = selected for reconstruction."""
    if kind not in DECODER_MASKS:
        raise ValueError(f"unknown decoder mask {kind!r}; expected {', '.join(DECODER_MASKS)}")
    return DECODER_MASKS[kind](hidden, importance, kappa, generator=generator)
