"""lvmae: long-video representations — CLI, typed config, logging and progress (no ML code here)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lvmae")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
