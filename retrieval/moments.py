"""Moments: segment hits merged into the stretches of video a user looks for.

A step of a procedure lasts many segments, and every one of them matches a query about it; a list of
segments would show one 40 s step as twenty results. `merge_hits` turns the hits of one query into
moments, growing them from their peaks the way a watershed does: hits are taken best first, and a hit
next to a moment (the adjacent row of the same video, spans touching) joins it when its score is within
`tolerance` of the moment's best; a hit between two moments within `tolerance` of both merges them (a flat
stretch with noisy scores is one moment, not three). A hit that no moment takes starts its own. So a
step is one moment, two steps with a dip in score between them stay two, and a moment never spans two
videos, nor a gap, nor (given each hit's `label`, the caption bank's best caption for the segment) a
change of what is on screen — two adjacent steps of near captions ("a purple star" then "an orange
star") that both score close to a query stay two moments: rows that are not adjacent, or adjacent rows whose spans do not touch (a stretch the
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
    label: np.ndarray | None = None,
) -> list[Moment]:
    """The top `k` moments of one query's hits, best first.

    Inputs are per hit, shape (h,): the segment's video id, its row within the video, its span in
    seconds, its score and its position in the index (-1: no hit, as FAISS pads). A (video, row) given
    twice counts once, at its best score. Adjacent hits join a moment within `tolerance` (score units;
    default MARGIN times the hits' own score range) of its best. `per_video` > 0 keeps at most that many moments of one video.
    `exclude=(video_id, seconds)` drops the moment holding that instant (a query by example is not its
    own answer). `label` (h,), when given, is what each segment shows (its best caption's index): a hit
    joins only a neighbour with the same label.
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    keep = np.isfinite(score) & (position >= 0)
    vid, r, a, b, s, p = (np.asarray(x)[keep] for x in (video_id, row, t_start, t_end, score, position))
    lab = None if label is None else np.asarray(label)[keep]
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

    def alike(i: int, j: int) -> bool:  # the two segments show the same thing, as far as labels tell
        return lab is None or lab[i] == lab[j]

    for i in order:
        key = (str(vid[i]), int(r[i]))
        if key in hit_of:
            continue
        hit_of[key] = i
        near = []
        left, right = hit_of.get((key[0], key[1] - 1)), hit_of.get((key[0], key[1] + 1))
        if left is not None and touching(left, i) and alike(left, i):
            near.append(find(owner[left]))
        if right is not None and touching(i, right) and alike(i, right):
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
    moments: list[Moment],
    *,
    k: int | None,
    per_video: int = 0,
    exclude: tuple[str, float] | None = None,
    strong: float | None = None,
) -> list[Moment]:
    """The top `k` (None: all) of `moments`, best first: moments of one video that overlap are one (the
    better one's score and best segment, the union of their spans: a moment grown past its hits can
    reach into another of the same step; moments that only touch stay two), so no two moments of an
    answer overlap, also when a union reaches a third; none holding the instant `exclude=(video_id, seconds)`.

    `per_video` (> 0) makes room for other videos without losing answers: a video's moments past its
    first `per_video` wait behind the other videos' strong moments (score >= `strong`: true answers
    of the query, not its background), and come before anything weaker. So one long video that shows
    the query six times gives all six when nothing else shows it, and shares the top with the videos
    that do; a better moment is never dropped for a worse one. Without `strong`, they wait behind
    every moment of the other videos."""
    kept: list[Moment] = []
    folded: set[int] = set()  # indices into kept merged into a better moment
    of_video: dict[str, list[int]] = {}  # video -> indices into kept, best first
    for m in sorted(moments, key=lambda m: (-m.score, m.video_id, m.start)):
        mine = of_video.setdefault(m.video_id, [])
        target = next((i for i in mine if _overlap(kept[i], m)), None)
        if target is None:
            mine.append(len(kept))
            kept.append(m)
            continue
        merged = _union(kept[target], m)
        while True:  # the union may now reach a moment it did not before: fold that in too
            other = next((i for i in mine if i != target and _overlap(kept[i], merged)), None)
            if other is None:
                break
            merged = _union(merged, kept[other])
            folded.add(other)
            mine.remove(other)
        kept[target] = merged
    ordered = [m for i, m in enumerate(kept) if i not in folded]
    if exclude is not None:
        ordered = [m for m in ordered if not (m.video_id == exclude[0] and m.start <= exclude[1] < m.end)]
    if per_video > 0:
        seen: dict[str, int] = {}
        first, waiting = [], []
        for m in ordered:
            seen[m.video_id] = seen.get(m.video_id, 0) + 1
            (first if seen[m.video_id] <= per_video else waiting).append(m)
        floor = -np.inf if strong is None else strong
        ahead = [m for m in first if m.score >= floor]  # best first, as `ordered` is
        rest = sorted([m for m in first if m.score < floor] + waiting, key=lambda m: (-m.score, m.video_id, m.start))
        ordered = ahead + rest
    return ordered if k is None else ordered[:k]


def _overlap(a: Moment, b: Moment) -> bool:
    """Two moments of one video share some time (touching is not sharing)."""
    return a.video_id == b.video_id and b.start < a.end - SPAN_TOUCH_S and a.start < b.end - SPAN_TOUCH_S


def _union(better: Moment, other: Moment) -> Moment:
    """One moment of two that overlap: the better one's score and best segment, the union of their spans."""
    rows = (min(better.rows[0], other.rows[0]), max(better.rows[1], other.rows[1]))
    return replace(
        better,
        start=min(better.start, other.start),
        end=max(better.end, other.end),
        rows=rows,
        segments=rows[1] - rows[0] + 1,  # overlapping runs of rows: their union is one run
    )
