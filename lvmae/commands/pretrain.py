"""`lvmae pretrain`: train the LV-MAE on a store's sequences, in one process or on Ray Train."""

from __future__ import annotations

import argparse
from pathlib import Path

from lvmae.commands.command import Command
from lvmae.foundation.progress import Summary
from lvmae.foundation.schema import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URI", help="feature store to read (default: paths.store)")
    parser.add_argument(
        "--out", metavar="DIR", type=Path, help="folder for checkpoints and metrics (default: pretrain.checkpoint_dir)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the output folder from its last checkpoint, exactly as if it had not stopped",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --resume: continue even though the checkpoint was trained on another store (another identity "
        "or other training videos); warns, since the run is then no longer the one that was started",
    )


def _run(args: argparse.Namespace, cfg: Config) -> int:
    # Imported here so that `lvmae pretrain --help` stays fast (no torch import).
    from lvmae.api import train

    p = cfg.pretrain
    store_uri = args.store or str(cfg.paths.store)
    result = train(cfg, store=store_uri, out=args.out, resume=args.resume, force=args.force)
    summary = Summary(f"pretrain {result.out_dir}")
    summary.started -= result.wall_s  # the wall time shown is the run's
    summary.add("store", store_uri).add("preset", p.preset).add("parameters", result.params)
    files = "checkpoint.pt, model.pt, metrics.jsonl"
    if p.trainer == "ray":
        nodes = set(result.attempts[-1]["nodes"]) if result.attempts else set()
        placed = f" on {len(nodes)} node{'s' if len(nodes) != 1 else ''}" if nodes else ""
        summary.add("trainer", f"ray, {p.num_workers} workers{placed} ({p.placement})")
        if len(result.attempts) > 1:
            summary.add(
                "restarts",
                f"{len(result.attempts) - 1} after lost workers, resumed at step "
                + ", ".join(f"{a['from_step']:,}" for a in result.attempts[1:]),
            )
        files += ", ray_attempts.json"
    else:
        summary.add("trainer", "local")
    summary.add(
        "steps", f"{result.steps:,}" + (f" (resumed at {result.resumed_from:,})" if result.resumed_from else "")
    )
    summary.add(
        "masking",
        f"encoder {p.encoder_mask} {p.mask_ratio:g}, decoder {p.decoder_mask}"
        + (f" kappa {p.kappa:g}" if p.decoder_mask != "all" else ""),
    )
    if result.first_loss is not None:
        summary.add("loss first step → last 10", f"{result.first_loss:.4f} → {result.last_loss:.4f}")
    summary.add("validation loss", f"{result.val_loss:.4f}" if result.val_loss is not None else "-")
    summary.add("segments/s", result.segments_per_s or "-")
    summary.add("files", files)
    summary.print()
    return 0


COMMAND = Command(
    "lvmae pretrain",
    "Train the masked-embedding autoencoder (LV-MAE) on windows of the store's segment sequences. Settings come "
    "from the config's pretrain section (`lvmae config keys`); pretrain.trainer=ray runs Ray Train workers with "
    "DDP. Writes checkpoint.pt (resumable), model.pt (final weights) and metrics.jsonl to the output folder.",
    run=_run,
    arguments=_arguments,
)
