"""Search: a text (or a segment, by example) -> the moments of the indexed videos that show it.

Shape letters: `m` queries, `h` segment hits per query, `D` embedding width.

    text -> the store's text tower -> (1, D) -> segment index -> h hits -> moments (`retrieval.moments`)
         -> each moment's best caption from the caption bank

`Searcher` is the whole query path over a loaded `SegmentIndex`; it needs no store, so a benchmark can
drive it over synthetic vectors. `open_searcher` is how the CLI makes one: it loads the index, refuses
a stale one, and loads the text tower and caption bank the first time a text query needs them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lvmae.foundation.schema import EncoderConfig, RetrievalConfig
from lvmae.retrieval import placement
from lvmae.retrieval.captions import CaptionBank, query_precision, text_encoder_for, text_refusal
from lvmae.retrieval.errors import RetrievalError
from lvmae.retrieval.index import SegmentIndex, normalized
from lvmae.retrieval.moments import SPAN_TOUCH_S, Moment, merge_hits, select


def clock(seconds: float) -> str:
    """Seconds as h:mm:ss (whole seconds, rounded down)."""
    s = int(math.floor(max(seconds, 0.0) + 1e-6))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def moment_times(m: Moment) -> tuple[float, float, float]:
    """Where to show a moment: its start, middle and end. The end frame is the middle of the last
    segment: a step may end inside it, and its last instant would show the next step."""
    half = (m.best[1] - m.best[0]) / 2
    return m.start, (m.start + m.end) / 2, max(m.start, m.end - half)


_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d*)?)$")


def parse_like(text: str) -> tuple[str, float]:
    """'VIDEO_ID@SECONDS' (seconds as 95, 95.5, 1:35 or 0:01:35) -> (video id, seconds)."""
    video_id, at, when = text.rpartition("@")
    if not at or not video_id or not when:
        raise RetrievalError(f"--like {text!r}: expected VIDEO_ID@SECONDS, e.g. v3f2a9c0d1e2b4a6@95 or …@0:01:35")
    match = _CLOCK.match(when.strip())
    try:
        if match:
            hours, minutes, secs = match.groups()
            seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
        else:
            seconds = float(when)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise RetrievalError(f"--like {text!r}: {when!r} is not a time (seconds, m:ss or h:mm:ss)")
    return video_id, seconds


@dataclass(frozen=True)
class Result:
    """One moment answering one query, ranked."""

    query: str
    rank: int  # from 1
    moment: Moment
    uri: str | None  # the video, as the store's manifest names it
    caption: str | None  # the caption bank's best caption for the moment's best segment

    def to_json(self) -> dict[str, Any]:
        m = self.moment
        return {
            "query": self.query,
            "rank": self.rank,
            "video_id": m.video_id,
            "uri": self.uri,
            "start": round(m.start, 3),
            "end": round(m.end, 3),
            "score": round(m.score, 6),
            "best": [round(m.best[0], 3), round(m.best[1], 3)],
            "caption": self.caption,
        }


class Searcher:
    """Queries over one segment index. `text_tower` makes the text encoder on first use (None: text
    queries are refused with `refusal`); `bank` gives each moment a caption."""

    def __init__(
        self,
        index: SegmentIndex,
        cfg: RetrievalConfig,
        *,
        text_tower: Callable[[], Any] | None = None,
        bank: Callable[[Any], CaptionBank | None] | CaptionBank | None = None,
        uris: dict[str, str] | None = None,
        refusal: Exception | None = None,
    ):
        self.index = index
        self.cfg = cfg
        index.configure(cfg)
        self._make_tower = text_tower
        self._tower: Any = None
        self._bank = bank
        self.uris = uris or {}
        self.refusal = refusal

    @property
    def tower(self) -> Any:
        if self._tower is None:
            if self.refusal is not None:
                raise self.refusal
            if self._make_tower is None:
                raise RetrievalError("this searcher has no text encoder: query by example (like) only")
            self._tower = self._make_tower()
        return self._tower

    @property
    def bank(self) -> CaptionBank | None:
        if callable(self._bank) and not isinstance(self._bank, CaptionBank):
            self._bank = self._bank(self.tower) if self.refusal is None else None
        return self._bank

    def text(self, queries: Sequence[str], *, k: int | None = None, per_video: int | None = None) -> list[list[Result]]:
        """The top moments of each text query, in query order."""
        queries = checked_queries(queries)
        return self.answer(queries, self.tower.encode_text(queries), k=k, per_video=per_video)

    def answer(
        self, queries: Sequence[str], vectors: np.ndarray, *, k: int | None = None, per_video: int | None = None
    ) -> list[list[Result]]:
        """The top moments of text queries already encoded (`vectors` (m, D), one a query, by the tower)."""
        k, per_video = self._limits(k, per_video)
        if vectors.shape[1] != self.index.dim:
            raise RetrievalError(
                f"the text encoder gives width {vectors.shape[1]}; the index holds width {self.index.dim}"
            )
        scores, positions = self.index.search(vectors, max(self.cfg.depth, k))  # (m, h)
        background = self.index.background(vectors)  # (m,)
        return [
            self._results(
                q, scores[i], positions[i], k, per_video, query_vector=vectors[i], background=float(background[i])
            )
            for i, q in enumerate(queries)
        ]

    def like(
        self, video_id: str, seconds: float, *, k: int | None = None, per_video: int | None = None
    ) -> list[Result]:
        """The top moments like the segment of `video_id` on screen at `seconds`, itself excluded."""
        k, per_video = self._limits(k, per_video)
        position = self.position_at(video_id, seconds)
        vector = self.index.vectors(np.asarray([position]))  # (1, D)
        scores, positions = self.index.search(vector, max(self.cfg.depth, k) + 1)
        label = f"like {video_id}@{clock(seconds)}"
        background = float(self.index.background(vector)[0])
        return self._results(
            label,
            scores[0],
            positions[0],
            k,
            per_video,
            query_vector=vector[0],
            background=background,
            exclude=(video_id, seconds),
        )

    def position_at(self, video_id: str, seconds: float) -> int:
        """The index position of the segment of `video_id` whose span holds `seconds`."""
        positions = self.index.ids.positions_of(video_id)
        if not len(positions):
            known = ", ".join(self.index.ids.videos[:3])
            raise RetrievalError(
                f"--like: no video {video_id!r} in the index ({len(self.index.ids.videos)} videos, e.g. {known})"
            )
        start, end = self.index.ids.t_start[positions], self.index.ids.t_end[positions]
        inside = np.flatnonzero((start <= seconds) & (seconds < end))
        if not len(inside):
            raise RetrievalError(
                f"--like: video {video_id!r} has no segment at {seconds:g} s (its segments cover "
                f"{float(start.min()):g}–{float(end.max()):g} s)"
            )
        return int(positions[inside[0]])

    GROW_STEP = 8  # segments scored at a time while a moment grows
    GROW_MAX = 512  # segments a moment grows by on each side, at most

    STRONG = 0.5
    """A strong answer scores at least this fraction of the way from the query's background to its best."""

    def _labels(self, vectors: np.ndarray) -> np.ndarray | None:
        """What segments with these vectors (n, D) show: their best caption's index in the bank (None
        without a bank). Moments neither merge nor grow across a change of it."""
        bank = self.bank
        if bank is None or not len(vectors):
            return None
        return bank.best(vectors, k=1)[1][:, 0]

    def _grow(self, m: Moment, q: np.ndarray, tolerance: float) -> Moment:
        """`m` extended over the adjacent segments of its video (rows next to it, spans touching) whose
        score stays within `tolerance` of its best and that show what its best segment shows (the same
        best caption, when there is a bank): the hits are the top `depth` of the whole index, so a long
        step may have only some of its segments among them."""
        ids, floor = self.index.ids, m.score - tolerance
        best_row = int(ids.row[m.best_position])
        first = m.best_position - (best_row - m.rows[0])  # a video's rows sit at consecutive positions
        last = m.best_position + (m.rows[1] - best_row)
        if not (0 <= first <= last < len(ids)) or ids.video[first] != ids.video[last]:
            return m
        shows = self._labels(self.index.vectors(np.asarray([m.best_position])))
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        ends = {}
        for side, edge in ((-1, first), (1, last)):
            while abs(edge - (first if side < 0 else last)) < self.GROW_MAX:
                steps = np.arange(1, self.GROW_STEP + 1) * side + edge
                steps = steps[(steps >= 0) & (steps < len(ids))]
                # a step joins while it is the next row of the same video, touching in time, and scores high
                prev = np.concatenate([[edge], steps[:-1]])
                adjacent = (ids.video[steps] == ids.video[edge]) & (ids.row[steps] == ids.row[prev] + side)
                touch = np.where(side < 0, ids.t_end[steps] - ids.t_start[prev], ids.t_start[steps] - ids.t_end[prev])
                vectors = self.index.vectors(steps)  # (s, D), read once for the score and the label
                good = np.einsum("sd,d->s", normalized(vectors), q) >= floor  # no BLAS threads
                if shows is not None:
                    good &= self._labels(vectors) == shows[0]
                ok = np.cumprod(adjacent & (np.abs(touch) <= SPAN_TOUCH_S) & good).astype(bool)
                edge = int(steps[ok][-1]) if ok.any() else edge
                if not ok.all() or len(steps) < self.GROW_STEP:
                    break
            ends[side] = edge
        a, b = ends[-1], ends[1]
        if (a, b) == (first, last):
            return m
        return replace(
            m,
            start=float(ids.t_start[a]),
            end=float(ids.t_end[b]),
            rows=(int(ids.row[a]), int(ids.row[b])),
            segments=m.segments + (first - a) + (b - last),
        )

    def _limits(self, k: int | None, per_video: int | None) -> tuple[int, int]:
        k = self.cfg.k if k is None else int(k)
        per_video = self.cfg.per_video if per_video is None else int(per_video)
        if k < 1:
            raise RetrievalError(f"-k {k}: ask for at least 1 result")
        if per_video < 0:
            raise RetrievalError(f"--per-video {per_video}: 0 (no limit) or more")
        return k, per_video

    def _results(
        self,
        query: str,
        scores: np.ndarray,
        positions: np.ndarray,
        k: int,
        per_video: int,
        *,
        query_vector: np.ndarray,
        background: float,
        exclude: tuple[str, float] | None = None,
    ) -> list[Result]:
        ids = self.index.ids
        found = positions >= 0
        scores, positions = scores[found], positions[found]
        # adjacent hits join a moment within merge_margin of how far the best stands above the background
        tolerance = self.cfg.merge_margin * max(float(scores.max()) - background, 0.0) if len(scores) else 0.0
        moments = merge_hits(
            ids.video_ids(positions),
            ids.row[positions],
            ids.t_start[positions],
            ids.t_end[positions],
            scores,
            positions,
            k=None,
            tolerance=tolerance,
            label=self._labels(self.index.vectors(positions)) if self.bank is not None and len(positions) else None,
        )
        # A query whose true matches outnumber its hits (a caption shown for an hour) has only part of each
        # step among them: the best moments grow along their videos over the segments the hits left out.
        # Grown best first until k moments stand after merging, limits and exclusion: the rest score lower.
        # The per-video cap makes way only for other videos' strong answers: those standing at least
        # STRONG of the way from the background to the best.
        strong = background + self.STRONG * max(float(scores.max()) - background, 0.0) if len(scores) else None
        grown: list[Moment] = []
        for m in moments:
            grown.append(self._grow(m, query_vector, tolerance))
            if len(select(grown, k=k, per_video=per_video, exclude=exclude, strong=strong)) == k:
                break
        moments = select(grown, k=k, per_video=per_video, exclude=exclude, strong=strong)
        bank = self.bank
        captions: list[str | None] = [None] * len(moments)
        if bank is not None and moments:
            captions = list(bank.caption_of(self.index.vectors(np.asarray([m.best_position for m in moments]))))
        results = []
        for rank, (m, caption) in enumerate(zip(moments, captions), start=1):
            results.append(Result(query, rank, m, self.uris.get(m.video_id), caption))
        return results


