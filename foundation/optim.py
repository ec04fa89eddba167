"""The learning-rate schedule and weight-decay groups every fit in lvmae uses."""

from __future__ import annotations

import math
from typing import Any


def warmup_cosine(step: int, *, warmup: int, steps: int, floor: float = 0.0) -> float:
    """The learning-rate factor at `step`: linear warmup over `warmup` steps (never 0 at step 0), then
    cosine decay from 1 to `floor` at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def decay_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight matrices decayed; biases, norm gains, learned tokens (all of
    fewer than 2 dims), token embeddings and CLIP's temperature not (decaying those only hurts: MAE,
    CLIP)."""
    decay: list[Any] = []
    rest: list[Any] = []
    for name, param in model.named_parameters():
        no_decay = param.ndim < 2 or "embedding" in name or "logit_scale" in name
        (rest if no_decay else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
