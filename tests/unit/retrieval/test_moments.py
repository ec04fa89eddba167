import numpy as np
import pytest

from lvmae.retrieval.moments import merge_hits


def hits(rows):
    """rows: (video, row, score) -> the arrays merge_hits takes; row r spans [2r, 2r + 2)."""
    video = np.array([r[0] for r in rows], dtype=object)
    row = np.array([r[1] for r in rows])
    start = row * 2.0
    return video, row, start, start + 2, np.array([r[2] for r in rows], dtype=np.float32), np.arange(len(rows))


FLOOR = ("z", 100, 0.0)  # a far-off weak hit: the query's score range is then [0, best]


def spans(moments):
    return [(m.video_id, m.start, m.end) for m in moments]


def test_a_step_of_noisy_scores_is_one_moment_scored_by_its_best_segment():
    m = merge_hits(*hits([("a", 3, 0.80), ("a", 4, 0.82), ("a", 5, 0.79), ("a", 6, 0.81), FLOOR]), k=10)
    assert spans(m)[0] == ("a", 6, 14)
    assert m[0].score == pytest.approx(0.82) and m[0].best == (8, 10) and m[0].segments == 4
    assert m[0].best_position == 1 and m[0].rows == (3, 6)


def test_two_steps_with_a_dip_between_them_stay_two_moments():
    rows = [("a", r, 0.8) for r in (0, 1, 2, 5, 6, 7)] + [("a", 3, 0.3), ("a", 4, 0.3), FLOOR]
    m = merge_hits(*hits(rows), k=10)
    assert spans(m)[:2] == [("a", 0, 6), ("a", 10, 16)]
    assert ("a", 6, 10) in spans(m)  # the dip is a weaker moment of its own
    # with the whole score range as margin, every run of adjacent hits is one moment
    assert spans(merge_hits(*hits(rows), k=10, tolerance=1.0))[0] == ("a", 0, 16)
    # hits all near the best (a caption shown everywhere): a tolerance on the query's own scale keeps steps whole
    saturated = [("a", r, 0.97 - 0.004 * (r % 2)) for r in range(6)] + [("b", 0, 0.965)]
    assert len(merge_hits(*hits(saturated), k=10)) > 2  # the hits' own range is all noise
    assert spans(merge_hits(*hits(saturated), k=10, tolerance=0.05))[0] == ("a", 0, 12)


def test_a_moment_never_spans_two_videos():
    m = merge_hits(*hits([("a", 4, 0.9), ("b", 5, 0.9), ("a", 5, 0.9), FLOOR]), k=10)
    assert sorted(spans(m))[:2] == [("a", 8, 12), ("b", 10, 12)]


def test_a_moment_never_spans_a_gap_in_time():
    video, row, start, end, score, pos = hits([("a", 4, 0.9), ("a", 5, 0.9)])
    start[1], end[1] = 20.0, 22.0  # row 5 comes after a stretch the decoder could not read
    m = merge_hits(video, row, start, end, score, pos, k=10, tolerance=1.0)
    assert [(x.start, x.end) for x in m] == [(8, 10), (20, 22)]


def test_per_video_limit_k_and_exclusion():
    rows = [("a", 0, 0.9), ("a", 2, 0.8), ("a", 4, 0.7), ("b", 0, 0.6), ("c", 0, 0.5)]
    assert [x.video_id for x in merge_hits(*hits(rows), k=10, per_video=2)] == ["a", "a", "b", "c"]
    assert [x.video_id for x in merge_hits(*hits(rows), k=2)] == ["a", "a"]
    kept = merge_hits(*hits(rows), k=10, exclude=("a", 1.0))
    assert ("a", 0, 2) not in spans(kept) and len(kept) == 4


def test_duplicate_hits_count_once_and_missing_results_are_dropped():
    video, row, start, end, score, pos = hits([("a", 1, 0.4), ("a", 1, 0.9), ("a", 2, 0.85), ("a", 7, 0.1)])
    pos[3] = -1  # FAISS's padding for results it did not find
    m = merge_hits(video, row, start, end, score, pos, k=10)
    assert len(m) == 1 and m[0].segments == 2 and m[0].score == pytest.approx(0.9)
    assert merge_hits(video[:0], row[:0], start[:0], end[:0], score[:0], pos[:0], k=3) == []
    with pytest.raises(ValueError):
        merge_hits(video, row, start, end, score, pos, k=0)
