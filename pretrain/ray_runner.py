"""`pretrain.trainer: ray`: the same training loop on Ray Train workers, with DDP.

Each of `num_workers` TorchTrainer workers runs `pretrain.train.train` as one DDP rank: it draws its
own windows (the rank is part of every draw), gradients are averaged across ranks (gloo on CPU
workers, NCCL on GPU workers), and rank 0 alone writes checkpoints, `model.pt` and metrics to the
output folder, which must be storage every worker can reach (any local folder on one machine; shared
storage on a cluster). `--resume` reads the same checkpoint as a local run: a run started locally can
continue on Ray and the other way round (same seed, same windows per rank for the same world size).

Resources are checked before anything starts: the workers ask for `cpus_per_worker` CPUs each (plus
one GPU with `use_gpu`), and a request the cluster can never satisfy fails at once with a message that
names the setting, instead of waiting forever for a placement group (a 2-CPU Ray was seen to hang when
actors reserved every CPU). Ray Train 2's controller reserves no CPU of its own, so
`num_workers * cpus_per_worker` is the whole request; on a 2-CPU machine two workers of one CPU fit.
Ray is started (or joined: RAY_ADDRESS, then `ray.address`) by `foundation.runtime.init_ray`, and shut
down afterwards only when this run started it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from foundation.runtime import check_resources, init_ray
from foundation.schema import PretrainConfig, RayConfig
from pretrain.checkpoint import MODEL, PretrainError, TrainResult, checkpoint_step, read_result, saved_params
from pretrain.train import RunEnv, train

log = logging.getLogger("lvmae.pretrain")


def worker_resources(p: PretrainConfig) -> dict[str, dict[str, float]]:
    """What the workers reserve in all, by Ray resource and the settings that ask for it."""
    request = {
        "CPU": {
            f"pretrain.num_workers={p.num_workers} x pretrain.cpus_per_worker={p.cpus_per_worker:g}": p.num_workers
            * p.cpus_per_worker
        }
    }
    if p.use_gpu:
        request["GPU"] = {f"pretrain.use_gpu=true with pretrain.num_workers={p.num_workers}": float(p.num_workers)}
    return request


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

    p: PretrainConfig = config["pretrain"]

    def report(row: dict[str, Any]) -> None:
        # ray.train.report is a barrier through the Train controller (about a second a call on a busy
        # 2-core machine), so report at checkpoints and at the end only; every rank decides alike.
        next_step = row["step"] + 1
        if next_step % p.checkpoint_interval == 0 or next_step == p.steps:
            ray.train.report(row)

    context = ray.train.get_context()
    env = RunEnv(
        device=ray.train.torch.get_device(),
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        wrap_model=ray.train.torch.prepare_model,
        average=_mean_over_ranks,
        report=report,
        progress=False,
    )
    train(
        p,
        store_uri=config["store_uri"],
        out_dir=config["out_dir"],
        resume=config["resume"],
        force=config["force"],
        env=env,
    )


def run(
    p: PretrainConfig, ray_cfg: RayConfig, *, store_uri: str, out_dir: Path, resume: bool = False, force: bool = False
) -> TrainResult:
    """Train with Ray Train's TorchTrainer on the cluster `ray_cfg` names; returns what rank 0's
    metrics say."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    began = time.perf_counter()
    out_dir = Path(out_dir).resolve()  # workers run in other folders
    if "://" not in store_uri:
        store_uri = str(Path(store_uri).resolve())
    start = checkpoint_step(out_dir) if resume else 0
    started_here = init_ray(ray_cfg)
    try:
        check_resources(
            worker_resources(p),
            ray.cluster_resources(),
            remedy="lower pretrain.num_workers or pretrain.cpus_per_worker (fractions like 0.5 are "
            "allowed), set pretrain.use_gpu=false, or give Ray more (ray.num_cpus)",
        )
        resources = {"CPU": p.cpus_per_worker, **({"GPU": 1.0} if p.use_gpu else {})}
        trainer = TorchTrainer(
            _worker,
            train_loop_config={
                "pretrain": p,
                "store_uri": store_uri,
                "out_dir": str(out_dir),
                "resume": resume,
                "force": force,
            },
            scaling_config=ScalingConfig(num_workers=p.num_workers, use_gpu=p.use_gpu, resources_per_worker=resources),
            run_config=RunConfig(name="pretrain", storage_path=str(out_dir / "ray")),
        )
        log.info("Ray Train: %d workers x %s", p.num_workers, resources)
        result = trainer.fit()
    finally:
        if started_here:
            ray.shutdown()
    if result.error:
        raise PretrainError(f"Ray Train run failed: {result.error}") from result.error
    return read_result(
        out_dir, resumed_from=start, params=saved_params(out_dir / MODEL), wall_s=time.perf_counter() - began
    )
