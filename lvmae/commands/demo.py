"""`lvmae demo`: every stage, in order, on the embedded default (the toy world); a shell over `lvmae.run_demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from lvmae.commands.command import Command
from lvmae.foundation.schema import Config

STAGE_NAMES = "corpus, encoder, tokenizer, extract, index, pretrain, heldout, inspect, probe"
"""For --help without importing the stages (`lvmae.demo.STAGES`; a test keeps the two equal)."""


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="output directory (default: demo.out)")
    parser.add_argument("--force", action="store_true", help="re-run every stage even if finished")


def _run(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.api import run_demo

    run = run_demo(cfg, args.out, force=args.force)
    run.summary.print()
    print(f"report: {run.report}")
    return 0


COMMAND = Command(
    "lvmae demo",
    f"Run every stage on the embedded default (toy world): {STAGE_NAMES}. Finished stages are skipped on a re-run.",
    run=_run,
    arguments=_arguments,
)
