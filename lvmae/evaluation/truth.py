"""What is on screen, when it is known: a truth file of captioned steps per video.

A truth file is a parquet table with one row per step of a video: `video_id`, `t_start`, `t_end`
(seconds of presentation time) and `caption` (what a frame of the step shows); the toy world writes one
as `truth.parquet` beside its `videos/` folder. A segment's truth is the step at its midpoint (a
segment straddling two steps shows mostly the one at its middle), and its step is that row's order in
the video, so two consecutive steps with the same caption are still two steps.

`find_truth` looks for the file where the toy world puts it: `truth.parquet` in the folder of a
video's file or the folder above it (a corpus root with `videos/` inside).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lvmae.foundation.files import local_path
from lvmae.retrieval.errors import RetrievalError

TRUTH_FILE = "truth.parquet"
COLUMNS = ("video_id", "t_start", "t_end", "caption")


@dataclass(frozen=True)
class Steps:
    """One video's steps, in time order."""

    starts: np.ndarray  # (n,) float64 seconds
    ends: np.ndarray  # (n,) float64 seconds
    captions: list[str]


@dataclass
class Truth:
    source: str  # the file it came from
    videos: dict[str, Steps]

    @classmethod
    def load(cls, path: str | Path) -> Truth:
        path = Path(path)
        if not path.is_file():
            raise RetrievalError(f"truth file {path}: no such file")
        try:
            table = pq.read_table(path)
        except Exception as exc:  # not parquet, or unreadable: say which file
            raise RetrievalError(f"truth file {path} is not a readable parquet table: {exc}") from None
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise RetrievalError(
                f"truth file {path} lacks column(s) {', '.join(missing)}: it needs one row per step with "
                f"{', '.join(COLUMNS)}"
            )
        data = table.select(list(COLUMNS)).to_pydict()
        rows: dict[str, list[tuple[float, float, str]]] = {}
        for video_id, a, b, caption in zip(*(data[c] for c in COLUMNS)):
            if a is None or b is None or caption is None or not b > a:
                raise RetrievalError(
                    f"truth file {path}: video {video_id} has a step [{a}, {b}) {caption!r}; every step needs "
                    "t_end > t_start and a caption"
                )
            rows.setdefault(str(video_id), []).append((float(a), float(b), str(caption)))
        videos = {}
        for video_id, steps in rows.items():
            steps.sort()
            videos[video_id] = Steps(
                np.array([s[0] for s in steps]), np.array([s[1] for s in steps]), [s[2] for s in steps]
            )
        return cls(str(path), videos)

    def missing(self, video_ids: Iterable[str]) -> list[str]:
        return [v for v in video_ids if v not in self.videos]

    def labels(self, video_id: str, span: np.ndarray) -> tuple[list[str | None], np.ndarray]:
        """For segments with `span` (T, 2) seconds: the caption at each midpoint (None where no step
        covers it) and the step's index in the video ((T,) int64, -1 where none)."""
        steps = self.videos[video_id]
        mid = span.astype(np.float64).mean(1)  # (T,)
        at = np.searchsorted(steps.starts, mid, side="right") - 1  # last step starting at or before
        inside = (at >= 0) & (mid < steps.ends[np.clip(at, 0, None)])
        step = np.where(inside, at, -1)
        return [steps.captions[s] if s >= 0 else None for s in step.tolist()], step.astype(np.int64)


def find_truth(uris: Iterable[str]) -> Path | None:
    """The toy-world truth file of videos with these uris: `truth.parquet` in a video file's folder
    or the one above; the first found, or None."""
    seen: set[Path] = set()
    for uri in uris:
        path = local_path(uri)
        if path is None:
            continue  # a remote video: nothing beside it to look at
        folder = path.parent
        for candidate in (folder / TRUTH_FILE, folder.parent / TRUTH_FILE):
            if candidate in seen:
                continue
            seen.add(candidate)
            if candidate.is_file():
                return candidate
    return None


def resolve_truth(setting: str | Path | None, uris: Iterable[str]) -> Truth | None:
    """The truth to score against: `setting` a file, "none" (score against the original's top-1), or
    "auto"/None: `find_truth` beside the videos, or none when there is no such file."""
    if setting is not None and str(setting) == "none":
        return None
    if setting is None or str(setting) == "auto":
        found = find_truth(uris)
        return Truth.load(found) if found is not None else None
    return Truth.load(setting)
