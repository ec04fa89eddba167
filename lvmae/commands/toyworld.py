"""`lvmae toyworld`: generate the procedural corpus, fit and evaluate the stand-in encoder."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from lvmae.commands.command import FIT_OPTIONS, Action, Command, CommandFailed, add_fit_options, with_options
from lvmae.foundation.progress import Summary, human_seconds
from lvmae.foundation.schema import Config


def _minutes(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition("-")
    try:
        pair = (float(lo), float(hi)) if sep else (float(lo), float(lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX or MIN minutes, e.g. 2-64, got {text!r}") from None
    if not 0 < pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, got {text!r}")
    return pair


def _generate_arguments(gen: argparse.ArgumentParser) -> None:
    gen.add_argument("--out", type=Path, help="corpus directory (default: toyworld.out)")
    gen.add_argument("--videos", type=int, help="number of videos (default: toyworld.videos)")
    gen.add_argument(
        "--minutes", type=_minutes, metavar="MIN-MAX", help="video lengths in minutes (default: toyworld.minutes)"
    )
    gen.add_argument("--seed", type=int, help="random seed (default: toyworld.seed)")
    gen.add_argument("--size", type=int, help="frame side in pixels (default: toyworld.size)")
    gen.add_argument("--fps", type=float, help="frames per second (default: toyworld.fps)")
    gen.add_argument("--workers", type=int, help="parallel encoder processes (default: one per CPU)")


def _fit_arguments(fit: argparse.ArgumentParser) -> None:
    fit.add_argument("--out", type=Path, required=True, help="weights file to write (provenance goes beside it)")
    add_fit_options(fit, "toyworld.fit", "frames (each with a distinct caption)")
    fit.add_argument(
        "--eval-frames", type=int, help="held-out frames for the zero-shot check (default: toyworld.fit.eval_frames)"
    )


def _eval_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("--weights", type=Path, help="toyclip weights file (default: encoder.pretrained)")
    ev.add_argument("--frames", type=int, help="held-out frames (default: toyworld.fit.eval_frames)")
    ev.add_argument("--seed", type=int, help="held-out corpus seed (default: toyworld.fit.eval_seed)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument(
        "--record",
        action="store_true",
        help="also write the figures into the weights' provenance file (after a change to the evaluation)",
    )


def _generate(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.toyworld.generate import generate

    spec = with_options(cfg.toyworld.corpus(), "toyworld", args, "videos", "minutes", "seed", "size", "fps")
    corpus = generate(spec, args.out or cfg.toyworld.out, workers=args.workers)
    corpus.summary().print()
    return 0


def _fit(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.toyworld.encoder import fit_encoder

    settings = with_options(cfg.toyworld.fit, "toyworld.fit", args, *FIT_OPTIONS, "eval_frames")
    command = "lvmae toyworld fit-encoder " + shlex.join(sys.argv[2:] if args.argv is None else args.argv[1:])
    s = Summary(f"stand-in encoder fitted: {args.out}")
    try:
        result = fit_encoder(args.out, settings, command=command)
    except ValueError as exc:
        raise CommandFailed(str(exc), status=2) from None
    p = result.provenance
    s.add("steps", p["steps_done"]).add("fit time", human_seconds(p["fit_seconds"]))
    z = p["zero_shot"]
    s.add("zero-shot top-1", f"{z['top1']:.1%} on {z['frames']} held-out frames (seed {settings.eval_seed})")
    s.add("shape / colour / background", f"{z['shape']:.1%} / {z['colour']:.1%} / {z['background']:.1%}")
    s.add(
        "whole caption bank", f"{p['zero_shot_whole_bank']['top1']:.1%} of {p['zero_shot_whole_bank']['frames']} frames"
    )
    s.note(f"provenance: {result.weights.with_suffix('.provenance.json')}")
    s.print()
    return 0


def _evaluate(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.toyworld.encoder import create_model, heldout_frames, record_evaluation, zero_shot

    weights = args.weights or Path(cfg.encoder.pretrained)
    if not Path(weights).is_file():
        raise CommandFailed(f"weights file {str(weights)!r} does not exist")
    frames = args.frames or cfg.toyworld.fit.eval_frames
    seed = cfg.toyworld.fit.eval_seed if args.seed is None else args.seed
    s = Summary(f"zero-shot caption accuracy: {weights}")
    if args.record:
        scores = record_evaluation(weights, seed=seed, frames=frames)["zero_shot"]
    else:
        model, _, tokenizer = create_model(weights)
        scores = zero_shot(model, tokenizer, heldout_frames(frames, seed))
    if args.json:
        print(json.dumps({"weights": str(weights), **scores}))
        return 0
    s.add("top-1", f"{scores['top1']:.1%} on {scores['frames']} held-out frames (seed {seed})")
    s.add("shape / colour / background", f"{scores['shape']:.1%} / {scores['colour']:.1%} / {scores['background']:.1%}")
    s.print()
    return 0


COMMAND = Command(
    "lvmae toyworld",
    "The embedded default: procedural captioned videos and the stand-in encoder.",
    actions={
        "generate": Action(
            "render a corpus of h264 videos with ground truth and caption bank",
            "Render a corpus: videos/*.mp4, videos.parquet, truth.parquet, captions.txt. Options "
            "default to the config's toyworld section.",
            _generate,
            _generate_arguments,
        ),
        "fit-encoder": Action(
            "fit the stand-in open_clip encoder on rendered frames",
            "Fit toyclip contrastively on rendered frames and captions, evaluate it zero-shot on "
            "held-out frames, save fp16 weights and a provenance file. Settings: the config's "
            "toyworld.fit section.",
            _fit,
            _fit_arguments,
        ),
        "eval-encoder": Action(
            "zero-shot caption accuracy of encoder weights on held-out frames",
            "Classify frames decoded from a held-out corpus against the whole caption bank.",
            _evaluate,
            _eval_arguments,
        ),
    },
)
