"""lvmae: the command line (`lvmae <subcommand>`), the top floor: it imports every stage and nothing imports it.

The stages are `extract/`, `store/`, `pretrain/` and `retrieval/`, on the ground floor `foundation/`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lvmae")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
