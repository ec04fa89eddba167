"""Moments: segment hits merged into the stretches of video a user looks for.

A step of a procedure lasts many segments, and every one of them matches a query about it; a list of
segments would show one 40 s step as twenty results. `merge_hits` turns the hits of one query into
moments, growing them from their peaks the way a watershed does: hits are taken best first, and a hit
next to a moment (the adjacent row of the same video, spans touching) joins it when its score is within
`tolerance` of the moment's best; a hit between two moments within `tolerance` of both merges them (a flat
stretch with noisy scores is one moment, not three). A hit that no moment takes starts its own. So a
step is one moment, two steps with a dip in score between them stay two, and a moment never spans two
videos, nor a gap: rows that are not adjacent, or adjacent rows whose spans do not touch (a stretch the
decoder could not read), stay apart.

The tolerance is in score units, and the caller sets it from the query's own scale: `retrieval.search`
uses a fraction (`retrieval.merge_margin`) of how far the best hit stands above the query's 10th-percentile
score over the index (its background), which keeps it meaningful for any encoder: cosines of real CLIP text and
images spread over a few hundredths, the toy world's stand-in over tenths. Not the hits' own range: when
a query's hits are all true matches (a caption shown for minutes across a corpus), that range shrinks to
the noise and every step would fall apart into single segments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

SPAN_TOUCH_S = 1e-3
"""Spans are float32 seconds: an end and the next start this close are the same instant."""

MARGIN = 0.25
"""Without a `tolerance`: a quarter of the hits' own score range."""


@dataclass(frozen=True)
class Moment:
    """One result: a stretch `[start, end)` seconds of one video and its best segment."""

    video_id: str
    start: float
    end: float
    score: float  # the best segment's cosine similarity
    best: tuple[float, float]  # [start, end) of the best segment
    best_position: int  # the best segment's position in the index (its FAISS id)
    rows: tuple[int, int]  # first and last segment row, within the video
    segments: int  # segments in [start, end)


def merge_hits(
    video_id: np.ndarray,
    row: np.ndarray,
    t_start: np.ndarray,
    t_end: np.ndarray,
    score: np.ndarray,
    position: np.ndarray,
    *,
    k: int | None,
    per_video: int = 0,
    tolerance: float | None = None,
    exclude: tuple[str, float] | None = None,
) -> list[Moment]:
    """The top `k` moments of one query's hits, best first.

    Inputs are per hit, shape (h,): the segment's video id, its row within the video, its span in
    seconds, its score and its position in the index (-1: no hit, as FAISS pads). A (video, row) given
    twice counts once, at its best score. Adjacent hits join a moment within `tolerance` (score units;
    default MARGIN times the hits' own score range) of its best. `per_video` > 0 keeps at most that many moments of one video.
    `exclude=(video_id, seconds)` drops the moment holding that instant (a query by example is not its
    own answer).
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    keep = np.isfinite(score) & (position >= 0)
    vid, r, a, b, s, p = (np.asarray(x)[keep] for x in (video_id, row, t_start, t_end, score, position))
    order = np.argsort(-s, kind="stable")  # best first; a duplicate (video, row) meets its best copy first
    if tolerance is None:
        tolerance = MARGIN * float(s.max() - s.min()) if len(s) else 0.0
    hit_of: dict[tuple[str, int], int] = {}  # (video, row) -> its hit, once taken
    owner: dict[int, int] = {}  # hit -> its moment (an index into `parent`; follow `find`)
    parent: list[int] = []  # union-find over moments
    peak: list[int] = []  # each moment's best hit
    members: list[list[int]] = []

    def find(m: int) -> int:
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    def touching(i: int, j: int) -> bool:  # hit j is the row after hit i, with no gap in time
        return abs(float(b[i]) - float(a[j])) <= SPAN_TOUCH_S

    for i in order:
        key = (str(vid[i]), int(r[i]))
        if key in hit_of:
            continue
        hit_of[key] = i
        near = []
        left, right = hit_of.get((key[0], key[1] - 1)), hit_of.get((key[0], key[1] + 1))
        if left is not None and touching(left, i):
            near.append(find(owner[left]))
        if right is not None and touching(i, right):
            near.append(find(owner[right]))
        near = [m for m in dict.fromkeys(near) if s[i] >= s[peak[m]] - tolerance]
        if not near:  # a peak of its own
            parent.append(len(parent))
            peak.append(i)
            members.append([i])
            owner[i] = len(parent) - 1
            continue
        root = max(near, key=lambda m: s[peak[m]])
        for m in near:  # within tolerance of both neighbours: they are one moment
            if m != root:
                parent[m] = root
                members[root] += members[m]
        members[root].append(i)
        owner[i] = root

    moments: list[Moment] = []
    for m in range(len(parent)):
        if parent[m] != m:
            continue
        hits = sorted(members[m], key=lambda j: int(r[j]))
        best = peak[m]
        moments.append(
            Moment(
                video_id=str(vid[best]),
                start=float(a[hits[0]]),
                end=float(b[hits[-1]]),
                score=float(s[best]),
                best=(float(a[best]), float(b[best])),
                best_position=int(p[best]),
                rows=(int(r[hits[0]]), int(r[hits[-1]])),
                segments=len(hits),
            )
        )
    return select(moments, k=k, per_video=per_video, exclude=exclude)


def select(
    moments: list[Moment], *, k: int | None, per_video: int = 0, exclude: tuple[str, float] | None = None
) -> list[Moment]:
    """The top `k` (None: all) of `moments`, best first: moments of one video that overlap are one (the
    better one's score and best segment, the union of their spans: a moment grown past its hits can
    reach into another of the same step; moments that only touch stay two), at most `per_video` (> 0)
    of a video, and none
    holding the instant `exclude=(video_id, seconds)`."""
    kept: list[Moment] = []
    of_video: dict[str, list[int]] = {}  # video -> indices into kept
    for m in sorted(moments, key=lambda m: (-m.score, m.video_id, m.start)):
        for i in of_video.setdefault(m.video_id, []):
            other = kept[i]  # scores at least as high
            if (
                other.video_id == m.video_id
                and m.start < other.end - SPAN_TOUCH_S
                and other.start < m.end - SPAN_TOUCH_S
            ):
                rows = (min(other.rows[0], m.rows[0]), max(other.rows[1], m.rows[1]))
                kept[i] = replace(
                    other,
                    start=min(other.start, m.start),
                    end=max(other.end, m.end),
                    rows=rows,
                    segments=rows[1] - rows[0] + 1,  # overlapping runs of rows: their union is one run
                )
                break
        else:
            of_video[m.video_id].append(len(kept))
            kept.append(m)
    if exclude is not None:
        kept = [m for m in kept if not (m.video_id == exclude[0] and m.start <= exclude[1] < m.end)]
    if per_video > 0:
        seen: dict[str, int] = {}
        limited = []
        for m in kept:
            seen[m.video_id] = seen.get(m.video_id, 0) + 1
            if seen[m.video_id] <= per_video:
                limited.append(m)
        kept = limited
    return kept if k is None else kept[:k]
