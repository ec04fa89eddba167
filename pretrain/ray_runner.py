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

On a cluster (`placement: spread` puts one worker on each node) a worker can be lost with its node.
Ray Train's failure handling (`max_failures`) then starts every worker again and calls the loop
anew. Rank 0 records every start of the workers (this run's id, the step it begins at, the node of
each rank) in `ray_attempts.json` beside the metrics, so a start that finds its own run there is a
restart: it resumes from `checkpoint.pt` exactly as `--resume` does, and since batches are a pure
function of the step, the losses after a restart are those of a run that never stopped. (Ray Train's
own checkpoints are not used for this: one reported a moment before a node died was seen to be lost
with it, and the restarted workers got none.)
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from lvmae.foundation.files import atomic_write_json
from lvmae.foundation.runtime import check_fits_a_node, check_resources, init_ray, live_nodes, ray_node_id
from lvmae.foundation.schema import PretrainConfig, RayConfig
from lvmae.pretrain.checkpoint import (
    MODEL,
    PretrainError,
    TrainResult,
    check_new_run,
    checkpoint_step,
    read_result,
    saved_params,
)
from lvmae.pretrain.train import RunEnv, train

log = logging.getLogger("lvmae.pretrain")

ATTEMPTS = "ray_attempts.json"
"""In the output folder: this run's id and every start of its workers (`from_step`, `nodes` by rank)."""


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


def per_worker(p: PretrainConfig) -> dict[str, float]:
    """What one worker reserves on its node (Ray Train's `resources_per_worker`)."""
    return {"CPU": p.cpus_per_worker, **({"GPU": 1.0} if p.use_gpu else {})}


def worker_unit(p: PretrainConfig) -> dict[str, dict[str, float]]:
    """What one worker asks of the node it runs on, by the settings that size it."""
    gpu = " with pretrain.use_gpu=true" if p.use_gpu else ""
    return {f"pretrain.cpus_per_worker={p.cpus_per_worker:g}{gpu}": per_worker(p)}


def _mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def _gather(value: Any) -> list[Any]:
    """`value` of every rank, in rank order; a barrier too."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def _record_attempt(out_dir: Path, run: str, from_step: int, nodes: list[str]) -> None:
    attempts = [*read_attempts(out_dir, run), {"from_step": from_step, "nodes": nodes, "time": time.time()}]
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / ATTEMPTS, {"run": run, "attempts": attempts}, indent=1)


def read_attempts(out_dir: Path, run: str) -> list[dict[str, Any]]:
    """The starts of run `run`'s workers, first to last ([] when the file belongs to another run)."""
    path = Path(out_dir) / ATTEMPTS
    record = json.loads(path.read_text()) if path.exists() else {}
    return record.get("attempts", []) if record.get("run") == run else []


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: one DDP rank of `train`; after a restart, it resumes the run."""
    import ray.train
    import ray.train.torch

    p: PretrainConfig = config["pretrain"]
    run, out_dir = config["run"], Path(config["out_dir"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    # Every rank looks before rank 0 writes (the gather is the barrier); rank 0's view decides.
    ranks = _gather((ray_node_id(), bool(read_attempts(out_dir, run))))
    resume = config["resume"] or ranks[0][1]
    if rank == 0:
        _record_attempt(out_dir, run, checkpoint_step(out_dir) if resume else 0, [node for node, _ in ranks])

    def report(row: dict[str, Any]) -> None:
        # ray.train.report is a barrier through the Train controller (about a second a call on a busy
        # 2-core machine), so report at checkpoints and at the end only; every rank decides alike.
        next_step = row["step"] + 1
        if next_step % p.checkpoint_interval == 0 or next_step == p.steps:
            ray.train.report(row)

    env = RunEnv(
        device=ray.train.torch.get_device(),
        rank=rank,
        world_size=context.get_world_size(),
        wrap_model=ray.train.torch.prepare_model,
        average=_mean_over_ranks,
        report=report,
        progress=False,
    )
    train(p, store_uri=config["store_uri"], out_dir=out_dir, resume=resume, force=config["force"], env=env)


def run(
    p: PretrainConfig, ray_cfg: RayConfig, *, store_uri: str, out_dir: Path, resume: bool = False, force: bool = False
) -> TrainResult:
    """Train with Ray Train's TorchTrainer on the cluster `ray_cfg` names; returns what rank 0's
    metrics say."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    began = time.perf_counter()
    out_dir = Path(out_dir).resolve()  # workers run in other folders
    if "://" not in store_uri:
        store_uri = str(Path(store_uri).resolve())
    check_new_run(out_dir, resume)  # here, not in a worker, where Ray Train would try it again
    start = checkpoint_step(out_dir) if resume else 0
    run_id = uuid.uuid4().hex
    started_here = init_ray(ray_cfg)
    try:
        remedy = (
            "lower pretrain.num_workers or pretrain.cpus_per_worker (fractions like 0.5 are "
            "allowed), set pretrain.use_gpu=false, or give Ray more (ray.num_cpus)"
        )
        check_resources(worker_resources(p), ray.cluster_resources(), remedy=remedy)
        check_fits_a_node(worker_unit(p), live_nodes(), remedy=remedy)
        resources = per_worker(p)
        trainer = TorchTrainer(
            _worker,
            train_loop_config={
                "pretrain": p,
                "store_uri": store_uri,
                "out_dir": str(out_dir),
                "resume": resume,
                "force": force,
                "run": run_id,
            },
            scaling_config=ScalingConfig(
                num_workers=p.num_workers,
                use_gpu=p.use_gpu,
                resources_per_worker=resources,
                placement_strategy=p.placement.upper(),
            ),
            run_config=RunConfig(
                name="pretrain",
                storage_path=str(out_dir / "ray"),
                failure_config=FailureConfig(max_failures=p.max_failures),
            ),
        )
        log.info("Ray Train: %d workers x %s, %s", p.num_workers, resources, p.placement)
        result = trainer.fit()
    finally:
        if started_here:
            ray.shutdown()
    if result.error:
        raise PretrainError(f"Ray Train run failed: {result.error}") from result.error
    outcome = read_result(
        out_dir, resumed_from=start, params=saved_params(out_dir / MODEL), wall_s=time.perf_counter() - began
    )
    outcome.attempts = read_attempts(out_dir, run_id)
    return outcome
