"""`pretrain.trainer: ray`: the same training loop on Ray Train workers, with DDP.

Each of `num_workers` TorchTrainer workers runs `pretrain.train.train` as one DDP rank: it draws its
own windows (the rank is part of every draw), gradients are averaged across ranks (gloo on CPU
workers, NCCL on GPU workers), and rank 0 alone writes checkpoints, `model.pt` and metrics to the
output folder, which must be storage every worker can reach (any local folder on one machine; shared
storage on a cluster). `--resume` reads the same checkpoint as a local run: a run started locally can
continue on Ray and the other way round (same seed, same windows per rank for the same world size).

Resources are checked before anything starts: the workers ask for `cpus_per_worker` CPUs each (plus
one GPU with `use_gpu`), and a request the cluster can never satisfy fails at once with a message that
names the setting, instead of waiting forever for a placement group (see API-NOTES: a 2-CPU Ray hangs
when actors reserve every CPU). Ray Train 2's controller reserves no CPU of its own, so
`num_workers * cpus_per_worker` is the whole request; on a 2-CPU machine two workers of one CPU fit.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from lvmae.config import Config, PretrainConfig, RayConfig
from pretrain.train import MODEL, PretrainError, RunEnv, TrainResult, checkpoint_step, read_result, saved_params, train

log = logging.getLogger("lvmae.pretrain")


def requested_resources(p: PretrainConfig) -> dict[str, float]:
    """What the workers reserve in all: CPUs, and GPUs when use_gpu."""
    request = {"CPU": p.num_workers * p.cpus_per_worker}
    if p.use_gpu:
        request["GPU"] = float(p.num_workers)
    return request


def check_fits(p: PretrainConfig, cluster: dict[str, float]) -> None:
    """Raise PretrainError naming the settings when the workers cannot all be placed."""
    request = requested_resources(p)
    if request["CPU"] > cluster.get("CPU", 0):
        raise PretrainError(
            f"pretrain.num_workers={p.num_workers} x pretrain.cpus_per_worker={p.cpus_per_worker:g} asks Ray for "
            f"{request['CPU']:g} CPUs but the cluster has {cluster.get('CPU', 0):g}; lower pretrain.num_workers or "
            "pretrain.cpus_per_worker (fractions like 0.5 are allowed), or give Ray more CPUs (ray.num_cpus)")
    if "GPU" in request and request["GPU"] > cluster.get("GPU", 0):
        raise PretrainError(
            f"pretrain.use_gpu=true with pretrain.num_workers={p.num_workers} asks Ray for {request['GPU']:g} GPUs "
            f"but the cluster has {cluster.get('GPU', 0):g}; lower pretrain.num_workers or set pretrain.use_gpu=false")


def init_ray(ray_cfg: RayConfig) -> None:
    """Join `ray.address` (or RAY_ADDRESS), else start a local Ray with `ray.num_cpus` CPUs."""
    import ray

    if ray.is_initialized():
        return
    address = ray_cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=ray_cfg.num_cpus, include_dashboard=False)


def _mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: one DDP rank of `train`."""
    import ray.train
    import ray.train.torch

    p: PretrainConfig = config["cfg"].pretrain

    def report(row: dict[str, Any]) -> None:
        # ray.train.report is a barrier through the Train controller (about a second a call on a busy
        # 2-core machine), so report at checkpoints and at the end only; every rank decides alike.
        next_step = row["step"] + 1
        if next_step % p.checkpoint_interval == 0 or next_step == p.steps:
            ray.train.report(row)

    context = ray.train.get_context()
    env = RunEnv(device=ray.train.torch.get_device(), rank=context.get_world_rank(),
                 world_size=context.get_world_size(), wrap_model=ray.train.torch.prepare_model,
                 average=_mean_over_ranks, report=report, progress=False)
    train(config["cfg"], store_uri=config["store_uri"], out_dir=config["out_dir"], resume=config["resume"], env=env)


def run(cfg: Config, *, store_uri: str, out_dir: Path, resume: bool = False) -> TrainResult:
    """Train with Ray Train's TorchTrainer; returns what rank 0's metrics say."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    import ray

    began = time.perf_counter()
    p = cfg.pretrain
    out_dir = Path(out_dir).resolve()  # workers run in other folders
    if "://" not in store_uri:
        store_uri = str(Path(store_uri).resolve())
    start = checkpoint_step(out_dir) if resume else 0
    init_ray(cfg.ray)
    check_fits(p, ray.cluster_resources())
    resources = {"CPU": p.cpus_per_worker, **({"GPU": 1.0} if p.use_gpu else {})}
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"cfg": cfg, "store_uri": store_uri, "out_dir": str(out_dir), "resume": resume},
        scaling_config=ScalingConfig(num_workers=p.num_workers, use_gpu=p.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name="pretrain", storage_path=str(out_dir / "ray")),
    )
    log.info("Ray Train: %d workers x %s", p.num_workers, resources)
    result = trainer.fit()
    if result.error:
        raise PretrainError(f"Ray Train run failed: {result.error}") from result.error
    return read_result(out_dir, resumed_from=start, params=saved_params(out_dir / MODEL),
                       wall_s=time.perf_counter() - began)
