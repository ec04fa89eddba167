"""`lvmae store`: what a feature store holds, and whether it is sound."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from lvmae.commands.options import add_config_options, config_from_args, fail
from lvmae.progress import Summary, configure_logging

if TYPE_CHECKING:
    from store import Store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvmae store",
                                     description="Inspect and check a feature store (zarr shards + parquet manifests).")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = sub.add_parser("info", help="videos ok/failed, segments, hours of video, dims, identity",
                          description="Summarise a store: committed shards, videos ok and failed, segments, "
                                      "hours of video, embedding width, token grid, identity.")
    info.add_argument("--json", action="store_true", help="one JSON object instead of the summary")
    verify = sub.add_parser("verify", help="read every committed shard; exit 1 on any problem",
                            description="Read every chunk of every committed shard and check its arrays against "
                                        "its manifest. Problems name their shard and make the exit status 1. "
                                        "Orphans (what writers that died before committing left behind) are "
                                        "listed; readers never see them and re-running their shard replaces "
                                        "them, so they are not problems.")
    for action in (info, verify):
        action.add_argument("store", nargs="?", metavar="STORE",
                            help="store path or fsspec URI (default: paths.store of the config)")
        add_config_options(action)
    return parser


def store_facts(store: Store) -> dict[str, Any]:
    """What `info` shows, as JSON-able data."""
    import pyarrow.compute as pc

    videos = store.videos()
    ok = videos.filter(pc.equal(videos["status"], "ok"))
    failed = videos.filter(pc.equal(videos["status"], "failed"))
    dims = store.dims()
    return {
        "store": store.uri,
        "shards": len(store.committed_shards()),
        "videos_ok": ok.num_rows,
        "videos_failed": videos.num_rows - ok.num_rows,
        "segments": int(pc.sum(ok["n_segments"]).as_py() or 0),
        "hours": float(pc.sum(ok["duration"]).as_py() or 0.0) / 3600,
        "emb_dim": dims.emb,
        "token_grid": list(dims.token_grid) if dims.token_grid else None,
        "identity": store.identity.to_attrs(),
        "failed": [{"video_id": video_id, "error": error}
                   for video_id, error in zip(failed["video_id"].to_pylist(), failed["error"].to_pylist())],
    }


def _model(model: dict[str, Any] | None) -> str:
    if model is None:
        return "none"
    sha = str(model["weights_sha256"])
    rest = "".join(f", {k} {v}" for k, v in model.items() if k not in ("name", "weights_sha256"))
    return f"{model['name']} (sha256 {sha[:12] + '…' if len(sha) > 12 else sha}{rest})"


def _info(store: Store, as_json: bool) -> int:
    facts = store_facts(store)
    if as_json:
        print(json.dumps(facts))
        return 0
    identity = facts["identity"]
    summary = Summary(f"store {facts['store']}", timed=False)
    summary.add("committed shards", facts["shards"])
    summary.add("videos ok", facts["videos_ok"]).add("videos failed", facts["videos_failed"])
    summary.add("segments", facts["segments"]).add("hours of video", round(facts["hours"], 2))
    summary.add("embedding width D", facts["emb_dim"] or "-")
    summary.add("token grid (t, h, w)", " × ".join(map(str, facts["token_grid"])) if facts["token_grid"] else "-")
    summary.add("encoder", _model(identity["encoder"])).add("tokenizer", _model(identity["tokenizer"]))
    summary.add("segment", ", ".join(f"{k} {v}" for k, v in identity["segment"].items()))
    summary.add("schema version", identity["schema_version"])
    for failed in facts["failed"]:
        summary.note(f"failed {failed['video_id']}: {failed['error']}")
    summary.print()
    return 0


def _verify(store: Store, parser: argparse.ArgumentParser) -> int:
    report = store.verify()
    summary = Summary(f"verify {report.uri}: {'ok' if report.ok else 'PROBLEMS'}")
    summary.add("shards checked", report.shards).add("videos", report.videos).add("segments", report.segments)
    summary.add("problems", len(report.problems)).add("orphans", len(report.orphans))
    for problem in report.problems:
        summary.note(f"problem: {problem}")
    for orphan in report.orphans:
        summary.note(f"orphan: {orphan}")
    print(summary.render(max_notes=len(summary.notes)), flush=True)
    if report.ok:
        return 0
    shards = sorted({problem.split(":", 1)[0].removeprefix("shard ") for problem in report.problems})
    return fail(parser, f"{len(report.problems)} problem(s) in shard(s) {', '.join(shards)}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.store is None:
        uri = str(config_from_args(parser, args).paths.store)
    else:
        configure_logging(args.verbose)
        uri = args.store
    # Imported here so that `lvmae --help` and `lvmae store --help` stay fast.
    from store import Store, StoreError

    try:
        store = Store.open(uri)
        return _info(store, args.json) if args.action == "info" else _verify(store, parser)
    except StoreError as exc:
        return fail(parser, str(exc))
