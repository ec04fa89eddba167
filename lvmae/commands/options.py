"""Options every subcommand shares: --config, --set, -v; and turning them into a Config."""

from __future__ import annotations

import argparse
import sys

from lvmae.config import Config, ConfigError, load_config
from lvmae.progress import configure_logging


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="pipeline config (default: ./pipeline.yaml if present, else built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set pretrain.mask_ratio=0.75 (repeatable)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Config:
    """Load the config named by the options; a ConfigError exits with status 2 and names the key."""
    configure_logging(args.verbose)
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as exc:
        parser.exit(2, f"{parser.prog}: config error: {exc}\n")


def fail(parser: argparse.ArgumentParser, message: str, status: int = 1) -> int:
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return status
