"""`lvmae embed-sequences`: the pretrained encoder's per-segment outputs for a whole store, as a store."""

from __future__ import annotations

import argparse

from lvmae.commands.command import Command, CommandFailed, add_model_options
from lvmae.foundation.progress import Summary
from lvmae.foundation.schema import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser, store="store of segment embeddings to encode")
    parser.add_argument("--out", metavar="URI", help="store to write (default: pretrain.embeddings_store)")
    parser.add_argument(
        "--chunk",
        type=int,
        metavar="N",
        help="encode at most N consecutive segments at once (default: the run's max_segments)",
    )


def _run(args: argparse.Namespace, cfg: Config) -> int:
    if args.chunk is not None and args.chunk < 1:
        raise CommandFailed(f"--chunk must be at least 1 segment; got {args.chunk}", status=2)
    from lvmae.api import load_model, open_store
    from lvmae.pretrain.features import embed_sequences

    checkpoint = args.checkpoint or cfg.pretrain.checkpoint_dir / "model.pt"
    source_uri = args.store or str(cfg.paths.store)
    out_uri = args.out or str(cfg.pretrain.embeddings_store)
    summary = Summary(f"embed-sequences {out_uri}")
    pretrained = load_model(checkpoint, args.device or cfg.pretrain.device)
    counts = embed_sequences(open_store(source_uri), pretrained, out_uri, chunk=args.chunk)
    summary.add("source store", source_uri).add("encoder", f"{checkpoint} (sha256 {pretrained.sha256[:12]}…)")
    summary.add("output width W", counts["width"]).add("chunk, segments", counts["chunk"])
    summary.add("shards written", counts["shards_written"]).add("shards already there", counts["shards_skipped"])
    summary.add("videos", counts["videos"]).add("failed videos copied", counts["failed"])
    summary.add("segments", counts["segments"])
    summary.print()
    return 0


COMMAND = Command(
    "lvmae embed-sequences",
    "Run the frozen LV-MAE encoder over every video of a store (nothing hidden; long videos in chunks) and write "
    "its per-segment outputs as another store with the same shard ids, video ids, spans and labels, read with the "
    "same Store API. Shards already written are skipped, so a re-run resumes.",
    run=_run,
    arguments=_arguments,
)
