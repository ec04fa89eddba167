"""Where work runs: the torch device and compute dtype, and the Ray cluster with room for the work.

Torch and Ray are imported inside the functions, so importing this module stays cheap (`lvmae --help`).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lvmae.foundation.errors import LvmaeError

if TYPE_CHECKING:
    import torch

    from lvmae.foundation.schema import RayConfig

log = logging.getLogger("lvmae")


class ResourceError(LvmaeError, RuntimeError):
    """A device or an amount of Ray resources that this machine or cluster does not have; the message
    names the settings that asked for it."""


# --- torch ---------------------------------------------------------------------------------------


def resolve_device(name: str, setting: str = "device") -> torch.device:
    """`auto` is cuda when torch sees a GPU, else cpu; `cuda`/`cuda:N` without one is a ResourceError
    naming `setting` (e.g. "pretrain.device")."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ResourceError(f"{setting} is {name!r} but torch sees no CUDA device here; use auto or cpu")
    return device


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """`auto`: bf16 on GPU, fp32 on CPU (bf16 matmuls are slower than fp32 on most CPUs);
    else `fp32`, `bf16` or `fp16`."""
    import torch

    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively on `device`: a GPU, or a CPU with AVX512-BF16 or AMX (oneDNN's
    own check), where a bf16 model reads half the weight bytes of an fp32 one and runs faster."""
    import torch

    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def autocast(device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """`torch.autocast` to `dtype` (default: `compute_dtype("auto", device)`); off for fp32."""
    import torch

    dtype = dtype or compute_dtype("auto", device)
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)


# --- Ray -----------------------------------------------------------------------------------------


def ray_address(configured: str | None) -> str | None:
    """The cluster to join: RAY_ADDRESS when set (Ray's own rule, so a job submitted to a cluster
    lands there whatever the config file says), else the config's `ray.address`; None starts a local Ray."""
    return os.environ.get("RAY_ADDRESS") or configured or None


def init_ray(cfg: RayConfig) -> bool:
    """Join the cluster `ray_address(cfg.address)` names, else start a local Ray with `cfg.num_cpus`
    CPUs (None: all of this machine's). Returns whether this call started Ray, so that the caller shuts
    down only a Ray it started. A Ray already running in this process is used as it is.

    Ray's own messages on this side (start-up, token authentication, Ray Data's execution plan, its
    workers' output) would break up the progress bar: unless lvmae logs at info level (`-v`) they go
    to Ray's log folder (`<session>/logs`: `lvmae-driver.log` and Ray Data's `ray-data/`), and the
    terminal shows Ray's errors only.
    """
    import ray

    if ray.is_initialized():
        return False
    verbose = log.isEnabledFor(logging.INFO)
    held = None if verbose else _hold_ray_console()
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": verbose, "logging_level": logging.INFO}
    target = ray_address(cfg.address)
    try:
        if target:
            ray.init(address=target, **kwargs)
        else:
            ray.init(num_cpus=cfg.num_cpus, **kwargs)
    finally:
        if held is not None:
            _release_to_session_log(held)
    return True


class _ErrorsOnly(logging.Filter):
    """On a console handler of Ray's: let errors through, hold back the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


RAY_LOGGERS = ("ray", "ray.data")
"""Ray's loggers with console handlers of their own (the others propagate to "ray")."""


def _quiet_consoles() -> None:
    """Ray's own console handlers (of Ray's classes: a handler someone else attached is left alone)
    show errors only."""
    for name in RAY_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            rays = type(handler).__module__.startswith("ray.")
            is_console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            if rays and is_console and not any(isinstance(f, _ErrorsOnly) for f in handler.filters):
                handler.addFilter(_ErrorsOnly())


def _hold_ray_console() -> logging.handlers.MemoryHandler:
    """Before ray.init: Ray's consoles show errors only; the "ray" logger's records wait in memory
    until the session's log folder exists."""
    import ray  # noqa: F401  (its import sets up the "ray" logger and its console handler)

    _quiet_consoles()
    held = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1, flushOnClose=False)
    logging.getLogger("ray").addHandler(held)
    return held


