"""`lvmae search`: text (or a segment, by example) -> the moments of the indexed videos that show it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lvmae.commands.command import Command, CommandFailed, add_caption_options
from lvmae.foundation.schema import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="*", help='what to look for, e.g. "a red circle on a blue background"')
    parser.add_argument("--queries", metavar="FILE", type=Path, help="more queries, one a line (one process for all)")
    parser.add_argument(
        "--like",
        metavar="VIDEO_ID@SECONDS",
        help="query by example: moments like the segment on screen then (seconds, m:ss or h:mm:ss); itself excluded",
    )
    parser.add_argument("--index", metavar="DIR", type=Path, help="index folder (default: retrieval.index_dir)")
    parser.add_argument("-k", type=int, metavar="N", help="moments per query (default: retrieval.k)")
    parser.add_argument(
        "--per-video",
        type=int,
        help="moments of one video before other videos' strong answers; its others come after those, never after a "
        "weaker one (default: retrieval.per_video; 0: no limit)",
    )
    add_caption_options(parser, truth=False)
    parser.add_argument("--json", action="store_true", help="one JSON object a line per moment instead of a table")
    parser.add_argument(
        "--sheet", metavar="FILE.png", type=Path, help="also write a contact sheet: a row of thumbnails per moment"
    )


def _queries(args: argparse.Namespace) -> list[str]:
    queries = list(args.query)
    if args.queries is not None:
        try:
            lines = args.queries.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CommandFailed(f"--queries {args.queries}: {exc.strerror or exc}", status=2) from None
        from_file = [line for line in lines if line.strip()]
        if not from_file:
            raise CommandFailed(f"--queries {args.queries} holds no query (one a line)", status=2)
        queries += from_file
    if args.like and queries:
        raise CommandFailed("give text queries or --like VIDEO_ID@SECONDS, not both", status=2)
    if not args.like and not queries:
        raise CommandFailed('nothing to search for: give a query ("a red circle"), --queries FILE or --like', status=2)
    return queries


def _run(args: argparse.Namespace, cfg: Config) -> int:
    if args.k is not None and args.k < 1:
        raise CommandFailed(f"-k {args.k}: ask for at least 1 moment", status=2)
    if args.per_video is not None and args.per_video < 0:
        raise CommandFailed(f"--per-video {args.per_video}: 0 (no limit) or more", status=2)
    queries = _queries(args)
    from lvmae.api import open_searcher
    from lvmae.retrieval.search import parse_like, results_table

    like = parse_like(args.like) if args.like else None
    searcher = open_searcher(cfg, index=args.index, captions=args.captions)
    if like is not None:
        answers = [searcher.like(*like, k=args.k, per_video=args.per_video)]
    else:
        answers = searcher.text(queries, k=args.k, per_video=args.per_video)
    for results in answers:
        if args.json:
            for result in results:
                print(json.dumps(result.to_json()))
        else:
            print(results_table(results, query=results[0].query if results else (queries[0] if queries else args.like)))
    if args.sheet is not None:
        from lvmae.retrieval.sheet import results_sheet

        path = results_sheet([r for results in answers for r in results], args.sheet)
        print(f"contact sheet: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


COMMAND = Command(
    "lvmae search",
    "Find the moments of the indexed videos that show a text (encoded with the store's own text tower), or "
    "that look like a given segment (--like): consecutive matching segments merge into one moment. Prints a "
    "table (rank, video, start–end, score, the caption bank's best caption), or JSON lines; --sheet writes "
    "thumbnails.",
    run=_run,
    arguments=_arguments,
)
