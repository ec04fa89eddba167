"""`lvmae index build|info`: the FAISS segment index over a store, built, updated and described."""

from __future__ import annotations

import argparse
from pathlib import Path

from lvmae.commands.command import Action, Command, CommandFailed
from lvmae.foundation.progress import Summary, human_bytes, human_seconds
from lvmae.foundation.schema import Config


def _build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URI", help="store whose segments to index (default: paths.store)")
    parser.add_argument("--out", metavar="DIR", type=Path, help="index folder (default: retrieval.index_dir)")
    parser.add_argument(
        "--kind",
        choices=("auto", "flat", "hnsw", "ivfpq"),
        help="index kind (default: retrieval.index); auto picks from the vector count, D and retrieval.max_index_memory",
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="add only the shards committed since the index in --out was built (builds it when there is none)",
    )


def _build(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.api import build_index, update_index
    from lvmae.retrieval.index import HEADER

    out = args.out or cfg.retrieval.index_dir
    summary = Summary(f"lvmae index build {out}")
    if args.incremental and (out / HEADER).is_file():
        index, added = update_index(cfg, store=args.store or str(cfg.paths.store), folder=out)
        if args.kind and args.kind not in ("auto", index.kind):
            raise CommandFailed(f"index {out} is {index.kind}; --incremental keeps its kind (drop --kind {args.kind})")
        vectors = index.header["updates"][-1]["vectors"] if added else 0  # the update's record
        summary.add("update", f"{len(added)} new shards, {vectors:,} vectors added" if added else "up to date")
    else:
        if args.incremental:
            summary.note(f"no index in {out} yet: built one from scratch")
        index = build_index(cfg, store=args.store, out=out, kind=args.kind)
        seconds = index.header["build_seconds"]
        summary.add("built in", f"{human_seconds(seconds)} ({len(index) / max(seconds, 1e-9):,.0f} vectors/s)")
    _describe(summary, index)
    summary.print()
    return 0


def _describe(summary: Summary, index) -> None:
    h = index.header
    summary.add("store", index.store_uri)
    summary.add("kind", f"{h['kind']} ({h['factory']})").add("why", h["reason"])
    summary.add("vectors", f"{h['vectors']:,} × {h['dim']} ({h['videos']:,} videos, {len(h['shards'])} shards)")
    summary.add("index file", human_bytes(h["bytes"]))
    summary.add("built", f"{h['built_at']} by lvmae {h['lvmae']}")
    for update in h.get("updates", [])[-3:]:
        summary.add("updated", f"{update['at']}: {update['shards']} shards, {update['vectors']:,} vectors")


def _info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", type=Path, help="index folder")
    parser.add_argument(
        "--verify", action="store_true", help="also check every file's sha256 against the header (sizes always are)"
    )


def _info(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.api import open_index
    from lvmae.retrieval.index import build_command
    from lvmae.store import Store, StoreError

    index = open_index(args.dir, verify=args.verify)
    summary = Summary(f"index {args.dir}", timed=False)
    _describe(summary, index)
    checks = "sizes and sha256" if args.verify else "sizes (--verify: sha256 too)"
    summary.add("files", f"as the header records them: {checks}" if "checks" in index.header else "no checks recorded")
    try:
        stale = index.staleness(Store.open(index.store_uri))
    except StoreError as exc:
        summary.add("freshness", f"unknown: {exc}")
    else:
        summary.add("freshness", "up to date" if stale.fresh else f"stale: {stale.describe()}")
        if not stale.fresh:
            summary.note("update it: " + build_command(index.store_uri, args.dir, incremental=stale.only_new))
    summary.print()
    return 0


COMMAND = Command(
    "lvmae index",
    "The FAISS index of a store's segment embeddings (cosine similarity), which `lvmae search` reads.",
    actions={
        "build": Action(
            "build or update an index",
            "Stream the store's segment embeddings into a FAISS index (flat, hnsw, ivfpq or auto) and write it "
            "with its id map and header; --incremental adds only the shards committed since.",
            run=_build,
            arguments=_build_arguments,
        ),
        "info": Action(
            "describe an index and whether it is up to date",
            "Show an index's kind, size, store and build, and whether its store has moved on since.",
            run=_info,
            arguments=_info_arguments,
        ),
    },
)
