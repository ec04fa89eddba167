"""A pretraining run's files: the resumable checkpoint, the final model, the metrics log.

Files in a run's output folder: `checkpoint.pt` (resumable state, rewritten atomically), `model.pt`
(final weights and what built them; what `features`, `evaluate` and `embed-sequences` load) and
`metrics.jsonl` (one row per step, plus validation rows). Everything is read with
`torch.load(weights_only=True)` and written through `foundation.files.atomic_write`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lvmae.foundation.errors import LvmaeError
from lvmae.foundation.files import atomic_write, atomic_write_text, sha256_file
from lvmae.pretrain.model import LVMAE, ModelConfig

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
METRICS = "metrics.jsonl"


class PretrainError(LvmaeError, RuntimeError):
    """A run cannot start or continue, or a run's file cannot be read; the message says which setting
    or file to change."""


# --- state files ------------------------------------------------------------------------------------


def save_state(state: dict[str, Any], path: Path) -> None:
    """A checkpoint or model file, atomically: a reader (or a resume after a kill) sees the old file
    or the new one, never half of one."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_state(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint or model file, loaded without unpickling arbitrary objects. `mmap` maps tensors
    instead of reading them, for a look at a file's small fields."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise PretrainError(f"no checkpoint at {path}") from None
    except Exception as exc:  # a truncated or foreign file: say which
        raise PretrainError(f"{path} is not a readable lvmae checkpoint: {exc}") from None


def check_new_run(out_dir: Path, resume: bool) -> None:
    """A run that does not resume must not write over another run's checkpoint."""
    if not resume and (Path(out_dir) / CHECKPOINT).exists():
        raise PretrainError(
            f"{out_dir} already holds a checkpoint; pass --resume to continue it, or choose another "
            "output folder (--out or pretrain.checkpoint_dir)"
        )


def checkpoint_step(out_dir: Path) -> int:
    """The step a resume of `out_dir` would start at (0 without a checkpoint)."""
    path = Path(out_dir) / CHECKPOINT
    return int(load_state(path, mmap=True)["step"]) if path.exists() else 0


def saved_params(path: Path) -> int:
    """Parameters of the model in a checkpoint or model file."""
    return sum(t.numel() for t in load_state(path, mmap=True)["model"].values())


def plain_settings(settings: Any) -> dict[str, Any]:
    """A config section as the plain data a checkpoint holds. Through JSON: paths and str subclasses
    (Uri) become plain str, which weights_only loading accepts."""
    return json.loads(json.dumps(vars(settings), default=str))


@dataclass
class Pretrained:
    """A frozen LV-MAE loaded from a run's file."""

    model: LVMAE
    name: str  # the weights file's name
    sha256: str  # of the weights file
    pretrain: dict[str, Any]  # the pretrain config it was trained with
    store: dict[str, Any] | None = None  # the store it was trained on (`train.store_record`), when recorded

    @property
    def max_segments(self) -> int:
        return int(self.pretrain["max_segments"])


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> Pretrained:
    """A frozen model from `model.pt` or a training `checkpoint.pt` (both hold the weights and the
    config that built them)."""
    path = Path(path)
    state = load_state(path)
    model = LVMAE(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    model.to(device).eval().requires_grad_(False)
    return Pretrained(
        model=model, name=path.name, sha256=sha256_file(path), pretrain=state["pretrain"], store=state.get("store")
    )


# --- metrics -------------------------------------------------------------------------------------------


def _metric_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, row) pairs; a torn last line, left by a process killed while writing it, is dropped."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    pairs = []
    for i, line in enumerate(lines):
        try:
            pairs.append((line, json.loads(line)))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise
    return pairs


def read_metrics(out_dir: Path) -> list[dict[str, Any]]:
    return [row for _, row in _metric_lines(Path(out_dir) / METRICS)]


def truncate_metrics(path: Path, start: int) -> None:
    """Keep the rows of steps before `start`: a killed run may have logged steps after its last
    checkpoint, which the resumed run logs again."""
    atomic_write_text(path, "".join(line + "\n" for line, row in _metric_lines(path) if row["step"] < start))


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    resumed_from: int
    params: int
    first_loss: float | None
    last_loss: float | None  # mean of the last 10 logged steps
    val_loss: float | None
    segments_per_s: float | None  # over the steps this process ran
    wall_s: float
    attempts: list[dict[str, Any]] = field(default_factory=list)  # Ray trainer: each start of the workers


def read_result(out_dir: Path, *, resumed_from: int = 0, params: int = 0, wall_s: float = 0.0) -> TrainResult:
    rows = read_metrics(out_dir)
    steps = [r for r in rows if "loss" in r]
    vals = [r for r in rows if "val_loss" in r]
    ran = [r for r in steps if r["step"] >= resumed_from]
    seconds = sum(r["step_s"] for r in ran)
    return TrainResult(
        out_dir=Path(out_dir),
        steps=steps[-1]["step"] + 1 if steps else 0,
        resumed_from=resumed_from,
        params=params,
        first_loss=steps[0]["loss"] if steps else None,
        last_loss=sum(r["loss"] for r in steps[-10:]) / len(steps[-10:]) if steps else None,
        val_loss=vals[-1]["val_loss"] if vals else None,
        segments_per_s=sum(r["segments"] for r in ran) / seconds if seconds else None,
        wall_s=wall_s,
    )
