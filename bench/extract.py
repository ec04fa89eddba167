"""Extraction throughput: the Ray pipeline against its stages and a plain loop, on the same videos.

    python -m bench.extract [--quick] [--out FILE]

(a) `pipeline`: `lvmae extract` on Ray (decode tasks feeding an encoder actor); (b) `decode`: decoding
and segmenting only; (c) `encode`: both frozen models on pre-decoded segments only; (d) `naive`: one
process, decode a video then encode it, one video at a time (the local runner). All four in this
process, side by side, on one generated toy-world corpus with the shipped encoder and tokenizer.
Rates are segments per second; video-seconds per second is segments/s times the segment length.
Starting a local Ray instance is timed apart (`ray_startup_s`; on a cluster it is already running) and
`pipeline_with_startup_segments_per_s` adds it back.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench._common import emit, machine, parse_args
from extract.runner import encoder_image_size, init_ray, run_extract
from extract.work import SegmentEncoder, VideoJob, segment_batches
from lvmae.config import load_config
from toyworld.generate import CorpusSpec, generate


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.split("\n\n")[0], argv)
    spec = CorpusSpec(videos=4, minutes=(0.5, 0.5), seed=77) if args.quick else \
        CorpusSpec(videos=8, minutes=(8.0, 8.0), seed=77)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = generate(spec, tmp / "corpus", progress=False)
        inputs = tmp / "corpus" / "videos.parquet"
        gpu = device_name() != "cpu"
        # On a 2-CPU machine the encoder actor takes 1.5 CPUs (2 torch threads) and decoding 0.5:
        # toy-world decoding is light, the models are not. On a GPU node: one actor per GPU.
        sets = ["extract.actor_num_gpus=1", "extract.actor_num_cpus=4", "extract.decode_num_cpus=1"] if gpu else \
            ["extract.actor_num_cpus=1.5", "extract.decode_num_cpus=0.5"]
        cfg = load_config(None, sets + ["extract.shard_videos=2", f"paths.store={tmp / 'store'}"],
                          use_default_file=False)
        seg = cfg.segment
        size = encoder_image_size(cfg)
        rows = corpus.videos.to_pylist()
        jobs = [VideoJob(r["id"], str(tmp / "corpus" / r["uri"]), "0") for r in rows]

        started = time.perf_counter()
        batches = [b for job in jobs for b in segment_batches(job, seg, size, cfg.extract.chunk_segments)]
        decode_s = time.perf_counter() - started
        n_segments = int(sum((~b["end"]).sum() for b in batches))
        print(f"decode only: {n_segments} segments in {decode_s:.1f} s", flush=True)

        models = SegmentEncoder(cfg.encoder, cfg.tokenizer)
        started = time.perf_counter()
        for b in batches:
            models(b)
        encode_s = time.perf_counter() - started
        print(f"encode only: {encode_s:.1f} s", flush=True)
        del batches

        started = time.perf_counter()
        naive = run_extract(cfg, inputs=inputs, store_uri=str(tmp / "naive"), runner="local")
        naive_s = time.perf_counter() - started
        print(f"naive loop: {naive_s:.1f} s", flush=True)

        # Ray's own start-up (a local cluster here; already running on a real cluster) is timed apart;
        # the pipeline's time includes everything of the job itself, actor start and model loading too.
        import ray

        started = time.perf_counter()
        init_ray(cfg)
        ray_startup_s = time.perf_counter() - started
        try:
            started = time.perf_counter()
            pipe = run_extract(cfg, inputs=inputs, store_uri=str(tmp / "ray"), runner="ray")
            pipe_s = time.perf_counter() - started
        finally:
            ray.shutdown()
        print(f"ray pipeline: {pipe_s:.1f} s (+ {ray_startup_s:.1f} s to start a local Ray)", flush=True)
        assert naive.segments == pipe.segments == n_segments, (naive.segments, pipe.segments, n_segments)

    rates = {"pipeline": n_segments / pipe_s, "decode": n_segments / decode_s,
             "encode": n_segments / encode_s, "naive": n_segments / naive_s}
    result = {
        "pipeline_segments_per_s": round(rates["pipeline"], 2),
        "decode_segments_per_s": round(rates["decode"], 2),
        "encode_segments_per_s": round(rates["encode"], 2),
        "naive_segments_per_s": round(rates["naive"], 2),
        "ratio_vs_naive": round(rates["pipeline"] / rates["naive"], 3),
        "ratio_vs_slowest_stage": round(rates["pipeline"] / min(rates["decode"], rates["encode"]), 3),
        "device": device_name(),
        "ray_startup_s": round(ray_startup_s, 2),
        "pipeline_with_startup_segments_per_s": round(n_segments / (pipe_s + ray_startup_s), 2),
        "pipeline_video_s_per_s": round(rates["pipeline"] * seg.seconds, 1),
        "naive_video_s_per_s": round(rates["naive"] * seg.seconds, 1),
        "segments": n_segments, "videos": len(rows), "video_seconds": corpus.video_seconds,
        "settings": sets, "quick": args.quick, **machine(),
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
