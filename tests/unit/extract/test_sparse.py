"""Sparse decoding: which packets `extract.sparse.SparseSchedule` decodes, and that the segments it
gives hold, for every sample, a frame of the full decoding within the sample's tolerance."""

import av
import numpy as np
import pytest

from bench.decode import make_video
from lvmae.extract.decode import DecodeLimits, iter_av_frames, to_rgb
from lvmae.extract.segments import iter_segments, sample_times, wanted_times
from lvmae.extract.sparse import DECODE, DROP, REFS, SparseSchedule
from lvmae.foundation.schema import SegmentConfig
from lvmae.toyworld.generate import CorpusSpec, render_frames, video_plan
from tests.videos import numbered, set_matroska_duration, write_frames

FPS = 30
SPEC = SegmentConfig(seconds=5.0, tok_size=16)  # the default frame counts: 8 clip, 9 tokenizer at 8 fps


def stream(n: int, gop: int, bframes: int, *, open_gop: bool = False) -> list[tuple[int, bool, bool]]:
    """(pts in frames, keyframe, reference) of n frames in decode order, as an encoder writes them: a
    keyframe every `gop` frames, `bframes` non-reference B-frames between references, each decoded
    after the reference shown after it. With `open_gop`, a group's last B-frames are decoded after
    the next keyframe (its leading frames) and refer to both groups."""
    order, pending = [], []
    for g in range(0, n, gop):
        end = min(n, g + gop)
        order.append((g, True, True))
        order += [(t, False, False) for t in pending]
        prev = g
        for ref in range(g + bframes + 1, end, bframes + 1):
            order += [(ref, False, True)] + [(t, False, False) for t in range(prev + 1, ref)]
            prev = ref
        rest = list(range(prev + 1, end))
        pending = rest if open_gop and end < n else []
        if not pending:
            order += [(t, False, True) for t in rest]  # P-frames to the end of the group
    return order


def schedule(order, spec=SPEC, **kw):
    """(SparseSchedule, [(pts, keyframe, reference, how)]) for packets in `order`, then a flush packet."""
    packets = []
    for pts, key, _ in order:
        p = av.Packet(b"\0")
        p.pts, p.is_keyframe = pts, key
        packets.append(p)
    sched = SparseSchedule(wanted_times(spec, None), **kw)
    out = list(sched(iter(packets + [av.Packet()]), lambda pts: pts / FPS))
    assert out[-1][0].size == 0 and out[-1][1] == DECODE  # the flush packet goes to the decoder
    return sched, [(*o, how) for o, (_, how) in zip(order, out[:-1])]


def decoded(plan) -> np.ndarray:
    """Times of the frames a decoder gives: the packets decoded, and references among those sent as REFS."""
    return np.array(sorted(pts / FPS for pts, _, ref, how in plan if how == DECODE or (how == REFS and ref)))


def assert_every_sample_served(plan, spec=SPEC):
    """Every wanted time has a decoded frame within its tolerance, or the frame on screen then."""
    got = decoded(plan)
    every = np.array(sorted(pts / FPS for pts, *_ in plan))
    times, tols = wanted_times(spec, None)(0.0, len(plan) / FPS)
    for t, tol in zip(times, tols):
        on_screen = every[max(0, np.searchsorted(every, t, "right") - 1)]
        assert np.any(np.abs(got - t) <= tol) or on_screen in got, (t, tol)


def assert_groups_decodable(plan):
    """Packets left out are a group's last ones in decode order: the frames sent have their references."""
    groups = np.cumsum([key for _, key, _, _ in plan])
    for g in np.unique(groups):
        hows = [how for (_, _, _, how), gg in zip(plan, groups) if gg == g]
        sent = [how is not DROP for how in hows]
        assert sent == sorted(sent, reverse=True), g


@pytest.mark.parametrize("gop,bframes", [(90, 3), (90, 0), (60, 2), (1, 0)])
def test_each_sample_is_served_and_the_rest_is_left_out(gop, bframes):
    order = stream(40 * FPS, gop, bframes)
    sched, plan = schedule(order)
    assert_every_sample_served(plan)
    assert_groups_decodable(plan)
    assert sched.packets == len(order) and sched.dropped == sum(how is DROP for *_, how in plan)
    assert sched.dropped > 0.15 * len(order)
    # The last group is decoded whole: the trailing partial segment is known only at the end.
    last_key = max(i for i, (_, key, _) in enumerate(order) if key)
    assert all(how == DECODE for *_, how in plan[last_key:])
    if gop == 1:  # intra-only: every frame stands alone, only the chosen ones are decoded
        assert {how for *_, how in plan[:last_key]} == {DECODE, DROP}


