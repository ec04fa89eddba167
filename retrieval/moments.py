"""Moments: segment hits merged into the stretches of video a user looks for.

A step of a procedure lasts many segments, and every one of them matches a query about it; a list of
segments would show one 40 s step as twenty results. `merge_hits` turns the hits of one query into
moments, growing them from their peaks the way a watershed does: hits are taken best first, and a hit
next to a moment (the adjacent row of the same video, spans touching) joins it when its score is within
`margin` of the moment's best; a hit between two moments within `margin` of both merges them (a flat
stretch with noisy scores is one moment, not three). A hit that no moment takes starts its own. So a
step is one moment, two steps with a dip in score between them stay two, and a moment never spans two
videos, nor a gap: rows that are not adjacent, or adjacent rows whose spans do not touch (a stretch the
decoder could not read), stay apart.

`margin` is a fraction of the query's own score range over its hits (best minus worst), which keeps it
meaningful for any encoder: cosines of real CLIP text and images spread over a few hundredths, the toy
world's stand-in over tenths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPAN_TOUCH_S = 1e-3
"""Spans are float32 seconds: an end and the next start this close are the same instant."""

MARGIN = 0.25
"""Default `margin`: a quarter of the query's score range over its hits."""


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
    segments: int  # hits merged


def merge_hits(
    video_id: np.ndarray,
    row: np.ndarray,
    t_start: np.ndarray,
    t_end: np.ndarray,
    score: np.ndarray,
    position: np.ndarray,
    *,
    k: int,
    per_video: int = 0,
    margin: float = MARGIN,
    exclude: tuple[str, float] | None = None,
) -> list[Moment]:
    """The top `k` moments of one query's hits, best first.

    Inputs are per hit, shape (h,): the segment's video id, its row within the video, its span in
    seconds, its score and its position in the index (-1: no hit, as FAISS pads). A (video, row) given
    twice counts once, at its best score. `margin` is the fraction of the hits' score range within which
    adjacent hits join a moment. `per_video` > 0 keeps at most that many moments of one video.
    `exclude=(video_id, seconds)` drops the moment holding that instant (a query by example is not its
    own answer).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    keep = np.isfinite(score) & (position >= 0)
    vid, r, a, b, s, p = (np.asarray(x)[keep] for x in (video_id, row, t_start, t_end, score, position))
    order = np.argsort(-s, kind="stable")  # best first; a duplicate (video, row) meets its best copy first
    tolerance = float(margin) * float(s.max() - s.min()) if len(s) else 0.0
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
        for m in near:  # within margin of both neighbours: they are one moment
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
    if exclude is not None:
        moments = [m for m in moments if not (m.video_id == exclude[0] and m.start <= exclude[1] < m.end)]
    moments.sort(key=lambda m: (-m.score, m.video_id, m.start))
    if per_video > 0:
        seen: dict[str, int] = {}
        kept = []
        for m in moments:
            seen[m.video_id] = seen.get(m.video_id, 0) + 1
            if seen[m.video_id] <= per_video:
                kept.append(m)
        moments = kept
    return moments[:k]
