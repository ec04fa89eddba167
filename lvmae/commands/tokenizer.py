"""`lvmae tokenizer`: fit the MAGVIT-FSQ tokenizer with its token scorer; check it on held-out clips."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from lvmae.commands.options import add_config_options, config_from_args, fail
from lvmae.progress import Summary, human_seconds

# The toy-world corpus a fit uses when no videos are named: 12 four-minute videos (every procedure
# class once), a seed of its own so held-out checks (seed 5000) never see its frames.
FIT_CORPUS = {"videos": 12, "minutes": (4.0, 4.0), "seed": 11}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvmae tokenizer",
                                     description="The frozen video tokenizer: MAGVIT-v2-style causal 3D CNN, FSQ, token scorer.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fit = sub.add_parser("fit", help="fit tokenizer and scorer on clips sampled from videos",
                         description="Fit the tokenizer and its scorer jointly on clips sampled from videos "
                                     "(default: a toy-world corpus generated for the fit), then check it on "
                                     "held-out toy-world clips and write the figures into its provenance.")
    fit.add_argument("--out", type=Path, required=True, help="checkpoint to write (resume state and loss log go beside it)")
    fit.add_argument("--videos", help="directory, list file or parquet/CSV of videos (default: a generated toy-world corpus)")
    fit.add_argument("--steps", type=int, help="optimizer steps (default 5000)")
    fit.add_argument("--batch-size", type=int, help="clips per step (default 8)")
    fit.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    fit.add_argument("--seed", type=int, help="random seed (default 0)")
    fit.add_argument("--max-minutes", type=float, help="stop after this much fitting time, then save")
    fit.add_argument("--resume", action="store_true", help="continue from <out>.ckpt")
    fit.add_argument("--eval-clips", type=int, default=256, help="held-out clips for the final check (default 256)")
    add_config_options(fit)
    ev = sub.add_parser("eval", help="held-out PSNR and scorer ROC AUC of a checkpoint",
                        description="Reconstruction PSNR and scorer ROC AUC (moving object vs static background) "
                                    "on held-out toy-world clips of another seed.")
    ev.add_argument("--checkpoint", type=Path, help="tokenizer checkpoint (default: tokenizer.checkpoint)")
    ev.add_argument("--clips", type=int, default=256, help="held-out clips (default 256)")
    ev.add_argument("--seed", type=int, default=5000, help="held-out corpus seed (default 5000)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument("--record", action="store_true", help="write the figures into the checkpoint's provenance file")
    add_config_options(ev)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    if args.action == "fit":
        return _fit(parser, args, cfg, argv)
    return _eval(parser, args, cfg)


def _fit_videos(args, cfg) -> list[str]:
    from extract.inputs import list_inputs
    from toyworld.generate import CorpusSpec, generate, is_complete

    if args.videos:
        return [v.uri for v in list_inputs(args.videos)]
    spec = CorpusSpec(videos=FIT_CORPUS["videos"], minutes=FIT_CORPUS["minutes"], seed=FIT_CORPUS["seed"],
                      size=cfg.segment.tok_size, fps=cfg.segment.tok_fps)
    root = cfg.paths.work_dir / "tokenizer-fit-corpus"
    if not is_complete(root, spec):
        generate(spec, root)
    return [v.uri for v in list_inputs(root / "videos.parquet")]


def _fit(parser, args, cfg, argv) -> int:
    from extract.tokenizer.evaluate import evaluate, heldout_clips
    from extract.tokenizer.fit import TokenizerFitSettings, fit_tokenizer
    from extract.tokenizer.provenance import write_provenance

    given = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "max_minutes": args.max_minutes}
    try:
        settings = TokenizerFitSettings(frames=cfg.segment.tok_frames, size=cfg.segment.tok_size,
                                        fps=cfg.segment.tok_fps, **{k: v for k, v in given.items() if v is not None})
        videos = _fit_videos(args, cfg)
    except ValueError as exc:
        return fail(parser, str(exc), 2)
    if not videos:
        return fail(parser, f"no videos found in {args.videos}", 2)
    summary = Summary(f"tokenizer fitted: {args.out}")
    command = "lvmae tokenizer fit " + shlex.join(sys.argv[2:] if argv is None else argv[1:])
    model, info = fit_tokenizer(videos, args.out, settings, resume=args.resume, meta={"command": command})
    figures = evaluate(model, heldout_clips(args.eval_clips, frames=settings.frames, size=settings.size,
                                            fps=settings.fps), kappa=cfg.tokenizer.kappa)
    write_provenance(args.out, info, figures)
    summary.add("steps", info["steps_done"]).add("fit time", human_seconds(info["fit_seconds"]))
    _add_figures(summary, figures)
    summary.note(f"resume state: {args.out.with_suffix('.ckpt')}")
    summary.note(f"loss log:     {args.out.with_suffix('.log.jsonl')}")
    summary.print()
    return 0


def _add_figures(summary: Summary, f: dict) -> None:
    summary.add("held-out PSNR (all tokens)", f"{f['psnr_db']:.2f} dB on {f['clips']} clips (seed {f['seed']})")
    summary.add("scorer ROC AUC", f"{f['scorer_motion_auc']:.3f} (moving object vs static background tokens)")
    if f.get("importance_moving_clips") is not None and f.get("importance_empty_clips") is not None:
        summary.add("importance", f"{f['importance_moving_clips']:.3f} moving-object clips, "
                                  f"{f['importance_empty_clips']:.3f} empty clips")


def _eval(parser, args, cfg) -> int:
    from extract.tokenizer.evaluate import evaluate, heldout_clips
    from extract.tokenizer.fit import load_tokenizer
    from extract.tokenizer.provenance import read_provenance, write_provenance

    checkpoint = args.checkpoint or cfg.tokenizer.checkpoint
    summary = Summary(f"tokenizer held-out check: {checkpoint}")
    try:
        model = load_tokenizer(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        return fail(parser, str(exc))
    seg = cfg.segment
    figures = evaluate(model, heldout_clips(args.clips, args.seed, seg.tok_frames, seg.tok_size, seg.tok_fps),
                       kappa=cfg.tokenizer.kappa)
    if args.record:
        write_provenance(checkpoint, (read_provenance(checkpoint) or {}).get("fit", {}), figures)
    if args.json:
        print(json.dumps({"checkpoint": str(checkpoint), **figures}))
        return 0
    _add_figures(summary, figures)
    summary.print()
    return 0
