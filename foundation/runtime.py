"""Where work runs: the torch device and compute dtype, and the Ray cluster with room for the work.

Torch and Ray are imported inside the functions, so importing this module stays cheap (`lvmae --help`).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Mapping

from foundation.errors import LvmaeError

if TYPE_CHECKING:
    import torch

    from foundation.schema import RayConfig

log = logging.getLogger("lvmae")


class ResourceError(LvmaeError, RuntimeError):
    """A device or an amount of Ray resources that this machine or cluster does not have; the message
    names the settings that asked for it."""


# --- torch ---------------------------------------------------------------------------------------


def resolve_device(name: str, setting: str = "device") -> "torch.device":
    """`auto` is cuda when torch sees a GPU, else cpu; `cuda`/`cuda:N` without one is a ResourceError
    naming `setting` (e.g. "pretrain.device")."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ResourceError(f"{setting} is {name!r} but torch sees no CUDA device here; use auto or cpu")
    return device


def compute_dtype(precision: str, device: "torch.device") -> "torch.dtype":
    """`auto`: bf16 on GPU, fp32 on CPU (bf16 matmuls are slower than fp32 on most CPUs);
    else `fp32`, `bf16` or `fp16`."""
    import torch

    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: "torch.device", dtype: "torch.dtype | None" = None) -> Any:
    """`torch.autocast` to `dtype` (default: `compute_dtype("auto", device)`); off for fp32."""
    import torch

    dtype = dtype or compute_dtype("auto", device)
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)


# --- Ray -----------------------------------------------------------------------------------------


def ray_address(configured: str | None) -> str | None:
    """The cluster to join: RAY_ADDRESS when set (Ray's own rule, so a job submitted to a cluster
    lands there whatever the config file says), else the config's `ray.address`; None starts a local Ray."""
    return os.environ.get("RAY_ADDRESS") or configured or None


def init_ray(cfg: "RayConfig") -> bool:
    """Join the cluster `ray_address(cfg.address)` names, else start a local Ray with `cfg.num_cpus`
    CPUs (None: all of this machine's). Returns whether this call started Ray, so that the caller shuts
    down only a Ray it started. A Ray already running in this process is used as it is.

    Ray's own start-up and worker messages go to its log folder (`/tmp/ray/session_latest/logs`)
    unless lvmae logs at info level (`-v`): they would break up the progress bar.
    """
    import ray

    if ray.is_initialized():
        return False
    verbose = log.isEnabledFor(logging.INFO)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": verbose,
                              "logging_level": logging.INFO if verbose else logging.WARNING}
    target = ray_address(cfg.address)
    if target:
        ray.init(address=target, **kwargs)
    else:
        ray.init(num_cpus=cfg.num_cpus, **kwargs)
    return True


def check_resources(requests: Mapping[str, Mapping[str, float]], cluster: Mapping[str, float], *,
                    consequence: str = "", remedy: str = "") -> None:
    """Fail fast when work cannot all be placed at once, instead of waiting forever for it.

    `requests` maps a Ray resource ("CPU", "GPU") to what each setting asks of it, e.g.
    `{"CPU": {"extract.actors=2 x extract.actor_num_cpus=1": 2.0, "extract.decode_num_cpus=1": 1.0}}`;
    `cluster` is `ray.cluster_resources()`. The ResourceError names every setting of the first
    resource that does not fit, what they add up to, what the cluster has, then `consequence` and `remedy`.
    """
    for resource, parts in requests.items():
        need, have = sum(parts.values()), float(cluster.get(resource, 0.0))
        if need > have:
            asked = " plus ".join(f"{setting} ({amount:g})" if len(parts) > 1 else setting
                                  for setting, amount in parts.items())
            message = f"{asked} ask{'' if len(parts) > 1 else 's'} Ray for {need:g} {resource}s, but the cluster has {have:g}"
            raise ResourceError("; ".join(part for part in (message, consequence, remedy) if part))
