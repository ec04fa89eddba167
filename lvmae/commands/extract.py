"""`lvmae extract`: videos -> segments -> frozen encoder + tokenizer -> store shards."""

from __future__ import annotations

import argparse

from lvmae.commands.options import add_config_options, config_from_args, fail


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lvmae extract",
        description="Decode videos into segments, run the frozen image-text encoder and the tokenizer over "
                    "every segment, and write embedding, token and importance shards to the store. A re-run "
                    "skips committed shards; a video that cannot be read becomes a failed manifest row.")
    parser.add_argument("--inputs", help="directory, list file or parquet/CSV with a uri column (default: extract.inputs)")
    parser.add_argument("--store", help="store path or URI (default: paths.store)")
    parser.add_argument("--runner", choices=["ray", "local"], help="ray pipeline or one local process (default: extract.runner)")
    parser.add_argument("--no-resume", action="store_true", help="redo shards that are already committed")
    parser.add_argument("--strict", action="store_true", help="exit non-zero if any video fails (default: extract.strict)")
    add_config_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    from extract.inputs import InputError
    from extract.runner import ResourceError, run_extract
    from store import StoreError

    try:
        report = run_extract(cfg, inputs=args.inputs, store_uri=args.store, runner=args.runner,
                             resume=False if args.no_resume else None)
    except (InputError, ResourceError, StoreError, ValueError, FileNotFoundError) as exc:
        return fail(parser, str(exc), 2)
    report.summary(args.store or cfg.paths.store, args.runner or cfg.extract.runner).print()
    strict = args.strict or cfg.extract.strict
    attempted = report.videos_ok + report.videos_failed
    if attempted and report.videos_ok == 0:
        return fail(parser, "no video was extracted")
    if strict and report.videos_failed:
        return fail(parser, f"{report.videos_failed} video(s) failed (--strict)")
    return 0
