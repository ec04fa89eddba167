"""`lvmae config`: the effective configuration and the schema of every key."""

from __future__ import annotations

import argparse
import json

from lvmae.commands.command import Action, Command
from lvmae.foundation.loader import dump_json, dump_yaml, iter_keys
from lvmae.foundation.schema import Config


def _show(args: argparse.Namespace, cfg: Config) -> int:
    print(dump_json(cfg) if args.json else dump_yaml(cfg), end="" if not args.json else "\n")
    return 0


def _keys(args: argparse.Namespace, cfg: Config) -> int:
    for key, kind, default, doc in iter_keys(Config):
        if args.json:
            print(json.dumps({"key": key, "type": kind, "default": default, "doc": doc}))
        else:
            print(f"{key}  ({kind}; default {default!r})\n    {doc}")
    return 0


COMMAND = Command(
    "lvmae config",
    "Inspect the pipeline configuration.",
    actions={
        "show": Action(
            "print the effective config (file + --set overrides, paths resolved)",
            "Print the effective config: the file, then --set overrides, paths resolved.",
            _show,
            lambda p: p.add_argument("--json", action="store_true", help="JSON instead of YAML"),
        ),
        "keys": Action(
            "list every key with its type, default and meaning",
            "List every config key with its type, default and meaning.",
            _keys,
            lambda p: p.add_argument("--json", action="store_true", help="JSON lines instead of a table"),
            config=False,
            options=False,
        ),
    },
)
