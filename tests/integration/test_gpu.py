"""The CUDA paths: frozen models, pretraining steps, Ray extraction with a GPU actor, FAISS Flat on a GPU.

Marked `gpu`: skipped without a CUDA device (tests/conftest.py) and left out of `make test`. Each one
compares against the CPU path on the same input, so a wrong device transfer or precision shows as a
numeric difference, not just as a crash.
"""

import dataclasses

import numpy as np
import pytest
import torch

from lvmae import cli
from lvmae.extract.encoder import ImageTextEncoder
from lvmae.extract.tokenizer import FrozenTokenizer
from lvmae.foundation.schema import RetrievalConfig, load_config
from lvmae.pretrain.checkpoint import read_metrics
from lvmae.pretrain.synthetic import write_procedure_store
from lvmae.store import Store
from lvmae.toyworld.encoder import CONFIG_DIR, SHIPPED_WEIGHTS
from tests.integration.conftest import extract_with
from tests.integration.test_pretrain import TINY

pytestmark = pytest.mark.gpu
SHIPPED_TOKENIZER = SHIPPED_WEIGHTS.parent / "tokenizer.pt"


def frames(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_encoder_on_cuda_matches_cpu():
    x = frames((24, 64, 64, 3))
    cpu = ImageTextEncoder(
        "toyclip", SHIPPED_WEIGHTS, model_configs=[CONFIG_DIR], device="cpu", precision="fp32"
    ).encode_frames(x)
    fp32 = ImageTextEncoder(
        "toyclip", SHIPPED_WEIGHTS, model_configs=[CONFIG_DIR], device="cuda", precision="fp32"
    ).encode_frames(x)
    bf16 = ImageTextEncoder("toyclip", SHIPPED_WEIGHTS, model_configs=[CONFIG_DIR], device="cuda", precision="auto")
    assert bf16.dtype == torch.bfloat16
    assert np.abs(fp32 - cpu).max() < 1e-3  # TF32 matmuls may be on: not bit-equal
    cosine = (bf16.encode_frames(x) * cpu).sum(1)  # both unit-normalised
    assert cosine.min() > 0.99
    text = bf16.encode_text(["a red circle on a blue background"])
    assert text.shape == (1, bf16.dim) and np.isfinite(text).all()


def test_tokenizer_on_cuda_matches_cpu():
    clips = frames((6, 9, 64, 64, 3), seed=1)
    cpu = FrozenTokenizer(SHIPPED_TOKENIZER, device="cpu").tokenize(clips)
    gpu = FrozenTokenizer(SHIPPED_TOKENIZER, device="cuda").tokenize(clips)
    assert gpu.indices.shape == cpu.indices.shape and gpu.indices.dtype == np.int16
    # FSQ rounds each latent: a value within float noise of a level boundary may land on either side.
    assert (gpu.indices == cpu.indices).mean() > 0.98
    assert np.abs(gpu.scores.astype(np.float32) - cpu.scores.astype(np.float32)).max() < 1e-2
    assert np.allclose(gpu.importance, cpu.importance, atol=1e-2)


def test_pretrain_on_cuda_learns(tmp_path):
    uri = str(tmp_path / "store")
    write_procedure_store(uri, videos=6, segments=(40, 200), tokenizer=True)
    out = tmp_path / "run"
    args = [
        "pretrain",
        "--store",
        uri,
        "--out",
        str(out),
        *TINY,
        "--set",
        "pretrain.device=cuda",
        "--set",
        "pretrain.steps=60",
        "--set",
        "pretrain.code_head=true",
    ]
    assert cli.main(args) == 0
    curve = [r["loss"] for r in read_metrics(out) if "loss" in r]
    assert len(curve) == 60 and np.isfinite(curve).all() and sum(curve[-10:]) < 0.5 * sum(curve[:10])
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert state  # saved from the GPU, loads on the CPU


def _extract_on_cpu_and_gpu(tmp_path, seed, *gpu_sets):
    """Three toy-world videos extracted by the local loop on the CPU and by Ray with one GPU actor
    (`gpu_sets` added): (the GPU run's report, the CPU store, the GPU store)."""
    from lvmae.toyworld.generate import CorpusSpec, generate

    corpus = generate(
        CorpusSpec(videos=3, minutes=(0.2, 0.3), seed=seed), tmp_path / "corpus", workers=1, progress=False
    )
    inputs = corpus.root / "videos.parquet"

    def config(name, *sets):
        return load_config(
            None,
            [f"paths.store={tmp_path / name}", "extract.shard_videos=2", "encoder.precision=fp32", *sets],
            use_default_file=False,
        )

    cpu = config("cpu", "encoder.device=cpu", "tokenizer.device=cpu")
    gpu = config("gpu", "encoder.device=cuda", "tokenizer.device=cuda", "extract.actor_num_gpus=1", *gpu_sets)
    extract_with(cpu, inputs=inputs, runner="local")
    report = extract_with(gpu, inputs=inputs, runner="ray")
    return report, Store.open(cpu.paths.store), Store.open(gpu.paths.store)


def test_ray_extraction_with_a_gpu_actor_equals_the_cpu_loop(tmp_path):
    report, a, b = _extract_on_cpu_and_gpu(tmp_path, 43, "extract.decoder=cpu")
    assert report.videos_ok == 3 and report.decoder == "cpu"
    for vid in a.videos()["video_id"].to_pylist():
        sa, sb = a.sequence(vid), b.sequence(vid)
        assert (sa.span == sb.span).all()
        assert np.abs(sa.emb.astype(np.float32) - sb.emb.astype(np.float32)).max() < 1e-2
        assert (sa.codes == sb.codes).mean() > 0.98


def test_faiss_flat_on_gpu_equals_cpu(tmp_path):
    from lvmae.retrieval import placement
    from lvmae.retrieval.index import SegmentIndex
    from tests.unit.retrieval.stores import identity, vectors, write_videos

    if not placement.gpus_available():
        pytest.skip("FAISS has no GPU here (faiss-cpu): install the [gpu] extra")
    store = Store.create(tmp_path / "store", identity())
    write_videos(store, "s0", {f"v{i}": (500, i) for i in range(8)})
    store = Store.open(tmp_path / "store")
    cfg = RetrievalConfig(device="cpu")
    cpu = SegmentIndex.build(store, cfg, kind="flat", progress=False)
    gpu = SegmentIndex.build(store, dataclasses.replace(cfg, device="cuda"), kind="flat", progress=False)
    assert gpu.device == "cuda" and cpu.device == "cpu"
    q = vectors(50, 99)
    (s_cpu, p_cpu), (s_gpu, p_gpu) = cpu.search(q, 10), gpu.search(q, 10)
    np.testing.assert_allclose(s_gpu, s_cpu, atol=1e-4)
    assert (p_gpu == p_cpu).mean() > 0.99  # near-ties may swap under GPU float order
    gpu.save(tmp_path / "idx")  # written from a CPU copy
    np.testing.assert_array_equal(SegmentIndex.load(tmp_path / "idx").search(q, 10)[1], p_cpu)


def test_nvdec_decodes_on_the_gpu_and_gives_the_cpu_paths_embeddings(tmp_path):
    from lvmae.extract.decode import DecodeLimits, iter_av_frames
    from lvmae.extract.nvdec import nvdec_missing, pixels_for
    from lvmae.extract.segments import iter_segments
    from tests.unit.extract.test_nvdec import scene
    from tests.videos import write_frames

    assert nvdec_missing("cuda") is None
    path = tmp_path / "v.mp4"
    write_frames(path, scene(48, 1280, 720, grain=8), fps=24, keyframe_every=24, options={"bf": "2"})
    encoder = ImageTextEncoder("toyclip", SHIPPED_WEIGHTS, model_configs=[CONFIG_DIR], device="cuda", precision="fp32")
    pixels = pixels_for("nvdec", encoder.device)
    formats = {frame.format.name for _, frame, _, _ in iter_av_frames(path, hwaccel=pixels.hwaccel)}
    assert formats == {"cuda"}  # decoded by NVDEC, kept on the GPU
    spec = load_config(None, ["segment.seconds=0.5"], use_default_file=False).segment
    limits = DecodeLimits(sparse=True)
    cpu = list(iter_segments(path, spec, encoder.image_size, limits=limits))
    gpu = list(iter_segments(path, spec, encoder.image_size, limits=limits, pixels=pixels))
    assert len(cpu) == len(gpu)
    for a, g in zip(cpu, gpu):
        assert g.clip.device.type == "cuda" and g.tok.device.type == "cuda"
        np.testing.assert_array_equal(g.clip_stamps, a.clip_stamps)
        diff = np.abs(g.clip.cpu().numpy().astype(int) - a.clip.astype(int))
        assert diff.mean() < 3.0
        cosine = (encoder.encode_segments(g.clip) * encoder.encode_segments(a.clip)).sum(1)
        assert cosine.min() > 0.99


def test_ray_extraction_decoding_with_nvdec_matches_the_cpu_loop(tmp_path):
    report, a, b = _extract_on_cpu_and_gpu(tmp_path, 44)  # extract.decoder = auto
    assert report.videos_ok == 3 and report.decoder == "nvdec"
    for vid in a.videos()["video_id"].to_pylist():
        sa, sb = a.sequence(vid), b.sequence(vid)
        assert (sa.span == sb.span).all()
        cosine = (sa.emb.astype(np.float32) * sb.emb.astype(np.float32)).sum(1)
        assert cosine.min() > 0.99
        assert (sa.codes == sb.codes).mean() > 0.8
