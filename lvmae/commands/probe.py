"""`lvmae probe`: small heads on frozen features classify whole videos; raw segment embeddings, LV-MAE
before and after pretraining, side by side on the same splits (see `retrieval.probes`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from foundation.progress import Summary, bar
from foundation.schema import Config
from lvmae.commands.command import Command, CommandFailed, pretrain_device


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


def feature_name(path: Path, many: bool) -> str:
    """A checkpoint's row name: lvmae, or its folder/file when several are compared."""
    return f"lvmae:{path.parent.name}/{path.name}" if many else "lvmae"


def run_probe(
    cfg: Config,
    *,
    store_uri: str,
    label: str,
    group: str | None = None,
    checkpoints: list[Path] = (),  # type: ignore[assignment]
    seeds: int = 3,
    device: str | None = None,
    progress: bool = True,
):
    """(ProbeReport, notes): every row of the probe table on the store's videos."""
    from pretrain.checkpoint import load_pretrained
    from pretrain.evaluate import trained_on_store
    from retrieval.probes import labelled_videos, lvmae_features, random_init, raw_features, run_probes
    from store import Store

    if seeds < 1:
        raise CommandFailed(f"--seeds {seeds}: at least 1", status=2)
    store = Store.open(store_uri)
    if group is None and "group" in store.videos().column_names and label != "group":
        group = "group"
    data = labelled_videos(store, label, group)
    raw_name = "raw" if "input_encoder" not in store.identity.encoder else store.identity.encoder["name"]
    feature_sets = [raw_features(store, data, raw_name)]
    notes = []
    torch_device = pretrain_device(device, cfg)
    for k, path in enumerate(checkpoints):
        pretrained = load_pretrained(path, torch_device)
        if k == 0:
            feature_sets.append(lvmae_features(random_init(pretrained), feature_sets[0], "lvmae-init"))
        feature_sets.append(lvmae_features(pretrained, feature_sets[0], feature_name(path, len(checkpoints) > 1)))
        if trained_on_store(pretrained, store):
            notes.append(f"{path} trained on this store's videos: its rows are not held-out figures")
    with bar(total=None, desc="probe", unit="fit", disable=None if progress else True) as pbar:

        def tick(done: int, total: int) -> None:
            pbar.total = total
            pbar.update(done - pbar.n)

        report = run_probes(data, feature_sets, label=label, seeds=tuple(range(seeds)), progress=tick)
    return report, notes


def probe_table(report: dict) -> str:
    """The probe table of `ProbeReport.to_json()`: one row per (features, head, labels per class)."""
    groups = sorted({g for row in report["rows"] for g in row["per_group"]})
    lines = [
        f"probe accuracy on {report['label']!r}: {report['classes']} classes (chance {report['chance']:.3f}), "
        f"{report['videos']} videos; mean ± std over seeds {report['seeds']}; test videos per seed in brackets"
    ]
    head = f"{'features':<24}{'head':<15}{'labels':>7}  {'accuracy':>17}" + "".join(f"  group {g:>3}" for g in groups)
    lines.append(head)
    for row in report["rows"]:
        acc = f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f} ({row['test_videos']})"
        cells = "".join(f"  {row['per_group'].get(g, float('nan')):>9.3f}" for g in groups)
        lines.append(f"{row['features']:<24}{row['head']:<15}{row['labels_per_class']!s:>7}  {acc:>17}{cells}")
    return "\n".join(lines)


def _run(args: argparse.Namespace, cfg: Config) -> int:
    summary = Summary(f"lvmae probe {args.store or cfg.paths.store}")
    checkpoints = list(args.checkpoint or [])
    if args.no_checkpoint and checkpoints:
        raise CommandFailed("give --checkpoint or --no-checkpoint, not both", status=2)
    if not checkpoints and not args.no_checkpoint:
        default = cfg.pretrain.checkpoint_dir / "model.pt"
        checkpoints = [default] if default.is_file() else []
    report, notes = run_probe(
        cfg,
        store_uri=args.store or str(cfg.paths.store),
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
