"""Extraction throughput: the Ray pipeline against its stages and a plain loop, on the same videos.

    python -m bench.extract [--quick] [--out FILE]

(a) `pipeline`: `lvmae extract` on Ray (decode tasks feeding an encoder actor); (b) `decode`: decoding
and segmenting only; (c) `encode`: both frozen models on pre-decoded segments only; (d) `naive`: one
process, decode a video then encode it, one video at a time (the local runner). All four side by side
on one generated toy-world corpus with the shipped encoder and tokenizer. Rates are segments per
second; video-seconds per second is segments/s times the segment length.

Start-up costs are counted alike: the pipeline's time includes its encoder actor's start (a new
process that imports torch and open_clip and loads both models), so (d) runs as its own fresh process
too, timed from its start to its exit (`naive_segments_per_s`). The same loop run inside this process,
where those imports are already done, is `naive_in_process_segments_per_s`, with its own ratio.
Starting a local Ray instance is timed apart (`ray_startup_s`; on a cluster it is already running) and
`pipeline_with_startup_segments_per_s` adds it back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import emit, machine, parse_args
from lvmae.extract.encoder import encoder_image_size
from lvmae.extract.runner import Models, run_extract
from lvmae.extract.work import FrozenModels, VideoJob, segment_batches
from lvmae.foundation.runtime import init_ray
from lvmae.foundation.schema import Config, load_config
from lvmae.store import Store
from lvmae.toyworld.generate import CorpusSpec, generate


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def extract(cfg: Config, inputs: Path, store: str, runner: str):
    return run_extract(cfg.extract, Models.of(cfg), cfg.ray, inputs=inputs, store_uri=store, runner=runner)


def naive_child(sets: list[str], inputs: str, store: str) -> None:
    """(d) in a fresh process: what `lvmae extract --runner local` costs, start-up included."""
    extract(load_config(None, sets, use_default_file=False), Path(inputs), store, "local")


def naive_fresh_process(sets: list[str], inputs: Path, store: Path) -> float:
    """Seconds from starting `naive_child` in a new interpreter to its exit."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bench.extract", "--naive-child", json.dumps([sets, str(inputs), str(store)])],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--naive-child"]:
        naive_child(*json.loads(argv[1]))
        return {}
    args = parse_args(__doc__.split("\n\n")[0], argv)
    spec = (
        CorpusSpec(videos=4, minutes=(0.5, 0.5), seed=77)
        if args.quick
        else CorpusSpec(videos=8, minutes=(8.0, 8.0), seed=77)
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = generate(spec, tmp / "corpus", progress=False)
        inputs = tmp / "corpus" / "videos.parquet"
        gpu = device_name() != "cpu"
        # On a 2-CPU machine the encoder actor takes 1.5 CPUs (2 torch threads) and decoding 0.5:
        # toy-world decoding is light, the models are not. On a GPU node: one actor per GPU.
        sets = (
            ["extract.actor_num_gpus=1", "extract.actor_num_cpus=4", "extract.decode_num_cpus=1"]
            if gpu
            else ["extract.actor_num_cpus=1.5", "extract.decode_num_cpus=0.5"]
        )
        cfg = load_config(
            None, sets + ["extract.shard_videos=2", f"paths.store={tmp / 'store'}"], use_default_file=False
        )
        seg = cfg.segment
        size = encoder_image_size(cfg.encoder)
        rows = corpus.videos.to_pylist()
        jobs = [VideoJob(r["id"], str(tmp / "corpus" / r["uri"]), "0") for r in rows]

        started = time.perf_counter()
        batches = [b for job in jobs for b in segment_batches(job, seg, size, cfg.extract.chunk_segments)]
        decode_s = time.perf_counter() - started
        n_segments = int(sum((~b["end"]).sum() for b in batches))
        print(f"decode only: {n_segments} segments in {decode_s:.1f} s", flush=True)

        models = FrozenModels(cfg.encoder, cfg.tokenizer)
        started = time.perf_counter()
        for b in batches:
            models(b)
        encode_s = time.perf_counter() - started
        print(f"encode only: {encode_s:.1f} s", flush=True)
        del batches

        naive_s = naive_fresh_process(sets + ["extract.shard_videos=2"], inputs, tmp / "naive")
        naive_segments = sum(Store.open(tmp / "naive").videos().column("n_segments").to_pylist())
        print(f"naive loop, own process: {naive_s:.1f} s", flush=True)
        started = time.perf_counter()
        naive = extract(cfg, inputs, str(tmp / "naive-in-process"), "local")
        naive_in_process_s = time.perf_counter() - started
        print(f"naive loop, in this process: {naive_in_process_s:.1f} s", flush=True)

        # Ray's own start-up (a local cluster here; already running on a real cluster) is timed apart;
        # the pipeline's time includes everything of the job itself, actor start and model loading too.
        import ray

        started = time.perf_counter()
        init_ray(cfg.ray)
        ray_startup_s = time.perf_counter() - started
        try:
            started = time.perf_counter()
            pipe = extract(cfg, inputs, str(tmp / "ray"), "ray")
            pipe_s = time.perf_counter() - started
        finally:
            ray.shutdown()
        print(f"ray pipeline: {pipe_s:.1f} s (+ {ray_startup_s:.1f} s to start a local Ray)", flush=True)
        assert naive_segments == naive.segments == pipe.segments == n_segments, (
            naive_segments,
            naive.segments,
            pipe.segments,
            n_segments,
        )

    rates = {
        "pipeline": n_segments / pipe_s,
        "decode": n_segments / decode_s,
        "encode": n_segments / encode_s,
        "naive": n_segments / naive_s,
        "naive_in_process": n_segments / naive_in_process_s,
        "pipeline_with_startup": n_segments / (pipe_s + ray_startup_s),
    }
    result = {
        "pipeline_segments_per_s": round(rates["pipeline"], 2),
        "decode_segments_per_s": round(rates["decode"], 2),
        "encode_segments_per_s": round(rates["encode"], 2),
        "naive_segments_per_s": round(rates["naive"], 2),
        "ratio_vs_naive": round(rates["pipeline"] / rates["naive"], 3),
        "naive_in_process_segments_per_s": round(rates["naive_in_process"], 2),
        "ratio_vs_naive_in_process": round(rates["pipeline"] / rates["naive_in_process"], 3),
        "ratio_with_ray_startup_vs_naive": round(rates["pipeline_with_startup"] / rates["naive"], 3),
        "ratio_vs_slowest_stage": round(rates["pipeline"] / min(rates["decode"], rates["encode"]), 3),
        "device": device_name(),
        "ray_startup_s": round(ray_startup_s, 2),
        "pipeline_with_startup_segments_per_s": round(rates["pipeline_with_startup"], 2),
        "pipeline_video_s_per_s": round(rates["pipeline"] * seg.seconds, 1),
        "naive_video_s_per_s": round(rates["naive"] * seg.seconds, 1),
        "segments": n_segments,
        "videos": len(rows),
        "video_seconds": corpus.video_seconds,
        "settings": sets,
        "quick": args.quick,
        **machine(),
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