def open_searcher(
    folder: str | Path,
    cfg: RetrievalConfig,
    encoder: EncoderConfig,
    *,
    captions: str | Path | None = None,
) -> Searcher:
    """The searcher of the index in `folder`, checked against its store (a stale index is refused
    with the command that updates it). The text tower and the caption bank (`captions`, default
    `cfg.captions`; none when that file does not exist) load on the first query that needs them."""
    from lvmae.store import Store

    index = SegmentIndex.load(folder, device=placement.resolve(cfg.device))
    store = Store.open(index.store_uri)
    index.check_fresh(store)
    videos = store.videos().select(["video_id", "uri"]).to_pydict()
    uris = dict(zip(videos["video_id"], videos["uri"]))
    identity = store.identity.to_attrs()
    bank_file = Path(captions) if captions is not None else cfg.captions
    if captions is not None and not bank_file.is_file():
        raise RetrievalError(f"--captions {bank_file}: no such file")

    def bank(tower) -> CaptionBank | None:
        if not bank_file.is_file():
            return None
        loaded = CaptionBank.load(bank_file, tower, cache_dir=Path(folder) / "captions")
        loaded.check_store(index.store_uri, identity)
        return loaded

    return Searcher(
        index,
        cfg,
        text_tower=lambda: text_encoder_for(
            index.store_uri, identity, encoder, precision=query_precision(cfg.text_precision, encoder.device)
        ),
        bank=bank,
        uris=uris,
        refusal=text_refusal(index.store_uri, identity),
    )


def checked_queries(queries: Sequence[str]) -> list[str]:
    """The queries, stripped; an empty one is a RetrievalError saying which."""
    queries = [str(q).strip() for q in queries]
    for i, q in enumerate(queries):
        if not q:
            where = f" (query {i + 1} of {len(queries)})" if len(queries) > 1 else ""
            raise RetrievalError(f'empty query{where}: say what to look for, e.g. "a red circle on a blue background"')
    return queries


def results_table(results: Sequence[Result], *, query: str) -> str:
    """The moments of one query as a table: rank, video, start–end, score, the bank's best caption."""
    lines = ["", f'"{query}": {len(results)} moment{"s" * (len(results) != 1)}']
    if not results:
        return "\n".join(lines)
    rows = [
        (
            str(r.rank),
            r.moment.video_id,
            f"{clock(r.moment.start)}–{clock(r.moment.end)}",
            f"{r.moment.score:.3f}",
            r.caption or "",
        )
        for r in results
    ]
    head = ("rank", "video", "start–end", "score", "caption")
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) for i in range(4)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  " + head[4])
    for row in rows:
        lines.append(
            "  ".join(c.rjust(w) if i in (0, 3) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
            + "  "
            + row[4]
        )
    return "\n".join(lines)
