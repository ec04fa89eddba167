"""`lvmae store`: what a feature store holds, and whether it is sound."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from lvmae.commands.command import Action, Command, CommandFailed
from lvmae.foundation.progress import Summary
from lvmae.foundation.schema import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "store", nargs="?", metavar="STORE", help="store path or fsspec URI (default: paths.store of the config)"
    )


def _open(args: argparse.Namespace, cfg: Config | None):
    from lvmae.store import Store

    return Store.open(args.store if args.store is not None else str(cfg.paths.store))  # type: ignore[union-attr]


def _model(model: dict[str, Any] | None) -> str:
    if model is None:
        return "none"
    sha = str(model["weights_sha256"])
    rest = "".join(f", {k} {v}" for k, v in model.items() if k not in ("name", "weights_sha256"))
    return f"{model['name']} (sha256 {sha[:12] + '…' if len(sha) > 12 else sha}{rest})"


def _info(args: argparse.Namespace, cfg: Config | None) -> int:
    facts = _open(args, cfg).summary()
    if args.json:
        print(json.dumps(facts.to_dict()))
        return 0
    identity = facts.identity
    summary = Summary(f"store {facts.store}", timed=False)
    summary.add("committed shards", facts.shards)
    summary.add("videos ok", facts.videos_ok).add("videos failed", facts.videos_failed)
    summary.add("segments", facts.segments).add("hours of video", round(facts.hours, 2))
    summary.add("embedding width D", facts.emb_dim or "-")
    summary.add("token grid (t, h, w)", " × ".join(map(str, facts.token_grid)) if facts.token_grid else "-")
    summary.add("encoder", _model(identity["encoder"])).add("tokenizer", _model(identity["tokenizer"]))
    summary.add("segment", ", ".join(f"{k} {v}" for k, v in identity["segment"].items()))
    summary.add("schema version", identity["schema_version"])
    for failed in facts.failed:
        summary.note(f"failed {failed['video_id']}: {failed['error']}")
    summary.print()
    return 0


def _verify(args: argparse.Namespace, cfg: Config | None) -> int:
    began = time.perf_counter()
    report = _open(args, cfg).verify()
    summary = Summary(f"verify {report.uri}: {'ok' if report.ok else 'PROBLEMS'}", started=began)
    summary.add("shards checked", report.shards).add("videos", report.videos).add("segments", report.segments)
    summary.add("problems", len(report.problems)).add("orphans", len(report.orphans))
    for problem in report.problems:
        summary.note(f"problem: {problem}")
    for orphan in report.orphans:
        summary.note(f"orphan: {orphan}")
    print(summary.render(max_notes=len(summary.notes)), flush=True)
    if not report.ok:
        raise CommandFailed(f"{len(report.problems)} problem(s) in shard(s) {', '.join(report.problem_shards())}")
    return 0


def _gc(args: argparse.Namespace, cfg: Config | None) -> int:
    from lvmae.store import Store

    uri = args.store if args.store is not None else str(cfg.paths.store)  # type: ignore[union-attr]
    store = Store.create(uri, Store.open(uri).identity)  # writable, with the identity it already has
    garbage = store.garbage()
    summary = Summary(f"gc {store.uri}{' (dry run)' if args.dry_run else ''}")
    removed, spared = ([], garbage) if args.dry_run else store.collect_garbage(min_age_s=args.min_age)
    summary.add("garbage found", len(garbage)).add("removed", len(removed))
    summary.add("would remove" if args.dry_run else f"spared (changed in the last {args.min_age:g} s)", len(spared))
    for item in removed:
        summary.note(f"removed: {item}")
    for item in spared:
        summary.note(f"{'garbage' if args.dry_run else 'spared'}: {item}")
    summary.print()
    return 0


def _gc_arguments(parser: argparse.ArgumentParser) -> None:
    _arguments(parser)
    parser.add_argument(
        "--min-age",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="remove only what has not changed for this long: a writer still at work has a fresh, not yet "
        "committed generation (default 3600)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the garbage, remove nothing")


def _needs_config(args: argparse.Namespace) -> bool:
    return args.store is None  # a store named on the command line needs no config file


COMMAND = Command(
    "lvmae store",
    "Inspect and check a feature store (zarr shards + parquet manifests).",
    actions={
        "info": Action(
            "videos ok/failed, segments, hours of video, dims, identity",
            "Summarise a store: committed shards, videos ok and failed, segments, hours of video, "
            "embedding width, token grid, identity.",
            _info,
            lambda p: (
                _arguments(p),
                p.add_argument("--json", action="store_true", help="one JSON object instead of the summary"),
            ),
            config=_needs_config,
        ),
        "verify": Action(
            "read every committed shard; exit 1 on any problem",
            "Read every chunk of every committed shard and check its arrays against its manifest. "
            "Problems name their shard (and array) and make the exit status 1; a data file the commit "
            "wrote that is gone is one. Orphans (generations an overwrite replaced, what writers that died "
            "or lost a race left behind) are listed; readers never see them, so they are not problems: "
            "`lvmae store gc` removes them.",
            _verify,
            _arguments,
            config=_needs_config,
        ),
        "gc": Action(
            "remove what no commit names: replaced generations, dead writers' leftovers",
            "Remove the store's garbage, what `verify` lists as orphans: generations an overwrite replaced, "
            "the arrays and temp files of writers that died or lost a race, foreign files. Readers never "
            "see any of it. What changed recently is spared (see --min-age).",
            _gc,
            _gc_arguments,
            config=_needs_config,
        ),
    },
)
