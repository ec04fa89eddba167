"""Atomic, durable writes of local files, file hashes, and the local file a uri names.

Every writer of a file that another process, a resume or a later stage reads goes through
`atomic_write`: the data go to a temp file in the same folder, which is flushed and fsynced, renamed
over the target, and then the folder is fsynced. A reader, or a run resumed after a kill, sees the
old file or the new one, never part of one; after a power loss the rename does not outlive its data
(a rename alone is atomic against a killed process, not durable until the file and folder are synced).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMP_MARK = ".tmp-"
"""Temp files are `.<name>.tmp-<pid>`: hidden, and recognisable as a write cut short (`stale_temp_files`)."""


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename is still atomic there
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[IO[bytes]], Any],
    *,
    temp: str | os.PathLike | None = None,
    exclusive: bool = False,
) -> Path:
    """Call `write(f)` on a temp file beside `path`, then fsync, rename it over `path`, fsync the folder.

    The folder must exist. If `write` raises, the temp file is removed and `path` is untouched. `temp`
    names the temp file (in the same folder) for writers whose readers know their own temp names.
    `exclusive` puts the file in place only if `path` does not exist yet (a hard link, atomic: of two
    writers exactly one succeeds), else FileExistsError.
    """
    path = Path(path)
    tmp = Path(temp) if temp is not None else _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(path.parent)  # the temp file's entry, before the rename that names it
        if exclusive:
            os.link(tmp, path)
            tmp.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def commit_file(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """The end of `atomic_write` for a temp file another library wrote (PyAV's muxer, say): fsync it,
    rename it over `path`, fsync the folder."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)
    return Path(path)


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, *, temp: str | os.PathLike | None = None, exclusive: bool = False
) -> Path:
    return atomic_write(path, lambda f: f.write(data), temp=temp, exclusive=exclusive)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, value: Any, **dumps: Any) -> Path:
    """`value` as JSON (indent 2 and a final newline unless `dumps` says otherwise)."""
    dumps.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(value, **dumps) + "\n")


def fsync_file(path: str | os.PathLike) -> None:
    """fsync one file another library wrote, when it exists."""
    try:
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    except FileNotFoundError:
        pass


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file below `root`, then every folder, deepest first, `root` and its parent last:
    what another library wrote there (zarr never fsyncs) is on disk before a commit names it."""
    root = Path(root)
    folders = []
    for folder, _, files in os.walk(root):
        folders.append(folder)
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                os.fsync(f.fileno())
    for folder in reversed(folders):
        fsync_dir(folder)
    fsync_dir(root.parent)


def stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Temp files of `atomic_write`s in `folder` that a killed process never renamed."""
    return sorted(p for p in Path(folder).glob(f".*{TEMP_MARK}*") if p.is_file())


def local_path(uri: str) -> Path | None:
    """The local file a uri names (a plain path or file://...), or None for a remote one (s3://...)."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    return Path(uri.removeprefix("file://"))


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks (what a store's `weights_sha256` holds)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
