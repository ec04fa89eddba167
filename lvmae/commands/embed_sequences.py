"""`lvmae embed-sequences`: the pretrained encoder's per-segment outputs for a whole store, as a store."""

from __future__ import annotations

import argparse
from pathlib import Path

from lvmae.commands.options import add_config_options, config_from_args, fail
from lvmae.progress import Summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lvmae embed-sequences",
        description="Run the frozen LV-MAE encoder over every video of a store (nothing hidden; long videos "
                    "in chunks) and write its per-segment outputs as another store with the same shard ids, "
                    "video ids, spans and labels, read with the same Store API. Shards already written are "
                    "skipped, so a re-run resumes.")
    parser.add_argument("--store", metavar="URI", help="store of segment embeddings to encode (default: paths.store)")
    parser.add_argument("--checkpoint", metavar="FILE", type=Path,
                        help="model.pt or checkpoint.pt of a pretraining run (default: pretrain.checkpoint_dir/model.pt)")
    parser.add_argument("--out", metavar="URI", help="store to write (default: pretrain.embeddings_store)")
    parser.add_argument("--chunk", type=int, metavar="N",
                        help="encode at most N consecutive segments at once (default: the run's max_segments)")
    parser.add_argument("--device", default=None, help="torch device (default: pretrain.device)")
    add_config_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    if args.chunk is not None and args.chunk < 1:
        return fail(parser, f"--chunk must be at least 1 segment; got {args.chunk}", status=2)
    checkpoint = args.checkpoint or cfg.pretrain.checkpoint_dir / "model.pt"
    source_uri = args.store or str(cfg.paths.store)
    out_uri = args.out or str(cfg.pretrain.embeddings_store)
    from pretrain.encode import embed_sequences, load_pretrained
    from pretrain.train import PretrainError, resolve_device
    from store import Store, StoreError

    summary = Summary(f"embed-sequences {out_uri}")
    try:
        device = resolve_device(args.device or cfg.pretrain.device)
        pretrained = load_pretrained(checkpoint, device)
        counts = embed_sequences(Store.open(source_uri), pretrained, out_uri, chunk=args.chunk)
    except (PretrainError, StoreError) as exc:
        return fail(parser, str(exc))
    summary.add("source store", source_uri).add("encoder", f"{checkpoint} (sha256 {pretrained.sha256[:12]}…)")
    summary.add("output width W", counts["width"]).add("chunk, segments", counts["chunk"])
    summary.add("shards written", counts["shards_written"]).add("shards already there", counts["shards_skipped"])
    summary.add("videos", counts["videos"]).add("failed videos copied", counts["failed"])
    summary.add("segments", counts["segments"])
    summary.print()
    return 0
