"""The one base of the errors a user can act on.

Each stage raises its own kind (`ConfigError`, `StoreError`, `InputError`, `ResourceError`,
`PretrainError`, ...), all of them `LvmaeError`s whose message names the file, key or value to change.
The CLI prints such an error as one line and exits non-zero; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class LvmaeError(Exception):
    """Something the user can fix; the message says what and where."""


class UsageError(LvmaeError, ValueError):
    """An argument out of its range (a ratio outside (0, 1), no seeds) or arguments that exclude each
    other; `arguments` names them as the function calls them, `value` is what was given (if one),
    `allowed` what would do. The CLI names them as its options (`ratio` is `--ratio`) and exits with
    status 2, as for a bad option."""

    def __init__(self, arguments: str | tuple[str, ...], allowed: str, *, value: object = None):
        self.arguments = (arguments,) if isinstance(arguments, str) else tuple(arguments)
        self.allowed, self.value = allowed, value
        super().__init__(self.message())

    def message(self, spell=lambda name: name) -> str:
        """The message with each argument's name as `spell` writes it (the CLI: `--name`)."""
        given = "" if self.value is None else f" {self.value}"
        return f"{', '.join(map(spell, self.arguments))}{given}: {self.allowed}"
