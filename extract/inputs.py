"""Which videos a job reads: a directory, a text file of paths/URIs, or a parquet/CSV table.

- directory: every file below it with a video extension, in sorted order;
- `.txt` / `.lst`: one path or URI a line (blank lines and `#` comments skipped);
- `.parquet` / `.csv`: a `uri` column, an optional `id` column, any other columns (labels) carried
  into the manifest;
- a single video file.

Relative paths in a list or table resolve against the list's own directory. A video's id is the
table's `id` when given, else a hash of its normalised URI, so the same input gives the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation.errors import LvmaeError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".flv", ".wmv", ".3gp", ".ogv"}
)
LIST_EXTENSIONS = frozenset({".txt", ".lst"})
TABLE_EXTENSIONS = frozenset({".parquet", ".csv"})


class InputError(LvmaeError, ValueError):
    """The input list itself is unusable (missing, wrong columns, duplicate ids); names the file."""


@dataclass(frozen=True)
class InputVideo:
    uri: str  # absolute local path or a URI with a scheme
    video_id: str
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def normalise_uri(uri: str, base: Path | None = None) -> str:
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        if scheme != "file":
            return f"{scheme.lower()}://{rest}"
        uri = rest
    path = Path(uri).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return str(path.resolve())


def video_id_for(uri: str) -> str:
    """A stable id: the first 16 hex digits of sha256 of the normalised URI."""
    return hashlib.sha256(uri.encode()).hexdigest()[:16]


def list_inputs(source: str | Path) -> list[InputVideo]:
    source = Path(source).expanduser()
    if not source.exists():
        raise InputError(f"extract.inputs: {str(source)!r} does not exist")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        videos = [_video(str(p.resolve())) for p in files]
    elif source.suffix.lower() in LIST_EXTENSIONS:
        lines = [ln.strip() for ln in source.read_text().splitlines()]
        videos = [_video(normalise_uri(ln, source.parent.resolve())) for ln in lines if ln and not ln.startswith("#")]
    elif source.suffix.lower() in TABLE_EXTENSIONS:
        videos = _from_table(source)
    else:
        videos = [_video(str(source.resolve()))]
    _check_unique(videos, source)
    return videos


def _video(uri: str, video_id: str | None = None, extra: dict | None = None) -> InputVideo:
    return InputVideo(uri, video_id or video_id_for(uri), extra or {})


def _from_table(path: Path) -> list[InputVideo]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path) if path.suffix.lower() == ".parquet" else pacsv.read_csv(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise InputError(f"{path}: cannot read the input table ({exc})") from exc
    if "uri" not in table.column_names:
        raise InputError(f"{path}: no 'uri' column (columns: {', '.join(table.column_names)})")
    base = path.parent.resolve()
    videos = []
    for row in table.to_pylist():
        if not row["uri"]:
            raise InputError(f"{path}: row {len(videos)} has an empty uri")
        extra = {k: v for k, v in row.items() if k not in ("uri", "id")}
        given = row.get("id")
        videos.append(
            _video(normalise_uri(str(row["uri"]), base), str(given) if given not in (None, "") else None, extra)
        )
    return videos


def _check_unique(videos: list[InputVideo], source: Path) -> None:
    seen: dict[str, str] = {}
    for v in videos:
        if v.video_id in seen:
            raise InputError(f"{source}: video id {v.video_id!r} is used twice ({seen[v.video_id]} and {v.uri})")
        seen[v.video_id] = v.uri
