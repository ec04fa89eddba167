"""The one base of the errors a user can act on.

Each stage raises its own kind (`ConfigError`, `StoreError`, `InputError`, `ResourceError`,
`PretrainError`, ...), all of them `LvmaeError`s whose message names the file, key or value to change.
The CLI prints such an error as one line and exits non-zero; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class LvmaeError(Exception):
    """Something the user can fix; the message says what and where."""
