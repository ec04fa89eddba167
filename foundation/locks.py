"""An exclusive lock on a folder, for jobs that must not run two at a time on the same files.

`folder_lock(folder, what)` holds an advisory `flock` on `folder/.lock` for the duration of a `with`
block; a second holder (another process, or another thread of this one) gets a `Locked` error at once,
naming who holds it and since when, instead of waiting or interleaving with it. The kernel drops the lock
when its holder dies, so a killed job leaves no lock behind (the file stays, unlocked). The same thread
may take the lock again inside its own block (a build that saves).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lvmae.foundation.errors import LvmaeError

LOCK_FILE = ".lock"
_held = threading.local()  # folders this thread holds: path -> depth


class Locked(LvmaeError):
    """Another job holds the folder; the message says which and since when."""


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold `folder`'s lock (the folder is made if absent) while the block runs; `what` names the job
    for whoever finds it held ("an index build")."""
    folder = Path(folder).resolve()
    held: dict[Path, int] = getattr(_held, "folders", None) or {}
    _held.folders = held
    if held.get(folder):
        held[folder] += 1
        try:
            yield
        finally:
            held[folder] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(
                f"{folder}: {_holder(folder / LOCK_FILE)}; wait for it to finish, or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(
            fd, json.dumps({"what": what, "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
        )
        held[folder] = 1
        try:
            yield
        finally:
            del held[folder]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    """Who holds the lock, as its holder wrote it."""
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        record = {}
    if not record:
        return "another job holds it (it is starting)"
    return (
        f"another {record.get('what', 'job')} holds it since {record.get('since', '?')} (pid {record.get('pid', '?')})"
    )
