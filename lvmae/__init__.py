"""lvmae: long-video representations. Extract segment features with frozen models into a store,
pretrain a masked-embedding autoencoder on the sequences, search and inspect what it reconstructs.

    import lvmae
    cfg = lvmae.load_config()                  # ./pipeline.yaml, or the built-in defaults
    lvmae.extract_videos(cfg, "videos/")
    lvmae.train(cfg)

The entry points (`lvmae.api`: `load_config`, `extract_videos`, `open_store`, `train`, `load_model`,
`features`, `build_index`, `update_index`, `open_index`, `open_searcher`, `search`, `search_like`,
`evaluate`, `inspect`, `probe`, `write_report`, `create_app`, `run_demo`, `WindowDataset`, ...) load on
first use, so `import lvmae` stays cheap and the `lvmae` command's --help fast. The stages are
subpackages: `lvmae.store`, `lvmae.extract`, `lvmae.pretrain`, `lvmae.retrieval`, `lvmae.evaluation`,
on the ground floor `lvmae.foundation`. Every error a user can act on is an `LvmaeError`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from lvmae.foundation.errors import LvmaeError
from lvmae.foundation.provenance import lvmae_version

__version__ = lvmae_version()

_API = "lvmae.api"
"""Where the entry points live; they are read from it by name on first use, not imported here."""


def __getattr__(name: str) -> Any:
    if name.startswith("_"):  # probes such as __wrapped__ or __path__ lookups never load the API
        raise AttributeError(f"module 'lvmae' has no attribute {name!r}")
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # A subpackage or module (`from lvmae import cli` asks here first): itself, not the API.
        return importlib.import_module(f"{__name__}.{name}")
    api = importlib.import_module(_API)
    if name in api.__all__:
        value = getattr(api, name)
        globals()[name] = value  # once: later reads do not come back here
        return value
    raise AttributeError(f"module 'lvmae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *importlib.import_module(_API).__all__})


__all__ = ["LvmaeError", "__version__"]