def test_an_open_gop_is_never_cut_short():
    order = stream(30 * FPS, 90, 2, open_gop=True)
    _, plan = schedule(order)
    assert_every_sample_served(plan)
    assert all(how is not DROP for *_, how in plan)  # leading frames refer to the group before


def test_what_cannot_be_planned_is_decoded_whole():
    # Packets without timestamps from some point on: decoded from there.
    order = stream(20 * FPS, 90, 2)
    packets = []
    for i, (pts, key, _) in enumerate(order):
        p = av.Packet(b"\0")
        p.pts, p.is_keyframe = (pts if i < 300 else None), key
        packets.append(p)
    hows = [how for _, how in SparseSchedule(wanted_times(SPEC, None))(iter(packets), lambda pts: pts / FPS)]
    assert DROP in hows[:300] and all(how == DECODE for how in hows[300:])
    # A group longer than the lookahead is decoded whole; the groups after it are planned again.
    long = stream(450, 450, 2) + [(pts + 450, key, ref) for pts, key, ref in stream(25 * FPS, 90, 2)]
    for bounds in ({"lookahead": 200}, {"lookahead_bytes": 200}):  # packets of one byte each
        _, plan = schedule(long, **bounds)
        assert all(how == DECODE for *_, how in plan[:450])
        assert DROP in {how for *_, how in plan[450:]}
    # Timestamps that start again at a keyframe: the group before it is decoded whole.
    first, second = stream(12 * FPS, 90, 2), stream(12 * FPS, 90, 2)
    _, plan = schedule(first + second)
    assert_groups_decodable(plan)
    group_before = [how for pts, key, _, how in plan[: len(first)] if pts >= 270]
    assert all(how == DECODE for how in group_before)


def full_decode(path, sides):
    """{timestamp: {side: frame}} of every frame, converted as the samplers convert them."""
    return {t: {s: to_rgb(f, r, s) for s in sides} for t, f, r, _ in iter_av_frames(path)}


def assert_within_tolerance(path, chunks, spec, side, frames=None) -> float:
    """Every sample of `chunks` is a frame of the full decoding (same pixels) within its tolerance of the
    time it stands for, or the frame on screen then; returns the largest error / tolerance."""
    frames = frames or full_decode(path, (side, spec.tok_size))
    every = np.array(sorted(frames))
    spans = np.concatenate([c.spans for c in chunks]).astype(np.float64)
    worst = 0.0
    for (wanted, tol), stamps, pixels, s in zip(
        sample_times(spans, spec), ("clip_stamps", "tok_stamps"), ("clip", "tok"), (side, spec.tok_size)
    ):
        got = np.concatenate([getattr(c, stamps) for c in chunks])
        images = np.concatenate([getattr(c, pixels) for c in chunks])
        on_screen = every[np.maximum(0, np.searchsorted(every, wanted, "right") - 1)]
        ok = (np.abs(got - wanted) <= tol + 1e-9) | (got == on_screen)
        assert ok.all(), (wanted[~ok], got[~ok])
        within = np.abs(got - wanted) <= tol + 1e-9
        worst = max(worst, float(np.max(np.abs(got - wanted)[within] / tol[within], initial=0.0)))
        for t, image in zip(got.reshape(-1), images.reshape(-1, *images.shape[2:])):
            np.testing.assert_array_equal(image, frames[t][s])
    return worst


def extract(path, spec, side, sparse, chunk=4):
    summary = []
    chunks = list(iter_segments(path, spec, side, chunk=chunk, summary=summary, limits=DecodeLimits(sparse=sparse)))
    return chunks, summary[0]


@pytest.fixture(scope="module")
def h264(tmp_path_factory):
    """22 s of the benchmark's kind of video, small: 30 fps, a keyframe at least every 3 s, B-frames."""
    return make_video(tmp_path_factory.mktemp("sparse") / "v.mp4", 96, 64, 22)


