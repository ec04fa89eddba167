import av
import numpy as np
import pytest

from lvmae.extract.decode import (
    FrameSampler,
    VideoError,
    center_crop,
    frames_at,
    iter_av_frames,
    iter_frames,
    probe,
    to_rgb,
)
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


def test_crops_do_not_keep_their_parent_frame_alive(tmp_path):
    wide = np.arange(32 * 57 * 3, dtype=np.uint8).reshape(32, 57, 3)
    for rgb in (wide, wide.transpose(1, 0, 2)):  # cropping columns, and rows only (a contiguous slice)
        sq = center_crop(rgb, 32)
        assert sq.shape == (32, 32, 3) and sq.base is None and sq.flags.owndata and sq.flags.c_contiguous
        assert not np.shares_memory(sq, rgb)
    write(tmp_path / "wide.mp4", np.zeros((2, 36, 64, 3), np.uint8))
    (_, frame, rotation, _), *_ = iter_av_frames(tmp_path / "wide.mp4")
    rgb = to_rgb(frame, rotation, 16)  # resized to 28 x 16 in FFmpeg, then cut
    assert rgb.shape == (16, 16, 3) and rgb.flags.owndata


def test_sampler_plans_can_grow_and_be_redone(tmp_path):
    write(tmp_path / "a.mp4", numbered(10))
    sampler = FrameSampler(tmp_path / "a.mp4", [(np.zeros((0, 2)), None)])
    fed = 0
    for t, frame, rotation, duration in iter_av_frames(tmp_path / "a.mp4"):
        if fed == 2:
            sampler.extend(0, [[0.2, 0.3], [0.5, 0.6]])  # rows planned while decoding
        if fed == 5:
            sampler.rewind(0, 1)  # row 1 (filled) is planned again, differently
            sampler.extend(0, [[0.55, 0.95]])
        sampler.feed(t, frame, rotation, duration)
        fed += 1
    assert sampler.filled(0) == 2
    with pytest.raises(ValueError, match="before the last frame fed"):
        sampler.extend(0, [[1.0, 1.2]])  # frame 8 (1.0 s) was on screen then, and is gone
    sampler.finish()
    sampler.extend(0, [[2.0, 3.0]])  # after the end: the last frame
    frames, stamps = sampler.take(0, 0, 3)
    assert [[frame_number(f) for f in row] for row in frames] == [[1, 2], [4, 7], [9, 9]]
    np.testing.assert_allclose(stamps, [[0.125, 0.25], [0.5, 0.875], [1.125, 1.125]])
    with pytest.raises(ValueError, match="non-decreasing"):
        sampler.extend(0, [[4.0, 3.5]])
