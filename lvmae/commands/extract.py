"""`lvmae extract`: videos -> segments -> frozen encoder + tokenizer -> store shards."""

from __future__ import annotations

import argparse

from lvmae.commands.command import Command, CommandFailed
from lvmae.foundation.schema import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--inputs", help="directory, list file or parquet/CSV with a uri column (default: extract.inputs)"
    )
    parser.add_argument("--store", help="store path or URI (default: paths.store)")
    parser.add_argument(
        "--runner", choices=["ray", "local"], help="ray pipeline or one local process (default: extract.runner)"
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="re-extract the input's videos: the committed shards that hold them, whole, under the same ids",
    )
    parser.add_argument(
        "--retry-failed",
        nargs="?",
        const="transient",
        choices=["transient", "all"],
        help="re-extract the committed shards holding failed videos of the input: transient failures (I/O, a "
        "missing file, a timeout; the default) or all",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit non-zero if any video fails (default: extract.strict)"
    )


def _run(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.api import extract_videos

    store = args.store or str(cfg.paths.store)
    report = extract_videos(
        cfg,
        args.inputs,
        store=store,
        runner=args.runner,
        resume=False if args.no_resume else None,
        retry=args.retry_failed,
    )
    report.summary(store, args.runner or cfg.extract.runner).print()
    attempted = report.videos_ok + report.videos_failed
    if attempted and report.videos_ok == 0:
        raise CommandFailed("no video was extracted")
    if (args.strict or cfg.extract.strict) and report.videos_failed:
        raise CommandFailed(f"{report.videos_failed} video(s) failed (--strict)")
    return 0


COMMAND = Command(
    "lvmae extract",
    "Decode videos into segments, run the frozen image-text encoder and the tokenizer over every segment, and "
    "write embedding, token and importance shards to the store. A re-run skips committed shards; a video that "
    "cannot be read becomes a failed manifest row.",
    run=_run,
    arguments=_arguments,
    error_status=2,
    errors=(ValueError, FileNotFoundError),
)
