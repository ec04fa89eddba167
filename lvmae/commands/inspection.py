"""`lvmae inspect`: what the pretrained decoder fills in where segments are hidden, as captions and R@k
against the baselines that decide whether it learned anything (see `retrieval.inspection`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from foundation.progress import Summary, bar
from foundation.schema import Config
from lvmae.commands.command import Command, CommandFailed, add_caption_options, pretrain_device

DECODER_CHOICES = {"trained": ("trained",), "all": ("all",), "both": ("trained", "all")}
MASK_CHOICES = ("random", "semantic", "adaptive", "span")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", nargs="?", metavar="VIDEO_ID", help="show this video's timeline (text, or --html)")
    parser.add_argument("--store", metavar="URI", help="store of segment embeddings (default: paths.store)")
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        type=Path,
        help="model.pt or checkpoint.pt of a pretraining run (default: pretrain.checkpoint_dir/model.pt)",
    )
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
    parser.add_argument("--device", help="torch device of the model (default: pretrain.device)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.add_argument(
        "--html",
        metavar="FILE",
        type=Path,
        help="write one self-contained page of a video's timeline (VIDEO_ID, default the longest inspected video)",
    )


def run_inspection(
    cfg: Config,
    *,
    store_uri: str,
    checkpoint: Path,
    captions: Path | None = None,
    truth: str | Path | None = "auto",
    mask: str = "random",
    ratio: float | None = None,
    decoders: tuple[str, ...] = ("trained", "all"),
    seed: int = 0,
    device: str | None = None,
    video: str | None = None,
    progress: bool = True,
):
    """(Inspection, which videos): the held-out videos of the store (or the one `video`) inspected."""
    from pretrain.checkpoint import load_pretrained
    from pretrain.evaluate import held_out_videos
    from retrieval.captions import query_precision, store_bank
    from retrieval.inspection import inspect_reconstructions, videos_by_id
    from retrieval.truth import resolve_truth
    from store import Store

    if ratio is not None and not 0 < ratio < 1:
        raise CommandFailed(f"--ratio {ratio}: a fraction in (0, 1)", status=2)
    store = Store.open(store_uri)
    pretrained = load_pretrained(checkpoint, pretrain_device(device, cfg))
    try:
        videos, which = held_out_videos(pretrained, store)
    except ValueError as exc:
        raise CommandFailed(str(exc)) from None
    if video is not None:
        from pretrain.data import ok_videos

        if video not in {v.video_id for v in videos} and video in {v.video_id for v in ok_videos(store)}:
            raise CommandFailed(
                f"video {video} is one checkpoint {checkpoint} trained on: inspect a video it did not see ({which})"
            )
        videos, which = videos_by_id(videos, video, store.uri), f"video {video}"
    identity = store.identity.to_attrs()
    bank = store_bank(
        captions or cfg.retrieval.captions,
        store.uri,
        identity,
        cfg.encoder,
        precision=query_precision(cfg.retrieval.text_precision, cfg.encoder.device),
        cache_dir=cfg.paths.work_dir / "captions",
    )
    uris = store.videos().column("uri").to_pylist()
    with bar(
        total=sum(v.n_segments for v in videos), desc="inspect", unit="seg", disable=None if progress else True
    ) as pbar:
        inspection = inspect_reconstructions(
            pretrained,
            store,
            bank,
            videos,
            truth=resolve_truth(truth, uris),
            mask=mask,
            ratio=ratio,
            decoders=decoders,
            seed=seed,
            progress=pbar.update,
        )
    return inspection, which


def rk(x: float | None) -> str:
    """An R@k figure as tables print it ("–" for an empty split)."""
    return "–" if x is None else f"{x:.2f}"


def metrics_table(metrics: dict) -> str:
    """The R@1 / R@5 table of `Inspection.metrics()`: a block per decoder, a row per split, a column per method."""
    from retrieval.inspection import METHOD_NAMES

    methods = ["reconstruction", "copy_nearest", "interpolate", "video_mean", "original"]
    width = 15
    lines = [
        f"caption R@1 / R@5 against {metrics['truth']}; bank {metrics['bank_size']} captions, chance "
        f"{metrics['chance_r1']:.3f} / {metrics['chance_r5']:.3f}; {metrics['mask']} encoder mask, ratio "
        f"{metrics['ratio']:g}, seed {metrics['seed']}; {metrics['videos']} videos, {metrics['segments']:,} segments"
    ]
    for name, decoder in metrics["decoders"].items():
        lines.append("")
        lines.append(
            f"decoder {name} ({decoder['decoder_mask']})".ljust(24)
            + "segments".rjust(9)
            + "".join(METHOD_NAMES[m].rjust(width) for m in methods)
        )
        for split, row in decoder["splits"].items():
            cells = "".join(
                f"{rk(row['methods'][m]['r1'])} / {rk(row['methods'][m]['r5'])}".rjust(width) for m in methods
            )
            lines.append(f"  {split}".ljust(24) + f"{row['segments']:,}".rjust(9) + cells)
    return "\n".join(lines)


def timeline_text(inspection, video_id: str) -> str:
    """A video's segments, one a line: time, importance, hidden (H) or visible, truth, and for each decoder
    that reconstructed the segment its top-3 captions, then the copy baseline's top-1. Drawn from the
    same `timeline_record` as the HTML page."""
    from retrieval.search import clock
    from retrieval.timeline import timeline_record

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
    inspection, which = run_inspection(
        cfg,
        store_uri=store_uri,
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
        from retrieval.timeline import write_page

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
