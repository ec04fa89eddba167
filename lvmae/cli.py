"""`lvmae`: one command line, one subcommand per stage.

Subcommand modules are imported only when used, so `lvmae --help` stays fast (no torch import). Each
module defines `COMMAND` (`lvmae.commands.command.Command`): its arguments and its run function.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lvmae import __version__

# name -> (module defining COMMAND, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("lvmae.commands.config", "show the effective config, list every key"),
    "extract": ("lvmae.commands.extract", "decode videos, run the frozen encoder and tokenizer, write store shards"),
    "store": ("lvmae.commands.store", "summarise or verify a feature store"),
    "tokenizer": ("lvmae.commands.tokenizer", "fit the MAGVIT-FSQ tokenizer and token scorer; held-out PSNR and AUC"),
    "toyworld": ("lvmae.commands.toyworld", "generate the procedural demo corpus; fit/evaluate the stand-in encoder"),
    "pretrain": (
        "lvmae.commands.pretrain",
        "train the LV-MAE on the store's sequences (local or Ray Train, resumable)",
    ),
    "embed-sequences": (
        "lvmae.commands.embed_sequences",
        "write the pretrained encoder's per-segment outputs as a store",
    ),
    "evaluate": (
        "lvmae.commands.evaluate",
        "held-out masked-segment reconstruction MSE of a pretraining run vs copying the nearest segment",
    ),
    "index": ("lvmae.commands.index", "build or update the FAISS segment index of a store; describe one"),
    "search": (
        "lvmae.commands.search",
        "text (or a segment, by example) -> moments of the videos, with times, captions, thumbnails",
    ),
    "inspect": (
        "lvmae.commands.inspection",
        "what the decoder fills in: caption R@1/R@5 of reconstructions vs copy, interpolation, mean, original",
    ),
    "probe": (
        "lvmae.commands.probe",
        "classify whole videos with linear and attentive probes: raw vs LV-MAE, seeds, label efficiency",
    ),
    "serve": (
        "lvmae.commands.serve",
        "a web page: search the videos, play the moments, open a video's reconstruction timeline",
    ),
    "report": ("lvmae.commands.report", "one self-contained HTML page of every stage's saved results"),
    "demo": ("lvmae.commands.demo", "run every stage on the embedded default, skipping finished ones"),
}


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<16}{summary}" for name, (_, summary) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="lvmae",
        description="Long-video representation learning: extract segment features with frozen models, "
        "pretrain a masked-embedding autoencoder, retrieve and inspect.",
        epilog=f"commands:\n{listing}\n\n`lvmae COMMAND --help` for a command's options; every command "
        "takes --config FILE and --set KEY=VALUE.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lvmae {__version__}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="what to run (listed below)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def command(name: str):
    """The `Command` of subcommand `name`."""
    return importlib.import_module(COMMANDS[name][0]).COMMAND


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return command(args.command).main(args.args)


if __name__ == "__main__":
    sys.exit(main())
