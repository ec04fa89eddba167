"""Which videos a job reads: a directory, a text file of paths/URIs, or a parquet/CSV table.

- directory: every file below it with a video extension, in sorted order;
- `.txt` / `.lst`: one path or URI a line (blank lines and comments skipped: a comment is `#` alone or
  followed by a space, so `#take1.mp4` is a file), in UTF-8 (a byte order mark is allowed); a list in another encoding is an `InputError` naming the line and byte, not
  a guess at what its bytes meant;
- `.parquet` / `.csv`: a `uri` column, an optional `id` column, any other columns (labels) carried
  into the manifest;
- a single video file.

Relative paths in a list or table resolve against the list's own directory; a `file://` URI is the
local path it spells (percent-decoded; host empty or `localhost`). The input itself is a local path:
remote videos are named inside a local list or table. A video's id is the
table's `id` when given, else a hash of its normalised URI, so the same input gives the same ids.
An input that yields no video at all is an `InputError`; `scan_inputs` also counts the files a
directory search skipped for their extension.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvmae.foundation.errors import LvmaeError

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
        if scheme.lower() != "file":
            return f"{scheme.lower()}://{rest}"
        parts = urllib.parse.urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise InputError(f"{_show(uri)}: a file URI on host {parts.netloc!r}; only this machine's files are read")
        return str(Path(urllib.parse.unquote(parts.path)).resolve())  # file:///a%20b.mp4 is /a b.mp4
    path = Path(uri).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return str(path.resolve())


def video_id_for(uri: str) -> str:
    """A stable id: the first 16 hex digits of sha256 of the normalised URI's bytes.

    `os.fsencode` gives a valid UTF-8 name its UTF-8 bytes (the ids stores already hold) and a name
    that is not valid UTF-8, which Python holds with surrogate escapes, its bytes on disk."""
    return hashlib.sha256(os.fsencode(uri)).hexdigest()[:16]


@dataclass
class InputListing:
    """What an input names: the videos, and the files a directory search skipped."""

    videos: list[InputVideo]
    skipped: dict[str, int] = field(default_factory=dict)
    """Lower-case extension ("" for none) -> how many files below a directory were skipped for it."""


def scan_inputs(source: str | Path) -> InputListing:
    """The videos `source` names (see the module docstring), checked to be at least one and to have
    distinct ids."""
    if "://" in str(source):
        raise InputError(
            f"extract.inputs: {str(source)!r} is a URI; the input is a local folder, list or table (a list or "
            "table may name remote videos, one URI a line or row)"
        )
    source = Path(source).expanduser()
    if not source.exists():
        raise InputError(f"extract.inputs: {str(source)!r} does not exist")
    skipped: dict[str, int] = {}
    if source.is_dir():
        videos = []
        for p in sorted(p for p in source.rglob("*") if p.is_file()):
            ext = p.suffix.lower()
            if ext in VIDEO_EXTENSIONS:
                videos.append(_video(str(p.resolve())))
            else:
                skipped[ext] = skipped.get(ext, 0) + 1
        if not videos:
            raise InputError(_no_video_in_folder(source, skipped))
    elif source.suffix.lower() in LIST_EXTENSIONS:
        base = source.parent.resolve()
        lines = [ln.strip() for ln in _read_list(source).splitlines()]
        videos = [_video(normalise_uri(ln, base)) for ln in lines if ln and not _is_comment(ln)]
        if not videos:
            raise InputError(f"{_show(source)}: the list names no video (only blank lines and # comments)")
    elif source.suffix.lower() in TABLE_EXTENSIONS:
        videos = _from_table(source)
        if not videos:
            raise InputError(f"{_show(source)}: the table has no rows")
    else:
        videos = [_video(str(source.resolve()))]
    _check_unique(videos, source)
    return InputListing(videos, dict(sorted(skipped.items())))


def list_inputs(source: str | Path) -> list[InputVideo]:
    """The videos `source` names; `scan_inputs(source).videos`."""
    return scan_inputs(source).videos


def _show(name: str | Path) -> str:
    """A path or URI for a message: as is, or its repr when it is not valid UTF-8 (surrogate escapes),
    which would otherwise print as mojibake or fail to print at all."""
    text = str(name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return repr(text)
    return text


def _no_video_in_folder(folder: Path, skipped: dict[str, int]) -> str:
    searched = ", ".join(sorted(VIDEO_EXTENSIONS))
    if not skipped:
        return f"extract.inputs: no video in {_show(folder)}: the folder holds no files (searched for {searched})"
    found = ", ".join(
        f"{n} {ext or '(no extension)'}" for ext, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return (
        f"extract.inputs: no video in {_show(folder)}: found only {found}, none a video extension "
        f"(searched for {searched}); convert them, or name them in a .txt list to read them anyway"
    )


def _read_list(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # -sig: a list saved by a Windows editor starts with a BOM
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{_show(path)}: line {line} is not UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "save the list as UTF-8, or pass the folder of videos instead"
        ) from None


def _video(uri: str, video_id: str | None = None, extra: dict | None = None) -> InputVideo:
    return InputVideo(uri, video_id or video_id_for(uri), extra or {})


def _from_table(path: Path) -> list[InputVideo]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path) if path.suffix.lower() == ".parquet" else pacsv.read_csv(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise InputError(f"{_show(path)}: cannot read the input table ({exc})") from exc
    if "uri" not in table.column_names:
        raise InputError(f"{_show(path)}: no 'uri' column (columns: {', '.join(table.column_names)})")
    base = path.parent.resolve()
    videos = []
    for row in table.to_pylist():
        if not row["uri"]:
            raise InputError(f"{_show(path)}: row {len(videos)} has an empty uri")
        extra = {k: v for k, v in row.items() if k not in ("uri", "id")}
        given = row.get("id")
        videos.append(
            _video(normalise_uri(str(row["uri"]), base), str(given) if given not in (None, "") else None, extra)
        )
    return videos


def _is_comment(line: str) -> bool:
    """`#` alone, or followed by white space: a comment. `#take1.mp4` is a file name."""
    return line == "#" or (line.startswith("#") and line[1].isspace())


def _check_unique(videos: list[InputVideo], source: Path) -> None:
    seen: dict[str, str] = {}
    for v in videos:
        if v.video_id in seen and seen[v.video_id] == v.uri:
            raise InputError(f"{_show(source)}: {_show(v.uri)} is listed twice (video id {v.video_id!r})")
        if v.video_id in seen:
            raise InputError(
                f"{_show(source)}: video id {v.video_id!r} is used twice ({_show(seen[v.video_id])} and {_show(v.uri)})"
            )
        seen[v.video_id] = v.uri
