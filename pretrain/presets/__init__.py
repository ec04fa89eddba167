"""Model size presets: one small YAML file each in this folder, named by its stem.

A preset sets the architecture fields of `pretrain.model.ModelConfig` (widths, depths, heads, MLP
ratio, rotary attention); the data fix D and the FSQ levels, the config fixes the loss. `pretrain.preset` names one of
these files or gives the path of another YAML file of the same form.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lvmae.foundation.errors import LvmaeError

PRESET_DIR = Path(str(resources.files(__name__)))
"""The shipped presets: package data, wherever lvmae is installed."""
ARCHITECTURE_KEYS = (
    "width",
    "depth",
    "heads",
    "decoder_width",
    "decoder_depth",
    "decoder_heads",
    "mlp_ratio",
    "dropout",
    "rotary",
)


class PresetError(LvmaeError, ValueError):
    """A preset that does not exist or does not read as one; the message names the file."""


def preset_names() -> list[str]:
    """The built-in presets, smallest first (by encoder width, then depth)."""
    presets = {p.stem: load_preset(p) for p in PRESET_DIR.glob("*.yaml")}
    return sorted(presets, key=lambda name: (presets[name]["width"], presets[name]["depth"], name))


def preset_path(name_or_path: str | Path) -> Path:
    """The YAML file of a built-in preset name, or the given file."""
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    raise PresetError(
        f"pretrain.preset {str(name_or_path)!r} is neither a built-in preset "
        f"({', '.join(sorted(p.stem for p in PRESET_DIR.glob('*.yaml')))}) nor a YAML file"
    )


def load_preset(name_or_path: str | Path) -> dict[str, Any]:
    """The architecture fields of a preset, checked for unknown and missing keys."""
    path = preset_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PresetError(f"preset {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PresetError(f"preset {path}: expected a mapping of {', '.join(ARCHITECTURE_KEYS)}")
    unknown = sorted(set(data) - set(ARCHITECTURE_KEYS))
    if unknown:
        raise PresetError(f"preset {path}: unknown keys {', '.join(unknown)}; allowed: {', '.join(ARCHITECTURE_KEYS)}")
    missing = [key for key in ARCHITECTURE_KEYS[:6] if key not in data]
    if missing:
        raise PresetError(f"preset {path}: missing {', '.join(missing)}")
    return data


def model_config(name_or_path: str | Path, *, dim_in: int, **objective: Any):
    """A `ModelConfig` from a preset plus the data's D and the objective fields (loss, code_levels,
    code_weight)."""
    from lvmae.pretrain.model import ModelConfig

    try:
        return ModelConfig(dim_in=dim_in, **load_preset(name_or_path), **objective)
    except (TypeError, ValueError) as exc:
        raise PresetError(f"preset {preset_path(name_or_path)}: {exc}") from None
