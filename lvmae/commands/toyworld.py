"""`lvmae toyworld`: generate the procedural corpus, fit and evaluate the stand-in encoder."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from lvmae.commands.options import add_config_options, config_from_args, fail
from lvmae.progress import Summary, human_seconds


def _minutes(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition("-")
    try:
        pair = (float(lo), float(hi)) if sep else (float(lo), float(lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX or MIN minutes, e.g. 2-64, got {text!r}") from None
    if not 0 < pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, got {text!r}")
    return pair


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvmae toyworld",
                                     description="The embedded default: procedural captioned videos and the stand-in encoder.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    gen = sub.add_parser("generate", help="render a corpus of h264 videos with ground truth and caption bank",
                         description="Render a corpus: videos/*.mp4, videos.parquet, truth.parquet, captions.txt. "
                                     "Options default to the config's toyworld section.")
    gen.add_argument("--out", type=Path, help="corpus directory (default: toyworld.out)")
    gen.add_argument("--videos", type=int, help="number of videos (default: toyworld.videos)")
    gen.add_argument("--minutes", type=_minutes, metavar="MIN-MAX", help="video lengths in minutes (default: toyworld.minutes)")
    gen.add_argument("--seed", type=int, help="random seed (default: toyworld.seed)")
    gen.add_argument("--size", type=int, help="frame side in pixels (default: toyworld.size)")
    gen.add_argument("--fps", type=float, help="frames per second (default: toyworld.fps)")
    gen.add_argument("--workers", type=int, help="parallel encoder processes (default: one per CPU)")
    add_config_options(gen)

    fit = sub.add_parser("fit-encoder", help="fit the stand-in open_clip encoder on rendered frames",
                         description="Fit toyclip contrastively on rendered frames and captions, evaluate it "
                                     "zero-shot on held-out frames, save fp16 weights and a provenance file.")
    fit.add_argument("--out", type=Path, required=True, help="weights file to write (provenance goes beside it)")
    fit.add_argument("--steps", type=int, default=None, help="optimizer steps (default 1500)")
    fit.add_argument("--batch-size", type=int, default=None, help="frames per step, distinct captions (default 240)")
    fit.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3)")
    fit.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    fit.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall time, then save")
    fit.add_argument("--eval-frames", type=int, default=None, help="held-out frames for the zero-shot check (default 1000)")
    add_config_options(fit)

    ev = sub.add_parser("eval-encoder", help="zero-shot caption accuracy of encoder weights on held-out frames",
                        description="Classify frames decoded from a held-out corpus against the whole caption bank.")
    ev.add_argument("--weights", type=Path, help="toyclip weights file (default: encoder.pretrained)")
    ev.add_argument("--frames", type=int, default=1000, help="held-out frames (default 1000)")
    ev.add_argument("--seed", type=int, default=1000, help="held-out corpus seed (default 1000)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument("--record", action="store_true",
                    help="also write the figures into the weights' provenance file (after a change to the evaluation)")
    add_config_options(ev)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    if args.action == "generate":
        return _generate(parser, args, cfg)
    if args.action == "fit-encoder":
        return _fit(parser, args, cfg, argv)
    return _evaluate(parser, args, cfg)


def _generate(parser, args, cfg) -> int:
    from toyworld.generate import CorpusSpec, generate

    tw = cfg.toyworld
    try:
        spec = CorpusSpec(videos=args.videos or tw.videos, minutes=args.minutes or tw.minutes,
                          seed=tw.seed if args.seed is None else args.seed, size=args.size or tw.size,
                          fps=args.fps or tw.fps)
    except ValueError as exc:
        return fail(parser, str(exc), 2)
    out = args.out or tw.out
    corpus = generate(spec, out, workers=args.workers)
    summarize_corpus(corpus).print()
    return 0


def summarize_corpus(corpus) -> Summary:
    s = Summary(f"toy-world corpus: {corpus.root}")
    s.started -= corpus.seconds   # the summary's wall time is the generation's
    durations = corpus.videos.column("duration").to_pylist()
    s.add("videos", len(durations))
    s.add("video time", f"{human_seconds(sum(durations))} ({min(durations) / 60:.1f}-{max(durations) / 60:.1f} min each)")
    s.add("frames", f"{sum(corpus.videos.column('n_frames').to_pylist()):,} at {corpus.spec.fps:g} fps, "
                    f"{corpus.spec.size}x{corpus.spec.size}")
    s.add("procedure classes", len(set(corpus.videos.column("label").to_pylist())))
    s.add("steps in truth", corpus.truth.num_rows)
    if corpus.seconds:
        s.add("render+encode rate", f"{sum(durations) / corpus.seconds:,.0f} video-s/s")
    s.note(f"videos:   {corpus.root / 'videos'}")
    s.note(f"inputs:   {corpus.root / 'videos.parquet'}  (uri, id, label: usable as extract.inputs)")
    s.note(f"truth:    {corpus.root / 'truth.parquet'}")
    s.note(f"captions: {corpus.root / 'captions.txt'}")
    return s


def _fit(parser, args, cfg, argv) -> int:
    from toyworld.encoder import FitSettings, fit_encoder

    overrides = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                                   "seed": args.seed, "max_minutes": args.max_minutes,
                                   "eval_frames": args.eval_frames}.items() if v is not None}
    try:
        settings = FitSettings(**overrides)
    except ValueError as exc:
        return fail(parser, str(exc), 2)
    command = "lvmae toyworld fit-encoder " + shlex.join(sys.argv[2:] if argv is None else argv[1:])
    s = Summary(f"stand-in encoder fitted: {args.out}")
    result = fit_encoder(args.out, settings, command=command)
    p = result.provenance
    s.add("steps", p["steps_done"]).add("fit time", human_seconds(p["fit_seconds"]))
    z = p["zero_shot"]
    s.add("zero-shot top-1", f"{z['top1']:.1%} on {z['frames']} held-out frames (seed {settings.eval_seed})")
    s.add("shape / colour / background", f"{z['shape']:.1%} / {z['colour']:.1%} / {z['background']:.1%}")
    s.add("whole caption bank", f"{p['zero_shot_whole_bank']['top1']:.1%} of {p['zero_shot_whole_bank']['frames']} frames")
    s.note(f"provenance: {result.weights.with_suffix('.provenance.json')}")
    s.print()
    return 0


def _evaluate(parser, args, cfg) -> int:
    from toyworld.encoder import create_model, heldout_frames, record_evaluation, zero_shot

    weights = args.weights or Path(cfg.encoder.pretrained)
    if not Path(weights).is_file():
        return fail(parser, f"weights file {str(weights)!r} does not exist")
    s = Summary(f"zero-shot caption accuracy: {weights}")
    if args.record:
        scores = record_evaluation(weights, seed=args.seed, frames=args.frames)["zero_shot"]
    else:
        model, _, tokenizer = create_model(weights)
        scores = zero_shot(model, tokenizer, heldout_frames(args.frames, args.seed))
    if args.json:
        print(json.dumps({"weights": str(weights), **scores}))
        return 0
    s.add("top-1", f"{scores['top1']:.1%} on {scores['frames']} held-out frames (seed {args.seed})")
    s.add("shape / colour / background", f"{scores['shape']:.1%} / {scores['colour']:.1%} / {scores['background']:.1%}")
    s.print()
    return 0
