import numpy as np
import pytest

from extract.decode import VideoError
from extract.segments import clip_times, iter_segments, segment_spans, tok_times
from foundation.schema import SegmentConfig
from toyworld.generate import CorpusSpec, generate, render_frames, video_plan


def test_spans_keep_a_trailing_half_segment():
    np.testing.assert_allclose(segment_spans(6.9, 2.0, 0.5), [[0, 2], [2, 4], [4, 6]])  # 0.9 s left: dropped
    np.testing.assert_allclose(segment_spans(7.0, 2.0, 0.5)[-1], [6, 7])  # exactly half: kept
    np.testing.assert_allclose(segment_spans(7.2, 2.0, 0.5), [[0, 2], [2, 4], [4, 6], [6, 7.2]])
    np.testing.assert_allclose(segment_spans(6.0, 2.0, 0.5), [[0, 2], [2, 4], [4, 6]])
    assert segment_spans(0.9, 2.0, 0.5).shape == (0, 2)
    np.testing.assert_allclose(segment_spans(1.0, 2.0, 0.5), [[0, 1.0]])


def test_clip_and_tok_times():
    spans = np.array([[0.0, 2.0], [2.0, 3.0]])
    np.testing.assert_allclose(clip_times(spans, 4), [[0.25, 0.75, 1.25, 1.75], [2.125, 2.375, 2.625, 2.875]])
    t = tok_times(spans, 9, 8.0)
    np.testing.assert_allclose(t[0], 0.5 + np.arange(9) / 8)  # 1 s window centred in a 2 s segment
    assert (t[1] >= 2.0).all() and (t[1] < 3.0).all()  # clamped into the short last segment
    assert np.all(np.diff(t[1]) >= 0)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    spec = CorpusSpec(videos=1, minutes=(0.5, 0.5), seed=31, size=64, fps=8.0)
    root = tmp_path_factory.mktemp("seg")
    corpus = generate(spec, root, workers=1, progress=False)
    return spec, root / corpus.videos.column("uri")[0].as_py()


def test_frames_match_their_timestamps_and_the_renderer(video):
    spec, path = video
    seg = SegmentConfig(seconds=2.0, clip_frames=8, tok_frames=9, tok_fps=8.0, tok_size=32)
    summary = []
    chunks = list(iter_segments(path, seg, image_size=64, chunk=4, summary=summary))
    assert summary[0].n_segments == 15 and summary[0].duration == pytest.approx(30.0)
    assert [c.first for c in chunks] == [0, 4, 8, 12]
    assert sum(len(c.spans) for c in chunks) == 15
    plan = video_plan(spec, 0, 240)
    for c in chunks:
        want = clip_times(c.spans.astype(np.float64), 8)
        # The frame on screen at t is frame floor(t * fps), whose timestamp is that / fps.
        np.testing.assert_allclose(c.clip_stamps, np.floor(want * 8 + 1e-9) / 8)
        idx = np.round(c.clip_stamps * 8).astype(int).reshape(-1)
        truth, _ = render_frames(plan, idx, spec.fps, spec.size)
        got = c.clip.reshape(-1, 64, 64, 3).astype(float)
        assert 10 * np.log10(255**2 / np.mean((got - truth) ** 2)) > 28
        assert c.tok.shape[1:] == (9, 32, 32, 3)
        tok_idx = np.round(c.tok_stamps * 8).astype(int)
        assert (np.diff(tok_idx, axis=1) == 1).all()  # 9 consecutive frames


def test_memory_is_one_chunk_not_the_video(video):
    spec, path = video
    seg = SegmentConfig()
    gen = iter_segments(path, seg, image_size=64, chunk=2)
    first = next(gen)
    assert len(first.spans) == 2
    gen.close()


def test_truncated_and_short_and_broken_videos(video, tmp_path):
    spec, path = video
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError):
        list(iter_segments(cut, SegmentConfig(), image_size=64))
    tiny = generate(
        CorpusSpec(videos=1, minutes=(0.01, 0.01), seed=3, size=64), tmp_path / "tiny", workers=1, progress=False
    )
    with pytest.raises(VideoError, match="shorter than half a segment"):
        list(iter_segments(tmp_path / "tiny" / tiny.videos.column("uri")[0].as_py(), SegmentConfig(), image_size=64))
