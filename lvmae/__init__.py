"""lvmae: the command line (`lvmae <subcommand>`), the top floor: it imports every stage and nothing imports it.

The stages are `extract/`, `store/`, `pretrain/` and `retrieval/`, on the ground floor `foundation/`.
"""

from foundation.provenance import lvmae_version

__version__ = lvmae_version()
