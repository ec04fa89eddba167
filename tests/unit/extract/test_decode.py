import av
import numpy as np
import pytest

from extract.decode import VideoError, frames_at, iter_frames, probe
from tests.videos import write_frames as write


def numbered(n, h=32, w=32):
    """Frame i is flat grey level 10 + 20 i: the decoded value tells which frame it was."""
    return np.stack([np.full((h, w, 3), 10 + 20 * i, np.uint8) for i in range(n)])


def frame_number(rgb):
    return int(round((rgb.mean() - 10) / 20))


def test_iter_frames_gives_presentation_times(tmp_path):
    write(tmp_path / "a.mp4", numbered(10))
    got = list(iter_frames(tmp_path / "a.mp4"))
    assert [round(t, 3) for t, _ in got] == [i / 8 for i in range(10)]
    assert [frame_number(f) for _, f in got] == list(range(10))


def test_frames_at_picks_the_frame_on_screen(tmp_path):
    write(tmp_path / "a.mp4", numbered(10))
    times = [0.0, 0.06, 0.125, 0.2, 0.99, 5.0]
    frames, stamps = frames_at(tmp_path / "a.mp4", times)
    assert [frame_number(f) for f in frames] == [0, 0, 1, 1, 7, 9]
    np.testing.assert_allclose(stamps, [0, 0, 0.125, 0.125, 0.875, 1.125])


def test_variable_frame_rate_follows_timestamps(tmp_path):
    pts = [0, 100, 150, 600, 700, 1200]  # milliseconds, uneven gaps
    write(tmp_path / "vfr.mp4", numbered(6), fps=30, pts_ms=pts)
    frames, stamps = frames_at(tmp_path / "vfr.mp4", [0.05, 0.14, 0.5, 0.65, 1.0, 1.3])
    assert [frame_number(f) for f in frames] == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(stamps, [0, 0.1, 0.15, 0.6, 0.7, 1.2])


def test_resize_and_crop_and_rotation(tmp_path):
    frames = np.zeros((3, 32, 64, 3), np.uint8)
    frames[:, :, :32] = 200  # left half bright
    write(tmp_path / "wide.mp4", frames)
    (t, rgb), *_ = iter_frames(tmp_path / "wide.mp4", short_side=16)
    assert rgb.shape == (16, 32, 3)
    (t, sq), *_ = iter_frames(tmp_path / "wide.mp4", short_side=16, crop=True)
    assert sq.shape == (16, 16, 3)
    write(tmp_path / "rot.mp4", frames, rotation=90)
    info = probe(tmp_path / "rot.mp4")
    assert info.rotation in (90, 270)
    (t, up), *_ = iter_frames(tmp_path / "rot.mp4")
    assert up.shape == (64, 32, 3)  # displayed upright: taller than wide
    bright_rows = up.mean(axis=(1, 2)) > 100
    assert bright_rows[:16].all() != bright_rows[-16:].all()  # the bright half moved to top or bottom


def test_odd_size_decodes(tmp_path):
    frames = np.full((4, 18, 34, 3), 90, np.uint8)  # yuv420p needs even sides; 33x17 rounds up in the encoder
    write(tmp_path / "odd.mp4", frames)
    (t, rgb), *_ = iter_frames(tmp_path / "odd.mp4", short_side=17)
    assert rgb.shape[0] == 17


def test_unreadable_files_raise_video_error(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.mp4"):
        probe(empty)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(VideoError, match="garbage.mp4"):
        frames_at(garbage, [0.0])
    with pytest.raises(VideoError, match="missing.mp4"):
        probe(tmp_path / "missing.mp4")


def test_audio_only_is_a_clear_error(tmp_path):
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        frame.pts = 0
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(VideoError, match="no video stream"):
        probe(path)
