"""What every benchmark shares: `python -m bench.NAME [--quick] [--out FILE]`, progress and context
lines on stdout, and one JSON object of figures as the last line of stdout.

The underscore keeps this module out of `make bench`, which runs every `bench/[a-z]*.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lvmae.foundation.files import atomic_write_text


def parse_args(
    description: str, argv: list[str] | None = None, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """`--quick` (the small run `make bench` does, well under a minute) and `--out FILE`; `extra` adds a
    benchmark's own options."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    parser = argparse.ArgumentParser(prog=f"python -m {spec.name}" if spec else None, description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a small run that finishes well under a minute (what `make bench` runs)"
    )
    parser.add_argument("--out", metavar="FILE", help="also write the JSON object to FILE")
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    """Where the figures were measured; every result carries it, because rates mean little without it."""
    return {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}


def emit(result: dict[str, Any], out: str | os.PathLike | None = None) -> None:
    """Print `result` as the last line of stdout, and write it to `out` when given."""
    line = json.dumps(result)
    print(line, flush=True)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, line + "\n")


def toy_index(spec: Any, folder: Path) -> tuple[Any, Any]:
    """A fresh toy-world corpus (`toyworld.generate.CorpusSpec`) under `folder`, extracted with the
    shipped stand-in encoder into `folder/store` and indexed into `folder/index`: (corpus, config)."""
    from lvmae.extract.runner import Models, run_extract
    from lvmae.foundation.schema import load_config
    from lvmae.retrieval.index import SegmentIndex
    from lvmae.store import Store
    from lvmae.toyworld.generate import generate

    corpus = generate(spec, folder / "corpus", progress=False)
    cfg = load_config(None, [f"paths.store={folder / 'store'}", "extract.runner=local"], use_default_file=False)
    run_extract(
        cfg.extract,
        Models.of(cfg),
        cfg.ray,
        inputs=corpus.root / "videos.parquet",
        store_uri=str(folder / "store"),
        runner="local",
    )
    index = SegmentIndex.build(Store.open(folder / "store"), cfg.retrieval, progress=False)
    index.save(folder / "index")
    return corpus, cfg
