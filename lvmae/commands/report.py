"""`lvmae report`: one self-contained HTML page of every stage that ran, from the artifacts they saved."""

from __future__ import annotations

import argparse
from pathlib import Path

from lvmae.commands.command import Command, CommandFailed
from lvmae.foundation.progress import Summary
from lvmae.foundation.schema import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", metavar="DIR", type=Path, help="a demo's output folder (e.g. runs/demo): all of it")
    parser.add_argument("--store", metavar="URI", help="a feature store")
    parser.add_argument(
        "--pretrain", metavar="DIR", type=Path, help="a pretraining run folder (metrics.jsonl, model.pt)"
    )
    parser.add_argument("--inspect", metavar="FILE", type=Path, help="`lvmae inspect --json` output")
    parser.add_argument(
        "--timeline", metavar="FILE", type=Path, help="a saved timeline record (the demo's inspect-timeline.json)"
    )
    parser.add_argument("--probe", metavar="FILE", type=Path, help="`lvmae probe --json` output")
    parser.add_argument(
        "--bench-extract", metavar="FILE", type=Path, help="`python -m bench.extract --out FILE` output"
    )
    parser.add_argument(
        "--out", metavar="FILE.html", type=Path, help="where to write (default: DIR/report.html or report.html)"
    )


def _run(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.demo import DemoLayout
    from lvmae.report import Artifacts, write_report

    if args.demo is not None:
        if not args.demo.is_dir():
            raise CommandFailed(f"--demo {args.demo}: no such folder", status=2)
        artifacts = DemoLayout(args.demo).artifacts()
    else:
        artifacts = Artifacts()
    for name in ("store", "pretrain", "inspect", "timeline", "probe", "bench_extract"):
        given = getattr(args, name)
        if given is None:
            continue
        if name != "store" and not Path(given).exists():
            artifacts.notes.append(
                f"--{name.replace('_', '-')} {given}: no such file or folder; its section is left out"
            )
            continue
        setattr(artifacts, name, given)
    out = args.out or (DemoLayout(args.demo).report if args.demo is not None else Path("report.html"))
    path, present = write_report(artifacts, out, title=f"lvmae report — {args.demo or args.store or 'run'}")
    summary = Summary("lvmae report")
    summary.add("report", str(path)).add("sections", ", ".join(present) or "none")
    for note in artifacts.notes:
        summary.note(note)
    summary.print()
    return 0


COMMAND = Command(
    "lvmae report",
    "Write one self-contained HTML page (inline plots, no scripts or external files) of what the stages saved: "
    "what ran, the store, pretraining curves, a held-out video's reconstruction timeline, the inspect and probe "
    "tables, search examples. Never re-runs a model.",
    run=_run,
    arguments=_arguments,
)
