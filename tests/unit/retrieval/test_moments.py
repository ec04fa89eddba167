import numpy as np
import pytest

from lvmae.retrieval.moments import Moment, merge_hits, select


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
    # a's third moment waits behind the other videos' moments (no `strong`: every one of them), not dropped
    assert [x.video_id for x in merge_hits(*hits(rows), k=10, per_video=2)] == ["a", "a", "b", "c", "a"]
    assert [x.video_id for x in merge_hits(*hits(rows), k=4, per_video=2)] == ["a", "a", "b", "c"]
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


def test_adjacent_steps_that_show_different_things_stay_two_moments():
    # Rows 0-3 show one caption (label 7), rows 4-7 another (label 9); the query scores both nearly alike.
    rows = [("a", r, 0.80 + 0.001 * (r % 2)) for r in range(8)] + [FLOOR]
    label = np.array([7, 7, 7, 7, 9, 9, 9, 9, 0])
    merged = merge_hits(*hits(rows), k=10, tolerance=0.05)
    assert spans(merged)[0] == ("a", 0, 16)  # without labels: one moment across both steps
    split = merge_hits(*hits(rows), k=10, tolerance=0.05, label=label)
    assert sorted(spans(split)[:2]) == [("a", 0, 8), ("a", 8, 16)]


def test_no_two_moments_of_an_answer_overlap_even_when_a_union_reaches_a_third():
    def moment(start, end, score):
        first, last = int(start // 2), int(end // 2) - 1
        return Moment("a", start, end, score, (start, start + 2), first, (first, last), last - first + 1)

    # 10-20 is best; 30-50 next; 18-40 overlaps the first, and their union 10-40 reaches the second.
    answer = select([moment(10, 20, 0.9), moment(30, 50, 0.85), moment(18, 40, 0.8)], k=10)
    assert [(m.start, m.end) for m in answer] == [(10, 50)]
    assert answer[0].score == 0.9 and answer[0].rows == (5, 24) and answer[0].segments == 20
    for a in answer:
        for b in answer:
            assert a is b or not (a.video_id == b.video_id and a.start < b.end and b.start < a.end)


def test_the_per_video_cap_never_puts_a_worse_answer_before_a_better_one():
    # One long video shows the query six times (0.9); video b once (0.85); c and d only faintly (0.3).
    rows = [("a", 10 * i, 0.9 - 0.001 * i) for i in range(6)] + [("b", 0, 0.85), ("c", 0, 0.3), ("d", 0, 0.3)]
    answer = [m.video_id for m in merge_hits(*hits(rows), k=10, per_video=3, tolerance=0.0)]
    # Without a strong floor: a's later moments wait behind b, c and d (the old cap dropped them).
    assert answer == ["a", "a", "a", "b", "c", "d", "a", "a", "a"]
    strong = select(merge_hits(*hits(rows), k=None, tolerance=0.0), k=10, per_video=3, strong=0.6)
    # With it: b's strong answer comes in after a's first three; a's other three before the faint ones.
    assert [m.video_id for m in strong] == ["a", "a", "a", "b", "a", "a", "a", "c", "d"]
    only_a = [r for r in rows if r[0] != "b"]
    strong = select(merge_hits(*hits(only_a), k=None, tolerance=0.0), k=8, per_video=3, strong=0.6)
    assert [m.video_id for m in strong][:6] == ["a"] * 6  # nothing else shows it: all six first
