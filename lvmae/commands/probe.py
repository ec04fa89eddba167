"""`lvmae probe`: small heads on frozen features classify whole videos; raw segment embeddings, LV-MAE
before and after pretraining, side by side on the same splits (see `lvmae.evaluation.probes`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lvmae.commands.command import Command, CommandFailed
from lvmae.foundation.progress import Summary
from lvmae.foundation.schema import Config


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", required=True, metavar="COLUMN", help="manifest column holding each video's class")
    parser.add_argument(
        "--group",
        metavar="COLUMN",
        help="manifest column of class groups, for accuracy per group (default: 'group' when the store has it)",
    )
    parser.add_argument("--store", metavar="URI", help="store of segment embeddings (default: paths.store)")
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        type=Path,
        action="append",
        help="model.pt of a pretraining run, its encoder probed too; repeat for several (default: "
        "pretrain.checkpoint_dir/model.pt when it exists); the first also gives the random-init row",
    )
    parser.add_argument("--no-checkpoint", action="store_true", help="probe the store's own embeddings only")
    parser.add_argument(
        "--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 of splits and heads (default 3)"
    )
    parser.add_argument("--device", help="torch device of the LV-MAE encoders (default: pretrain.device)")
    parser.add_argument("--json", action="store_true", help="print the table as one JSON object")


def _run(args: argparse.Namespace, cfg: Config) -> int:
    summary = Summary(f"lvmae probe {args.store or cfg.paths.store}")
    checkpoints = list(args.checkpoint or [])
    if args.no_checkpoint and checkpoints:
        raise CommandFailed("give --checkpoint or --no-checkpoint, not both", status=2)
    if not checkpoints and not args.no_checkpoint:
        default = cfg.pretrain.checkpoint_dir / "model.pt"
        checkpoints = [default] if default.is_file() else []
    from lvmae.api import probe
    from lvmae.evaluation.probes import probe_table

    report, notes = probe(
        cfg,
        store=args.store,
        label=args.label,
        group=args.group,
        checkpoints=checkpoints,
        seeds=args.seeds,
        device=args.device,
    )
    data = report.to_json()
    if args.json:
        print(json.dumps(data))
    else:
        print(probe_table(data))
    summary.add("label", f"{args.label} ({data['classes']} classes, chance {data['chance']:.3f})")
    summary.add("videos", data["videos"]).add("checkpoints", ", ".join(map(str, checkpoints)) or "none")
    best = max(data["rows"], key=lambda r: (r["labels_per_class"] == "all", r["accuracy_mean"]))
    summary.add("best (all labels)", f"{best['features']} {best['head']}: {best['accuracy_mean']:.3f}")
    for note in notes:
        summary.note(note)
    summary.print(file=sys.stderr if args.json else sys.stdout)
    return 0


COMMAND = Command(
    "lvmae probe",
    "Classify whole videos from frozen features with small heads (linear on the mean; attentive pooling, with "
    "and without positions), raw segment embeddings beside LV-MAE before and after pretraining, 3 seeds of "
    "hash splits, label efficiency (1, 2, 4, all labelled videos per class), accuracy per group.",
    run=_run,
    arguments=_arguments,
)
