"""extract.nvdec on the CPU: the device-side conversion (what NVDEC's frames go through on a GPU)
against FFmpeg's, the choice of decoder, and whole segments through both models. NVDEC itself is
tested in tests/integration/test_gpu.py."""

import av
import numpy as np
import pytest
import torch

from lvmae.extract.decode import ARRAYS, DecodeLimits, to_rgb
from lvmae.extract.nvdec import TensorPixels, nvdec_missing, pixels_for
from lvmae.extract.runner import decodes_on_gpu
from lvmae.extract.segments import iter_segments
from lvmae.extract.work import DecodeAndEncode, FrozenModels, VideoJob
from lvmae.foundation.loader import ConfigError
from lvmae.foundation.schema import ExtractConfig, load_config
from lvmae.toyworld.generate import CorpusSpec, render_frames, video_plan
from tests.videos import write_frames

CPU = TensorPixels("cpu")


def scene(n: int, width: int, height: int, seed: int = 1, grain: int = 0) -> np.ndarray:
    """(n, height, width, 3) frames of the toy world scaled up, with 2 x 2-pixel grain of +-`grain`
    levels (fine detail that a resize without antialiasing aliases)."""
    plan = video_plan(CorpusSpec(videos=1, minutes=(1, 2), seed=seed), 0, n)
    small = render_frames(plan, np.arange(n), 8, 256)[0]
    big = np.stack(
        [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(width=width, height=height).to_ndarray() for f in small]
    ).astype(np.int16)
    noise = np.random.default_rng(seed).integers(-grain, grain + 1, (n, height // 2 + 1, width // 2 + 1, 1))
    return np.clip(big + noise.repeat(2, 1).repeat(2, 2)[:, :height, :width], 0, 255).astype(np.uint8)


def flat(y: int, u: int, v: int, fmt: str = "yuv420p", colorspace: int | None = None) -> av.VideoFrame:
    """A 64 x 64 frame of one YUV colour."""
    planes = np.zeros((96, 64), np.uint8)
    planes[:64], planes[64:80], planes[80:] = y, u, v
    frame = av.VideoFrame.from_ndarray(planes, format=fmt)
    if colorspace is not None:
        frame.colorspace = colorspace
    return frame


@pytest.mark.parametrize(
    ("yuv", "fmt", "colorspace", "rgb"),
    [
        ((81, 90, 240), "yuv420p", None, (255, 0, 0)),  # red, BT.601 limited range (untagged)
        ((63, 102, 240), "yuv420p", 1, (255, 0, 0)),  # red, BT.709 limited range
        ((200, 128, 128), "yuv420p", None, (214, 214, 214)),  # grey: limited range stretched
        ((200, 128, 128), "yuvj420p", None, (200, 200, 200)),  # grey: full range as it is
        ((76, 85, 255), "yuvj420p", None, (254, 0, 0)),  # red, BT.601 full range
    ],
)
def test_the_conversion_takes_the_frames_matrix_and_range(yuv, fmt, colorspace, rgb):
    got = CPU.convert(flat(*yuv, fmt=fmt, colorspace=colorspace), 0, None)
    assert got.shape == (64, 64, 3) and got.dtype == torch.uint8
    assert np.abs(got[32, 32].numpy().astype(int) - rgb).max() <= 1
    # BT.709's red read as BT.601 is far off: the matrix is the frame's, not a fixed one.
    if colorspace == 1:
        assert np.abs(CPU.convert(flat(*yuv), 0, None)[32, 32].numpy().astype(int) - rgb).max() > 15


@pytest.mark.parametrize(
    ("size", "rotation", "options"),
    [
        ((640, 360), None, {}),
        ((640, 360), None, {"x264-params": "colormatrix=bt709"}),
        ((480, 270), 90, {}),  # rotated: upright, then the centre square
        ((321, 181), None, {}),  # odd sides: 4:4:4, converted to 4:2:0 first
    ],
)
def test_frames_match_ffmpegs_conversion(tmp_path, size, rotation, options):
    path = tmp_path / "v.mp4"
    write_frames(path, scene(6, *size, grain=12), rotation=rotation, options=options)
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    turn = int(round(decoded[0].rotation or 0)) % 360
    for side in (64, 224, None):
        ours = np.stack([CPU.convert(f, turn, side).numpy() for f in decoded]).astype(int)
        ffmpeg = np.stack([to_rgb(f, turn, side) for f in decoded]).astype(int)
        assert ours.shape == ffmpeg.shape
        diff = np.abs(ours - ffmpeg)
        # FFmpeg's scaler rounds down (its output is about 1.8 levels darker on average); the rest is
        # the filters' edges.
        assert diff.mean() < 2.5 and np.percentile(diff, 95) <= 5, (side, diff.mean())


def test_segments_decoded_to_tensors_give_the_cpu_paths_embeddings(tmp_path):
    path = tmp_path / "v.mp4"
    write_frames(path, scene(40, 320, 180), keyframe_every=12)
    cfg = load_config(None, ["encoder.precision=fp32"], use_default_file=False)
    models = FrozenModels(cfg.encoder, cfg.tokenizer)
    size, limits = models.encoder.image_size, DecodeLimits(sparse=True)
    arrays = list(iter_segments(path, cfg.segment, size, chunk=2, limits=limits))
    tensors = list(iter_segments(path, cfg.segment, size, chunk=2, limits=limits, pixels=CPU))
    assert [len(c.spans) for c in tensors] == [len(c.spans) for c in arrays] and len(arrays) > 1
    for a, t in zip(arrays, tensors):
        assert isinstance(t.clip, torch.Tensor) and t.clip.dtype == torch.uint8
        assert tuple(t.clip.shape) == a.clip.shape and tuple(t.tok.shape) == a.tok.shape
        np.testing.assert_array_equal(t.clip_stamps, a.clip_stamps)  # the same frames chosen
        np.testing.assert_array_equal(t.tok_stamps, a.tok_stamps)
        cosine = (models.encoder.encode_segments(t.clip) * models.encoder.encode_segments(a.clip)).sum(1)
        assert cosine.min() > 0.99
        codes = models.tokenizer.tokenize(t.tok).indices == models.tokenizer.tokenize(a.tok).indices
        assert codes.mean() > 0.8  # FSQ rounds: a level or two of pixels moves some codes


def test_decode_and_encode_yields_encoded_rows_and_an_end_row(tmp_path):
    path = tmp_path / "v.mp4"
    write_frames(path, scene(24, 160, 90))
    cfg = load_config(None, [], use_default_file=False)
    work = DecodeAndEncode(
        cfg.encoder, cfg.tokenizer, spec=cfg.segment, image_size=64, chunk=32, limits=DecodeLimits(), decoder="auto"
    )
    assert work.pixels is ARRAYS  # no CUDA here: auto decodes on the CPU
    rows = {
        "video_id": np.array(["a", "b"]),
        "uri": np.array([str(path), str(tmp_path / "gone.mp4")]),
        "shard_id": np.array(["s", "s"]),
    }
    batches = list(work(rows))
    ends = [b for b in batches if b["end"].all()]
    assert [str(e["status"][0]) for e in ends] == ["ok", "failed"]
    assert "gone.mp4" in str(ends[1]["error"][0])
    segments = sum(int((~b["end"]).sum()) for b in batches)
    assert segments == int(ends[0]["n_segments"][0]) > 0
    assert all("clip" not in b and b["emb"].shape[1] == work.models.encoder.dim for b in batches)
    assert list(work.video(VideoJob("a", str(path), "s")))[0]["emb"].any()


def test_the_decoder_setting():
    assert pixels_for("cpu", "cpu") is ARRAYS
    assert pixels_for("auto", "cpu") is ARRAYS
    assert "not a CUDA device" in nvdec_missing("cpu")
    with pytest.raises(ValueError, match="extract.decoder = nvdec: the encoder runs on cpu"):
        pixels_for("nvdec", "cpu")
    with pytest.raises(ValueError, match="extract.decoder = 'gpu'"):
        pixels_for("gpu", "cpu")
    # The Ray runner: decode tasks unless the actors have GPUs; nvdec without them is refused.
    assert not decodes_on_gpu(ExtractConfig(decoder="auto"))
    assert not decodes_on_gpu(ExtractConfig(decoder="cpu", actor_num_gpus=1))
    with pytest.raises(ConfigError, match="extract.decoder = nvdec: the encoder actors have no GPU"):
        decodes_on_gpu(ExtractConfig(decoder="nvdec"))
    with pytest.raises(ConfigError, match="decoder"):
        load_config(None, ["extract.decoder=gpu"], use_default_file=False)
