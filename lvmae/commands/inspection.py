"""`lvmae inspect`: what the pretrained decoder fills in where segments are hidden, as captions and R@k
against the baselines that decide whether it learned anything (see `lvmae.evaluation.inspection`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lvmae.commands.command import Command, add_caption_options, add_model_options
from lvmae.foundation.progress import Summary
from lvmae.foundation.schema import Config

DECODER_CHOICES = {"trained": ("trained",), "all": ("all",), "both": ("trained", "all")}
MASK_CHOICES = ("random", "semantic", "adaptive", "span")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", nargs="?", metavar="VIDEO_ID", help="show this video's timeline (text, or --html)")
    add_model_options(parser)
    add_caption_options(parser)
    parser.add_argument("--mask", choices=MASK_CHOICES, default="random", help="encoder mask (default random)")
    parser.add_argument("--ratio", type=float, help="fraction of each window hidden (default: the run's mask_ratio)")
    parser.add_argument(
        "--decoder",
        choices=tuple(DECODER_CHOICES),
        default="both",
        help="which hidden segments are reconstructed: trained (the checkpoint's decoder mask), all (every hidden "
        "segment) or both (default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the masks (default 0)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.add_argument(
        "--html",
        metavar="FILE",
        type=Path,
        help="write one self-contained page of a video's timeline (VIDEO_ID, default the longest inspected video)",
    )


def timeline_text(inspection, video_id: str) -> str:
    """A video's segments, one a line: time, importance, hidden (H) or visible, truth, and for each decoder
    that reconstructed the segment its top-3 captions, then the copy baseline's top-1. Drawn from the
    same `timeline_record` as the HTML page."""
    from lvmae.retrieval.search import clock
    from lvmae.timeline import timeline_record

    record = timeline_record(inspection, video_id)
    no_truth = record["truth"] == "original top-1"
    lines = [f"video {video_id} ({record['uri']}); H = hidden from the encoder, ✓ = top-1 is the truth"]
    for s in record["segments"]:
        truth = (s["truth"] or "–") + (" (original top-1)" if no_truth else "")
        lines.append(f"{clock(s['start'])}  {s['importance']:6.3f}  {'H' if s['hidden'] else ' '}  {truth}")
        for name, top3 in s["decoders"].items():
            lines.append(f"      {name:>8} {'✓' if top3[0] == s['truth'] else '✗'} " + "; ".join(top3))
        if "copy_nearest" in s:
            copy = s["copy_nearest"]
            lines.append(f"      {'copy':>8} {'✓' if copy == s['truth'] else '✗'} {copy}")
    return "\n".join(lines)


def _run(args: argparse.Namespace, cfg: Config) -> int:
    summary = Summary(f"lvmae inspect {args.store or cfg.paths.store}")
    checkpoint = args.checkpoint or cfg.pretrain.checkpoint_dir / "model.pt"
    store_uri = args.store or str(cfg.paths.store)
    from lvmae.api import inspect

    inspection, which = inspect(
        cfg,
        store=store_uri,
        checkpoint=checkpoint,
        captions=args.captions,
        truth=args.truth,
        mask=args.mask,
        ratio=args.ratio,
        decoders=DECODER_CHOICES[args.decoder],
        seed=args.seed,
        device=args.device,
        video=args.video,
    )
    from lvmae.evaluation.inspection import metrics_table, rk

    metrics = inspection.metrics()
    out = sys.stderr if args.json else sys.stdout
    if args.json:
        print(json.dumps(metrics))
    elif args.video:
        print(timeline_text(inspection, args.video))
        print()
        print(metrics_table(metrics))
    else:
        print(metrics_table(metrics))
    if args.html is not None:
        from lvmae.timeline import write_page

        video = args.video or inspection.longest_video()
        print(f"timeline page: {write_page(inspection, video, args.html)}", file=out)
    summary.add("checkpoint", str(checkpoint)).add("videos", which)
    summary.add("caption bank", f"{inspection.bank.source} ({len(inspection.bank)} captions)")
    summary.add("truth", metrics["truth"])
    for name, decoder in metrics["decoders"].items():
        row = decoder["splits"]["all"]
        m = row["methods"]
        summary.add(
            f"decoder {name}: R@5",
            f"reconstruction {rk(m['reconstruction']['r5'])} vs copy-nearest {rk(m['copy_nearest']['r5'])} "
            f"(original {rk(m['original']['r5'])}; {row['segments']:,} segments)",
        )
    summary.print(file=out)
    return 0


COMMAND = Command(
    "lvmae inspect",
    "Hide segments of held-out videos, let the pretrained decoder reconstruct them, and rank a caption bank "
    "against each reconstruction: caption R@1/R@5 against truth beside copying the nearest visible segment, "
    "interpolating, the video mean and the original embedding, over all, step-boundary and long-gap segments.",
    run=_run,
    arguments=_arguments,
)
