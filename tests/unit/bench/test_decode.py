"""The decode benchmark's generated videos: h264 at 30 fps with keyframes and B-frames, as cameras write."""

import av
from av.video.frame import PictureType

from bench.decode import FPS, decode_all, make_video, sampled
from lvmae.extract.decode import DecodeLimits
from lvmae.foundation.schema import SegmentConfig


def test_a_generated_video_has_the_size_rate_keyframes_and_b_frames_asked_for(tmp_path):
    path = make_video(tmp_path / "v.mp4", 320, 180, seconds=8)
    assert not list(tmp_path.glob("*.tmp"))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.codec_context.name) == (320, 180, "h264")
        kinds, keys = [], []
        for frame in container.decode(stream):
            kinds.append(PictureType(frame.pict_type))
            if frame.key_frame:
                keys.append(frame.time)
    assert len(kinds) == 8 * FPS and PictureType.B in kinds
    assert max(b - a for a, b in zip(keys, keys[1:] + [8.0])) <= 3.0 + 1e-6  # a keyframe at least every 3 s
    frames, seconds = decode_all(path, threads=1)
    assert frames == 8 * FPS and seconds > 0
    for sparse in (False, True):
        segments, _, worst, decoded = sampled(path, SegmentConfig(seconds=5.0), DecodeLimits(sparse=sparse))
        assert segments == 1 + 1 and 0 <= worst <= 1  # 5 s and a 3 s tail; every sample within tolerance
        assert decoded < frames if sparse else decoded == frames


def test_the_gpu_sections_rates_run_with_the_conversion_on_the_cpu(tmp_path):
    from bench.decode import pipeline_rates
    from lvmae.extract.nvdec import TensorPixels
    from lvmae.extract.work import FrozenModels
    from lvmae.foundation.schema import load_config

    path = make_video(tmp_path / "v.mp4", 320, 180, seconds=6)
    cfg = load_config(None, [], use_default_file=False)
    rates = pipeline_rates(
        path, SegmentConfig(seconds=2.0), FrozenModels(cfg.encoder, cfg.tokenizer), DecodeLimits(), TensorPixels("cpu")
    )
    assert set(rates) == {"encoder_only", "nvdec", "cpu_decode", "nvdec_vs_encoder_only"}
    assert all(v > 0 for v in rates.values())
    assert rates["encoder_only"] > rates["cpu_decode"]  # decoding costs something
