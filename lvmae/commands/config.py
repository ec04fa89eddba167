"""`lvmae config`: the effective configuration and the schema of every key."""

from __future__ import annotations

import argparse

from lvmae.commands.options import add_config_options, config_from_args
from lvmae.config import dump_json, dump_yaml, iter_keys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvmae config", description="Inspect the pipeline configuration.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="print the effective config (file + --set overrides, paths resolved)",
                          description="Print the effective config: the file, then --set overrides, paths resolved.")
    show.add_argument("--json", action="store_true", help="JSON instead of YAML")
    add_config_options(show)
    keys = sub.add_parser("keys", help="list every key with its type, default and meaning",
                          description="List every config key with its type, default and meaning.")
    keys.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action == "show":
        cfg = config_from_args(parser, args)
        print(dump_json(cfg) if args.json else dump_yaml(cfg), end="" if not args.json else "\n")
        return 0
    import json

    for key, kind, default, doc in iter_keys():
        if args.json:
            print(json.dumps({"key": key, "type": kind, "default": default, "doc": doc}))
        else:
            print(f"{key}  ({kind}; default {default!r})\n    {doc}")
    return 0
