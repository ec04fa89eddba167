import tracemalloc

import numpy as np
import pytest

from lvmae.extract import segments
from lvmae.extract.decode import VideoError, frames_at, iter_av_frames
from lvmae.extract.segments import TruncatedVideo, clip_times, iter_segments, segment_spans, tok_times
from lvmae.foundation.schema import SegmentConfig
from lvmae.toyworld.generate import CorpusSpec, generate, render_frames, video_plan
from tests.videos import numbered, set_matroska_duration, write_frames


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


SMALL = SegmentConfig(seconds=2.0, clip_frames=4, tok_frames=5, tok_fps=8.0, tok_size=16)


def extract(path, chunk=3, **kw):
    summary = []
    chunks = list(iter_segments(path, SMALL, 32, chunk=chunk, summary=summary, **kw))
    return chunks, summary[0]


def assert_as_defined(path, chunks, end):
    """The chunks hold exactly what the module docstring defines for a video ending at `end`, as one
    frames_at pass over the whole file picks it: same spans, same timestamps, same pixels."""
    spans = segment_spans(end, SMALL.seconds, SMALL.min_fraction)
    clip_t, tok_t = clip_times(spans, SMALL.clip_frames), tok_times(spans, SMALL.tok_frames, SMALL.tok_fps)
    clip, clip_ts = frames_at(path, clip_t.reshape(-1), short_side=32, crop=True)
    tok, tok_ts = frames_at(path, tok_t.reshape(-1), short_side=16, crop=True)
    np.testing.assert_allclose(np.concatenate([c.spans for c in chunks]), spans.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([c.clip_stamps for c in chunks]).reshape(-1), clip_ts)
    np.testing.assert_array_equal(np.concatenate([c.tok_stamps for c in chunks]).reshape(-1), tok_ts)
    np.testing.assert_array_equal(np.concatenate([c.clip for c in chunks]).reshape(clip.shape), clip)
    np.testing.assert_array_equal(np.concatenate([c.tok for c in chunks]).reshape(tok.shape), tok)


@pytest.fixture
def passes(monkeypatch):
    """The decoding passes iter_segments makes: each one's seek_to (None: from the start)."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("seek_to"))
        return iter_av_frames(*args, **kwargs)

    monkeypatch.setattr(segments, "iter_av_frames", spy)
    return calls


@pytest.mark.parametrize("n_frames", [80, 75, 71, 86])  # 10 s; 9.375 s (a kept partial); 8.875 and 10.75 (dropped)
@pytest.mark.parametrize("declared", [None, 9.0, 5.0, 1.0])
def test_segments_follow_the_decoded_frames_whatever_the_container_declares(tmp_path, passes, n_frames, declared):
    path = tmp_path / "v.mkv"
    write_frames(path, numbered(n_frames), keyframe_every=8)
    if declared is not None:
        set_matroska_duration(path, declared)
    chunks, summary = extract(path)
    end = n_frames / 8
    assert summary.duration == end and summary.fps == pytest.approx(8.0)
    assert summary.n_segments == len(segment_spans(end, 2.0, 0.5))
    assert [c.first for c in chunks] == list(range(0, summary.n_segments, 3))
    assert_as_defined(path, chunks, end)
    kept_partial = n_frames == 75
    if declared is None or not kept_partial:
        assert passes == [None]  # read once: the declared duration predicted the tail, or there is none
    else:
        # The last segment, a partial one the container did not predict, is read again from a keyframe.
        assert len(passes) == 2 and passes[1] is not None and passes[1] < 8.0


def test_a_timestamp_gap_and_a_predicted_tail_in_one_pass(tmp_path, passes):
    pts = [125 * i for i in range(24)] + [15000 + 125 * i for i in range(20)]  # 3 s, a 12 s gap, 2.5 s
    write_frames(tmp_path / "gap.mp4", numbered(len(pts)), fps=8, pts_ms=pts)
    chunks, summary = extract(tmp_path / "gap.mp4", chunk=2)
    assert summary.duration == pytest.approx(17.5) and summary.n_segments == 9
    assert [c.first for c in chunks] == [0, 2, 4, 6, 8]
    assert_as_defined(tmp_path / "gap.mp4", chunks, summary.duration)
    assert passes == [None]


def test_a_container_declaring_much_more_than_its_frames_is_truncated(tmp_path):
    write_frames(tmp_path / "v.mkv", numbered(80))
    set_matroska_duration(tmp_path / "v.mkv", 30.0)
    with pytest.raises(TruncatedVideo, match="frames stop at 10.00 s of the 30.00 s"):
        extract(tmp_path / "v.mkv")


def peak_bytes(path, **kw):
    """Peak traced memory (numpy buffers included) while consuming iter_segments chunk by chunk."""
    tracemalloc.start()
    try:
        for c in iter_segments(path, SegmentConfig(), 64, chunk=2, **kw):
            del c
        error = None
    except VideoError as exc:
        error = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, error


@pytest.fixture(scope="module")
def minute(tmp_path_factory):
    """60 s of 32 x 32 noise at 8 fps in Matroska: as written, declaring 5.3 s, and declaring 1e6 times its length."""
    root = tmp_path_factory.mktemp("minute")
    frames = np.random.default_rng(7).integers(0, 256, (480, 32, 32, 3), dtype=np.uint8)
    write_frames(root / "right.mkv", frames, keyframe_every=16)
    for name, seconds in (("under", 5.3), ("over", 60e6)):
        (root / f"{name}.mkv").write_bytes((root / "right.mkv").read_bytes())
        set_matroska_duration(root / f"{name}.mkv", seconds)
    return root


def test_an_understated_duration_extracts_the_same_segments_in_the_same_memory(minute):
    right = list(iter_segments(minute / "right.mkv", SegmentConfig(), 64, chunk=2))
    under = list(iter_segments(minute / "under.mkv", SegmentConfig(), 64, chunk=2))
    assert [c.first for c in under] == [c.first for c in right] == list(range(0, 30, 2))
    for a, b in zip(right, under):
        np.testing.assert_array_equal(a.spans, b.spans)
        np.testing.assert_array_equal(a.clip_stamps, b.clip_stamps)
        np.testing.assert_array_equal(a.tok, b.tok)
    del right, under
    peak_right, _ = peak_bytes(minute / "right.mkv")
    peak_under, error = peak_bytes(minute / "under.mkv")
    assert error is None
    # A chunk of 2 segments is ~0.2 MB of frames; holding the 27 segments past the declared end (what one
    # pass planned from the declaration, plus a second pass over the tail, did) is ~2.8 MB.
    assert peak_under <= 1.5 * peak_right, (peak_under, peak_right)


def test_an_overstated_duration_fails_without_planning_it(minute):
    peak_right, _ = peak_bytes(minute / "right.mkv")
    peak_over, error = peak_bytes(minute / "over.mkv")
    assert isinstance(error, TruncatedVideo) and not error.transient
    assert peak_over <= 1.5 * peak_right, (peak_over, peak_right)
