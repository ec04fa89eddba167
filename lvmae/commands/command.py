"""What every `lvmae` subcommand shares, written once: a command is its arguments and its run function.

    COMMAND = Command("lvmae extract", "Decode videos ...", arguments=_arguments, run=_run)

or, for a command with actions (`lvmae store info|verify`), `actions={"info": Action(...), ...}`.
`Command.main(argv)` parses, adds `--config FILE`, `--set KEY=VALUE` (repeatable) and `-v`, sets up
logging, loads the config (a bad key exits with status 2 and names it), calls `run(args, cfg)`, and
turns any `LvmaeError` (a bad store, input, setting or resource) into one line on stderr and a
non-zero exit. A run function reports a failure by raising `CommandFailed`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from lvmae.foundation.errors import LvmaeError, UsageError
from lvmae.foundation.loader import ConfigError
from lvmae.foundation.progress import configure_logging
from lvmae.foundation.schema import Config, load_config

Run = Callable[[argparse.Namespace, Config], "int | None"]
Arguments = Callable[[argparse.ArgumentParser], None]
S = TypeVar("S")


class CommandFailed(LvmaeError):
    """The command ran but did not do what was asked (e.g. no video was extracted)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="pipeline config (default: ./pipeline.yaml if present, else built-in defaults)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set pretrain.mask_ratio=0.75 (repeatable)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, also Ray's own messages; -vv debug)"
    )


@dataclass
class Action:
    """One action of a command with several (`lvmae store verify`)."""

    help: str
    description: str
    run: Run
    arguments: Arguments | None = None
    config: bool | Callable[[argparse.Namespace], bool] = True
    """Whether the action reads the config (a predicate of its arguments, or a fixed answer); an
    action without config options gets none."""
    options: bool = True
    """Whether it takes --config, --set and -v."""


@dataclass
class Command:
    prog: str
    description: str
    run: Run | None = None
    arguments: Arguments | None = None
    actions: dict[str, Action] = field(default_factory=dict)
    error_status: int = 1
    """Exit status for an LvmaeError (extract uses 2: its errors are all about what it was given)."""
    errors: tuple[type[Exception], ...] = ()
    """Exceptions besides LvmaeError that are the user's to fix (a library's FileNotFoundError, say)."""

    def build_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        if self.arguments:
            self.arguments(parser)
        if not self.actions:
            add_config_options(parser)
            return parser
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for name, action in self.actions.items():
            child = sub.add_parser(name, help=action.help, description=action.description)
            if action.arguments:
                action.arguments(child)
            if action.options:
                add_config_options(child)
        return parser

    def main(self, argv: list[str] | None = None) -> int:
        parser = self.build_parser()
        args = parser.parse_args(argv)
        args.argv = argv  # as given (None: sys.argv), for commands that record how they were run
        action = self.actions.get(getattr(args, "action", None) or "")
        run = action.run if action else self.run
        assert run is not None, f"{self.prog} has neither a run function nor actions"
        wants = action.config if action else True
        reads_config = wants(args) if callable(wants) else wants
        configure_logging(getattr(args, "verbose", 0))
        cfg = None
        if reads_config:
            try:
                cfg = load_config(args.config, args.overrides)
            except ConfigError as exc:
                parser.exit(2, f"{parser.prog}: config error: {exc}\n")
        try:
            return int(run(args, cfg) or 0)  # type: ignore[arg-type]
        except CommandFailed as exc:
            return fail(parser, str(exc), exc.status)
        except UsageError as exc:
            return fail(parser, exc.message(lambda name: "--" + name.replace("_", "-")), 2)
        except (LvmaeError, *self.errors) as exc:
            return fail(parser, str(exc), self.error_status)


FIT_OPTIONS = ("steps", "batch_size", "lr", "seed", "max_minutes")
"""The options `add_fit_options` adds, by attribute name."""


def add_fit_options(parser: argparse.ArgumentParser, section: str, batch: str) -> None:
    """The options every fit command takes, each defaulting to the config's `section` (e.g. tokenizer.fit)."""
    for flag, kind, text in (
        ("--steps", int, "optimizer steps"),
        ("--batch-size", int, f"{batch} per step"),
        ("--lr", float, "peak learning rate"),
        ("--seed", int, "random seed"),
        ("--max-minutes", float, "stop after this much fitting time, then save"),
    ):
        parser.add_argument(flag, type=kind, help=f"{text} (default: {section}.{flag[2:].replace('-', '_')})")


def with_options(settings: S, section: str, args: argparse.Namespace, *names: str) -> S:
    """`settings`, the config section `section` (e.g. "tokenizer.fit"), with the options the user gave:
    `names` are attributes of `args` named like the section's fields. A bad value exits with status 2
    and names the option and the key."""
    values = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    try:
        return dataclasses.replace(settings, **values)  # type: ignore[type-var]
    except ValueError as exc:
        key = getattr(exc, "key", None)  # the loader's check() says which field
        where = f"--{key.replace('_', '-')} ({section}.{key}): " if key in values else ""
        raise CommandFailed(where + str(exc).removeprefix(f"{key}: "), status=2) from None


def add_caption_options(parser: argparse.ArgumentParser, *, truth: bool = True) -> None:
    """--captions (the caption bank) and, with `truth`, --truth: what search, inspect and serve score
    and label segments with."""
    parser.add_argument("--captions", metavar="FILE", type=Path, help="caption bank (default: retrieval.captions)")
    if truth:
        parser.add_argument(
            "--truth",
            metavar="FILE",
            default="auto",
            help="parquet of captioned steps (video_id, t_start, t_end, caption); auto (default): the toy world's "
            "truth.parquet beside the videos when there is one; none: no truth (inspect then scores against the "
            "original's top-1 caption)",
        )


def add_model_options(parser: argparse.ArgumentParser, *, store: str = "store of segment embeddings") -> None:
    """--store (what `store` says it is), --checkpoint (a pretraining run's model) and --device: what the
    commands that run a trained LV-MAE over a store take."""
    parser.add_argument("--store", metavar="URI", help=f"{store} (default: paths.store)")
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        type=Path,
        help="model.pt or checkpoint.pt of a pretraining run (default: pretrain.checkpoint_dir/model.pt)",
    )
    parser.add_argument("--device", help="torch device of the model (default: pretrain.device)")


def fail(parser: argparse.ArgumentParser, message: str, status: int = 1) -> int:
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return status
