"""`lvmae evaluate`: masked-segment reconstruction MSE of a pretrained LV-MAE on held-out videos, beside
copying the nearest visible segment (see `lvmae.evaluation.reconstruction`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from lvmae.commands.command import Command, add_model_options
from lvmae.foundation.schema import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--ratio", type=float, help="fraction of each window hidden (default: the run's mask_ratio)")
    parser.add_argument(
        "--decoder",
        default="trained",
        help="which hidden segments are reconstructed: trained (the checkpoint's decoder mask, default) or a "
        "decoder mask: all, random, adaptive, mix",
    )
    parser.add_argument(
        "--split",
        choices=("val", "all"),
        default="val",
        help="val: the videos the run held out (default); all: every video",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation masks (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _run(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.api import evaluate

    result = evaluate(
        cfg,
        store=args.store,
        checkpoint=args.checkpoint,
        split=args.split,
        ratio=args.ratio,
        decoder=args.decoder,
        seed=args.seed,
        device=args.device,
    )
    if args.json:
        print(json.dumps(asdict(result)))
        return 0
    print(
        f"{result.split} videos: {result.videos}, windows: {result.windows}, hidden segments "
        f"reconstructed: {result.reconstructed_segments} (ratio {result.ratio:g}, decoder mask {result.decoder})"
    )
    print(f"model reconstruction MSE:   {result.model_mse:.6f}")
    print(f"copy-nearest-visible MSE:   {result.copy_nearest_mse:.6f}")
    print(f"model / copy:               {result.model_mse / result.copy_nearest_mse:.3f}")
    return 0


COMMAND = Command(
    "lvmae evaluate",
    "Hide segments of the videos a pretraining run held out, let its decoder reconstruct them, and print the "
    "reconstruction MSE beside copying the nearest visible segment (the bar a model must beat).",
    run=_run,
    arguments=_arguments,
)