def test_sparse_segments_are_full_decoding_frames_within_tolerance(h264):
    sparse, s_summary = extract(h264, SPEC, 32, True)
    full, f_summary = extract(h264, SPEC, 32, False)
    assert (s_summary.duration, s_summary.fps, s_summary.n_segments) == (
        f_summary.duration,
        f_summary.fps,
        f_summary.n_segments,
    )
    assert f_summary.decoded == 22 * FPS and s_summary.decoded < 0.8 * f_summary.decoded
    assert [c.first for c in sparse] == [c.first for c in full]
    assert 0 < assert_within_tolerance(h264, sparse, SPEC, 32) <= 1.0
    # Two decoder threads (frame threading) take the same frames.
    limits = DecodeLimits(sparse=True, threads=2)
    threaded = list(iter_segments(h264, SPEC, 32, chunk=4, limits=limits))
    for a, b in zip(sparse, threaded):
        np.testing.assert_array_equal(a.clip_stamps, b.clip_stamps)
        np.testing.assert_array_equal(a.tok, b.tok)


def test_variable_frame_rate_and_a_long_still_frame(tmp_path):
    rng = np.random.default_rng(5)
    steps = rng.integers(20, 150, 189)
    steps[90] = 3000  # a frame on screen for 3 s: samples in that time take it, whatever their tolerance
    pts = np.concatenate([[0], np.cumsum(steps)]).tolist()
    path = tmp_path / "vfr.mkv"
    write_frames(path, numbered(len(pts)), pts_ms=pts, keyframe_every=12)
    spec = SegmentConfig(seconds=2.0, clip_frames=4, tok_frames=5, tok_fps=8.0, tok_size=16)
    sparse, s_summary = extract(path, spec, 32, True)
    _, f_summary = extract(path, spec, 32, False)
    assert (s_summary.duration, s_summary.n_segments) == (f_summary.duration, f_summary.n_segments)
    assert s_summary.decoded < f_summary.decoded
    assert assert_within_tolerance(path, sparse, spec, 32) <= 1.0


@pytest.mark.parametrize("n_frames", [80, 75])  # 10 s; 9.375 s, a kept partial segment
@pytest.mark.parametrize("declared", [None, 9.0, 1.0])
def test_the_last_segment_whatever_the_container_declares(tmp_path, n_frames, declared):
    path = tmp_path / "v.mkv"
    write_frames(path, numbered(n_frames), keyframe_every=8)
    if declared is not None:
        set_matroska_duration(path, declared)  # 9.0 and 1.0 mispredict the tail: it is read a second time
    spec = SegmentConfig(seconds=2.0, clip_frames=4, tok_frames=5, tok_fps=8.0, tok_size=16)
    sparse, summary = extract(path, spec, 32, True, chunk=3)
    assert summary.duration == n_frames / 8 and summary.fps == pytest.approx(8.0)
    assert summary.n_segments == 5
    assert assert_within_tolerance(path, sparse, spec, 32) <= 1.0


@pytest.mark.parametrize(
    "name,codec,options",
    [
        ("v.mkv", "mpeg2video", {"g": "45", "bf": "2"}),  # open GOPs: B-frames before a keyframe refer across it
        ("v.mkv", "mpeg4", {"g": "40", "bf": "2"}),
        ("v.webm", "libvpx-vp9", {"g": "60", "lag-in-frames": "16"}),  # hidden reference frames
        ("v.mp4", "libx265", {"g": "60", "bf": "3"}),
    ],
)
def test_other_codecs_give_full_decoding_frames_within_tolerance(tmp_path, name, codec, options):
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    n = 14 * FPS
    plan = video_plan(CorpusSpec(videos=1, minutes=(1, 2), seed=3), 0, n)
    path = tmp_path / name
    write_frames(path, render_frames(plan, np.arange(n), FPS, 64)[0], fps=FPS, codec=codec, options=options)
    sparse, s_summary = extract(path, SPEC, 32, True)
    _, f_summary = extract(path, SPEC, 32, False)
    assert (s_summary.duration, s_summary.n_segments) == (f_summary.duration, f_summary.n_segments) == (14.0, 3)
    assert s_summary.decoded < 0.8 * f_summary.decoded
    assert assert_within_tolerance(path, sparse, SPEC, 32) <= 1.0
