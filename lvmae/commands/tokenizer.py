"""`lvmae tokenizer`: fit the MAGVIT-FSQ tokenizer with its token scorer; check it on held-out clips."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from lvmae.commands.command import FIT_OPTIONS, Action, Command, CommandFailed, add_fit_options, with_options
from lvmae.foundation.progress import Summary, human_seconds
from lvmae.foundation.schema import Config, CorpusSpec

# The toy-world corpus a fit uses when no videos are named: 12 four-minute videos (every procedure
# class once), a seed of its own so held-out checks (tokenizer.fit.eval_seed) never see its frames.
FIT_CORPUS = CorpusSpec(videos=12, minutes=(4.0, 4.0), seed=11)


def _fit_arguments(fit: argparse.ArgumentParser) -> None:
    fit.add_argument(
        "--out", type=Path, required=True, help="checkpoint to write (resume state and loss log go beside it)"
    )
    fit.add_argument(
        "--videos", help="directory, list file or parquet/CSV of videos (default: a generated toy-world corpus)"
    )
    add_fit_options(fit, "tokenizer.fit", "clips")
    fit.add_argument("--resume", action="store_true", help="continue from <out>.ckpt")
    fit.add_argument(
        "--eval-clips", type=int, help="held-out clips for the final check (default: tokenizer.fit.eval_clips)"
    )


def _eval_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("--checkpoint", type=Path, help="tokenizer checkpoint (default: tokenizer.checkpoint)")
    ev.add_argument("--clips", type=int, help="held-out clips (default: tokenizer.fit.eval_clips)")
    ev.add_argument("--seed", type=int, help="held-out corpus seed (default: tokenizer.fit.eval_seed)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument("--record", action="store_true", help="write the figures into the checkpoint's provenance file")


def _fit_videos(args, cfg: Config) -> list[str]:
    from lvmae.extract.inputs import list_inputs
    from lvmae.toyworld.generate import generate, is_complete

    if args.videos:
        return [v.uri for v in list_inputs(args.videos)]
    spec = dataclasses.replace(FIT_CORPUS, size=cfg.segment.tok_size, fps=cfg.segment.tok_fps)
    root = cfg.paths.work_dir / "tokenizer-fit-corpus"
    if not is_complete(root, spec):
        generate(spec, root)
    return [v.uri for v in list_inputs(root / "videos.parquet")]


def _heldout(cfg: Config, clips: int, seed: int):
    from lvmae.toyworld.heldout import heldout_clips

    seg = cfg.segment
    return heldout_clips(clips, seed, seg.tok_frames, seg.tok_size, seg.tok_fps)


def _fit(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.extract.tokenizer.evaluate import evaluate
    from lvmae.extract.tokenizer.fit import fit_tokenizer, record_provenance

    settings = with_options(cfg.tokenizer.fit, "tokenizer.fit", args, *FIT_OPTIONS, "eval_clips")
    videos = _fit_videos(args, cfg)
    if not videos:
        raise CommandFailed(f"no videos found in {args.videos}", status=2)
    summary = Summary(f"tokenizer fitted: {args.out}")
    command = "lvmae tokenizer fit " + shlex.join(sys.argv[2:] if args.argv is None else args.argv[1:])
    model, info = fit_tokenizer(videos, args.out, settings, cfg.segment, resume=args.resume, meta={"command": command})
    figures = evaluate(model, _heldout(cfg, settings.eval_clips, settings.eval_seed), kappa=cfg.tokenizer.kappa)
    record_provenance(args.out, info, figures)
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
        summary.add(
            "importance",
            f"{f['importance_moving_clips']:.3f} moving-object clips, {f['importance_empty_clips']:.3f} empty clips",
        )


def _eval(args: argparse.Namespace, cfg: Config) -> int:
    from lvmae.extract.tokenizer.evaluate import evaluate
    from lvmae.extract.tokenizer.fit import load_tokenizer, record_provenance
    from lvmae.foundation.provenance import read_provenance

    checkpoint = args.checkpoint or cfg.tokenizer.checkpoint
    summary = Summary(f"tokenizer held-out check: {checkpoint}")
    try:
        model = load_tokenizer(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandFailed(str(exc)) from None
    fit = cfg.tokenizer.fit
    held = _heldout(cfg, args.clips or fit.eval_clips, fit.eval_seed if args.seed is None else args.seed)
    figures = evaluate(model, held, kappa=cfg.tokenizer.kappa)
    if args.record:
        record_provenance(checkpoint, (read_provenance(checkpoint) or {}).get("fit", {}), figures)
    if args.json:
        print(json.dumps({"checkpoint": str(checkpoint), **figures}))
        return 0
    _add_figures(summary, figures)
    summary.print()
    return 0


COMMAND = Command(
    "lvmae tokenizer",
    "The frozen video tokenizer: MAGVIT-v2-style causal 3D CNN, FSQ, token scorer.",
    actions={
        "fit": Action(
            "fit tokenizer and scorer on clips sampled from videos",
            "Fit the tokenizer and its scorer jointly on clips sampled from videos (default: a toy-world "
            "corpus generated for the fit), then check it on held-out toy-world clips and write the "
            "figures into its provenance. Settings: the config's tokenizer.fit section.",
            _fit,
            _fit_arguments,
        ),
        "eval": Action(
            "held-out PSNR and scorer ROC AUC of a checkpoint",
            "Reconstruction PSNR and scorer ROC AUC (moving object vs static background) on held-out "
            "toy-world clips of another seed.",
            _eval,
            _eval_arguments,
        ),
    },
)