def _session_log_dir() -> Path:
    try:
        import ray._private.worker as worker  # the session folder has no public accessor

        node: Any = worker._global_node
        return Path(node.get_session_dir_path()) / "logs"
    except Exception:  # noqa: BLE001 - a joined cluster without a local node, or another Ray version
        return Path(tempfile.gettempdir()) / "ray" / "session_latest" / "logs"


class _SessionLog(logging.FileHandler):
    """The "ray" logger's file in the current Ray session's log folder (`lvmae-driver.log`)."""


def _release_to_session_log(held: logging.handlers.MemoryHandler) -> None:
    """After ray.init: what was held, and every later record of the "ray" logger, goes to
    `<session>/logs/lvmae-driver.log`; consoles set up since (Ray Data's) show errors only too."""
    ray_logger = logging.getLogger("ray")
    ray_logger.removeHandler(held)
    _quiet_consoles()
    # One session's log at a time: a process that starts or joins Ray again (a notebook, the tests)
    # would otherwise keep writing to every earlier session's folder, gone with its cluster.
    for earlier in [h for h in ray_logger.handlers if isinstance(h, _SessionLog)]:
        ray_logger.removeHandler(earlier)
        earlier.close()
    try:
        folder = _session_log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        to_file = _SessionLog(folder / "lvmae-driver.log", encoding="utf-8")
    except OSError:
        held.close()
        return
    to_file.setFormatter(
        logging.Formatter("%(asctime)s\t%(levelname)s %(name)s %(filename)s:%(lineno)s -- %(message)s")
    )
    ray_logger.addHandler(to_file)
    held.setTarget(to_file)
    held.flush()
    held.close()


def ray_node_id() -> str:
    """The Ray node this process runs on (a worker, an actor or a connected driver); "" outside Ray."""
    import sys

    ray = sys.modules.get("ray")  # never imports Ray: a process without it is outside Ray
    if ray is None or not ray.is_initialized():
        return ""
    return ray.get_runtime_context().get_node_id()


def live_nodes() -> list[dict[str, float]]:
    """The resources of each live node of the connected cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node["Alive"]]


def check_fits_a_node(
    units: Mapping[str, Mapping[str, float]], nodes: list[dict[str, float]], *, remedy: str = ""
) -> None:
    """One worker or actor runs on one node: a unit that no node holds waits forever for a placement,
    however much the cluster has in all (two nodes of 2 CPUs never place a 3-CPU worker).

    `units` maps the settings that size one unit to what it asks, e.g.
    `{"pretrain.cpus_per_worker=3": {"CPU": 3.0}}`; `nodes` is `live_nodes()`. The ResourceError names
    the settings, what one unit asks and the largest amount any node has."""
    for setting, need in units.items():
        if any(all(node.get(r, 0.0) >= amount for r, amount in need.items()) for node in nodes):
            continue
        asks = ", ".join(f"{amount:g} {r}" for r, amount in need.items())
        largest = ", ".join(f"{max((n.get(r, 0.0) for n in nodes), default=0.0):g} {r}" for r in need)
        message = (
            f"{setting} asks for {asks} on one node, but no node of the {len(nodes)} has that (the most: {largest})"
        )
        raise ResourceError("; ".join(part for part in (message, remedy) if part))


def check_resources(
    requests: Mapping[str, Mapping[str, float]],
    cluster: Mapping[str, float],
    *,
    consequence: str = "",
    remedy: str = "",
) -> None:
    """Fail fast when work cannot all be placed at once, instead of waiting forever for it.

    `requests` maps a Ray resource ("CPU", "GPU") to what each setting asks of it, e.g.
    `{"CPU": {"extract.actors=2 x extract.actor_num_cpus=1": 2.0, "extract.decode_num_cpus=1": 1.0}}`;
    `cluster` is `ray.cluster_resources()`. The ResourceError names every setting of the first
    resource that does not fit, what they add up to, what the cluster has, then `consequence` and `remedy`.
    """
    for resource, parts in requests.items():
        need, have = sum(parts.values()), float(cluster.get(resource, 0.0))
        if need > have:
            asked = " plus ".join(
                f"{setting} ({amount:g})" if len(parts) > 1 else setting for setting, amount in parts.items()
            )
            message = (
                f"{asked} ask{'' if len(parts) > 1 else 's'} Ray for {need:g} {resource}s, but the cluster has {have:g}"
            )
            raise ResourceError("; ".join(part for part in (message, consequence, remedy) if part))
