"""Which pretraining makes LV-MAE learn the procedures: variants at equal steps and seed, each probed and
inspected on held-out data the model never trained on, one table.

    python -m bench.representation [--quick] [--out FILE] [--variants a,b,...] [--steps N] [--work DIR]

Full run: the demo's training store (`runs/demo/store`) and its held-out corpus (`runs/demo/heldout/`,
another seed of the same world), so run `make demo` first. Each variant is `BASELINE` — the demo's
pretraining before this bench chose its defaults: `pipeline.yaml`'s pretrain section with a random encoder
mask of 0.5, the adaptive decoder mask at kappa 0.15, MSE, no code head, 1,000 steps, seed 0 — with a few
settings changed (`VARIANTS`, one factor at a time, plus combinations), trained into `--work/<variant>/` (a finished
variant's figures are kept in its `result.json` and not recomputed; an interrupted one resumes from its
checkpoint). Per variant, on the held-out store:

- `probe_linear`, `probe_attentive`: `lvmae.evaluation.probes` accuracy on the procedure class (mean over 3
  seeds, all labelled videos), and `probe_linear_2`: the linear probe with 2 labelled videos a class;
- `r5`: inspect caption R@5 of the reconstruction and of copy-nearest, per decoder (`trained`, `all`)
  and split: `all` and `boundary` under a random encoder mask, `long_gap` under the span mask (where
  long gaps exist), both hiding half of every window whatever the variant trained with, so every row
  is scored on the same hidden segments;
- `mse`, `copy_mse`: held-out reconstruction MSE with the run's own decoder mask (on random masks
  hiding half), and copying's on the same segments;
- `train_s`: pretraining time here, the sum of the steps' times in the run's `metrics.jsonl` (so a run
  resumed after a kill counts each step once); with `--jobs 2` two variants train side by side on one
  thread each, so compare it between rows of one run only.

The reference rows (raw segment embeddings with every head, LV-MAE at random init) are computed once.

`--quick` (for `make bench`): two synthetic procedure stores of other seeds (`pretrain.synthetic`), the
tiny preset, 40 steps, three variants; the caption bank is the synthetic world's step prototypes, and
with no truth file the original's top-1 caption is the truth. It checks the bench runs end to end; its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from bench._common import emit, machine, parse_args

BASELINE: dict[str, Any] = {
    "encoder_mask": "random",
    "mask_ratio": 0.5,
    "decoder_mask": "adaptive",
    "kappa": 0.15,
    "loss": "mse",
    "code_head": False,
}
"""What every variant changes from, pinned here (not read from pipeline.yaml) so that a kept row means
the same after the defaults move on."""
BASELINE_STEPS = 1000
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},  # BASELINE: the demo's pretraining before this bench
    "semantic-dissimilar": {"encoder_mask": "semantic", "semantic_direction": "dissimilar"},
    "semantic-similar": {"encoder_mask": "semantic", "semantic_direction": "similar"},
    "adaptive-encoder": {"encoder_mask": "adaptive"},
    "span": {"encoder_mask": "span"},
    "ratio-0.75": {"mask_ratio": 0.75},
    "ratio-0.9": {"mask_ratio": 0.9},
    "decoder-all": {"decoder_mask": "all"},
    "decoder-random": {"decoder_mask": "random"},
    "decoder-mix": {"decoder_mask": "mix"},
    "code-head": {"code_head": True},
    "cosine": {"loss": "cosine"},
    "span-0.75-mix": {"encoder_mask": "span", "mask_ratio": 0.75, "decoder_mask": "mix"},
    "span-0.9-mix": {"encoder_mask": "span", "mask_ratio": 0.9, "decoder_mask": "mix"},
    "base-3k": {"steps": 3000},
    # ratio 0.75 trains twice as fast (the encoder sees half as many segments): twice the steps fit the demo's
    # time. The demo's defaults since this bench.
    "ratio-0.75-mix-2k": {"mask_ratio": 0.75, "decoder_mask": "mix", "steps": 2000},
}
QUICK_VARIANTS = ("base", "span", "decoder-mix")
SEEDS = (0, 1, 2)
INSPECT_RATIO = 0.5  # every variant is inspected under the same masks, so copying scores the same in every row
SCORING = 3  # bump when what is measured changes: finished variants are then scored again (not retrained)


def _stores(args, work: Path):
    """(config, train store uri, held-out store uri, caption bank)."""
    from lvmae.foundation.schema import load_config
    from lvmae.store import Store

    if args.quick:
        from lvmae.pretrain.synthetic import make_world, write_procedure_store
        from lvmae.retrieval.captions import CaptionBank

        train_uri, held_uri = str(work / "train-store"), str(work / "heldout-store")
        for uri, videos in ((train_uri, None), (held_uri, 7)):  # the same world, other videos
            if not Path(uri).exists():
                write_procedure_store(
                    uri,
                    videos=24,
                    segments=(40, 120),
                    tokenizer=True,
                    video_seed=videos,
                    id_prefix="held" if videos else "video",
                )
        cfg = load_config(
            None,
            [
                "pretrain.preset=tiny",
                "pretrain.max_segments=64",
                "pretrain.min_segments=16",
                "pretrain.device=cpu",
                "demo.pretrain_steps=40",
                "pretrain.val_interval=0",
            ],
            use_default_file=False,
        )
        world = make_world(32, procedures=4, seed=0)
        identity = Store.open(held_uri).identity.to_attrs()["encoder"]
        texts = [f"step {k}" for k in range(len(world.prototypes))]
        bank = CaptionBank(texts, world.prototypes, identity, "synthetic prototypes", "")
        return cfg, train_uri, held_uri, bank, "procedure", None
    from lvmae.demo import DemoLayout
    from lvmae.retrieval.captions import query_precision, store_bank

    cfg = load_config(None, [])
    demo = DemoLayout(cfg.demo.out)
    train_uri, held_uri = str(demo.store), str(demo.heldout_store)
    for uri in (train_uri, held_uri):
        if not (Path(uri) / "zarr.json").is_file():
            raise SystemExit(f"bench.representation: no store at {uri}; run `make demo` first")
    held = Store.open(held_uri)
    bank = store_bank(
        demo.heldout_corpus / "captions.txt",
        held.uri,
        held.identity.to_attrs(),
        cfg.encoder,
        precision=query_precision(cfg.retrieval.text_precision, cfg.encoder.device),
        cache_dir=cfg.paths.work_dir / "captions",
    )
    return cfg, train_uri, held_uri, bank, "label", demo.heldout_corpus / "truth.parquet"


def _r5(metrics: dict, decoder: str, split: str) -> dict[str, float | None]:
    row = metrics["decoders"][decoder]["splits"][split]
    return {
        "segments": row["segments"],
        "reconstruction": row["methods"]["reconstruction"]["r5"],
        "copy_nearest": row["methods"]["copy_nearest"]["r5"],
    }


def _variant(name: str, overrides: dict, cfg, train_uri, held_uri, bank, label, truth_path, work: Path, steps):
    from lvmae.evaluation.inspection import inspect_reconstructions
    from lvmae.evaluation.probes import labelled_videos, lvmae_features, raw_features, run_probes
    from lvmae.evaluation.reconstruction import reconstruction_mse
    from lvmae.evaluation.truth import Truth
    from lvmae.pretrain.checkpoint import load_pretrained, read_metrics
    from lvmae.pretrain.data import ok_videos
    from lvmae.pretrain.train import train
    from lvmae.store import Store

    settings = {"steps": steps, **overrides}
    out = work / name
    record = out / "result.json"
    key = json.dumps({**settings, "scoring": SCORING}, sort_keys=True)
    saved = json.loads(record.read_text()) if record.is_file() else {}
    if saved.get("key") == key:
        print(f"== {name}: kept from {record}", flush=True)
        return saved["row"]
    before = saved.get("row", {})
    if before.get("settings") == settings and (out / "model.pt").is_file():
        # Trained before, scored under an older SCORING: score it again, keep the training's figures.
        print(f"== {name}: scoring the run trained before", flush=True)
        train_s, last_loss = before["train_s"], before["last_loss"]
    else:
        print(f"== {name}: {settings}", flush=True)
        p = dataclasses.replace(cfg.pretrain, **{**BASELINE, **settings}, checkpoint_dir=out)
        last_loss = train(p, store_uri=train_uri, out_dir=out, resume=(out / "checkpoint.pt").exists()).last_loss
        # The steps' own times from metrics.jsonl: right for a run resumed after a kill too.
        train_s = sum(r["step_s"] for r in read_metrics(out) if "step_s" in r)
    pretrained = load_pretrained(out / "model.pt")
    held = Store.open(held_uri)
    data = labelled_videos(held, label, "group")
    features = lvmae_features(pretrained, raw_features(held, data), name)
    report = run_probes(data, [features], label=label, seeds=SEEDS, labels_per_class=(None, 2)).to_json()
    acc = {(r["head"], r["labels_per_class"]): r for r in report["rows"]}
    truth = Truth.load(truth_path) if truth_path else None
    videos = ok_videos(held)
    random_mask, span = (
        inspect_reconstructions(pretrained, held, bank, videos, truth=truth, mask=m, ratio=INSPECT_RATIO).metrics()
        for m in ("random", "span")
    )
    ev = reconstruction_mse(pretrained, held, split="all", ratio=INSPECT_RATIO)
    row = {
        "variant": name,
        "settings": settings,
        "probe_linear": acc[("linear", "all")]["accuracy_mean"],
        "probe_linear_std": acc[("linear", "all")]["accuracy_std"],
        "probe_attentive": acc[("attentive", "all")]["accuracy_mean"],
        "probe_attentive_std": acc[("attentive", "all")]["accuracy_std"],
        "probe_linear_2": acc[("linear", 2)]["accuracy_mean"] if ("linear", 2) in acc else None,
        "r5": {
            decoder: {
                "all": _r5(random_mask, decoder, "all"),
                "boundary": _r5(random_mask, decoder, "boundary"),
                "long_gap": _r5(span, decoder, "long_gap"),
            }
            for decoder in ("trained", "all")
        },
        "mse": ev.model_mse,
        "copy_mse": ev.copy_nearest_mse,
        "last_loss": last_loss,
        "train_s": round(train_s, 1),
    }
    record.write_text(json.dumps({"key": key, "row": row}))
    return row


def _reference(cfg, held_uri, label) -> list[dict]:
    """Raw embeddings with every head, and LV-MAE at random init (the preset's architecture)."""
    from lvmae.evaluation.probes import labelled_videos, lvmae_features, random_init, raw_features, run_probes
    from lvmae.pretrain.checkpoint import Pretrained
    from lvmae.pretrain.model import LVMAE
    from lvmae.pretrain.presets import model_config
    from lvmae.store import Store

    held = Store.open(held_uri)
    data = labelled_videos(held, label, "group")
    raw = raw_features(held, data)
    mcfg = model_config(cfg.pretrain.preset, dim_in=raw.width)
    stand_in = Pretrained(LVMAE(mcfg), "init", "", dataclasses.asdict(cfg.pretrain))
    init = lvmae_features(random_init(stand_in), raw, "lvmae-init")
    report = run_probes(data, [raw, init], label=label, seeds=SEEDS, labels_per_class=(None, 2)).to_json()
    return [
        {k: r[k] for k in ("features", "head", "labels_per_class", "accuracy_mean", "accuracy_std", "test_videos")}
        for r in report["rows"]
    ]


def _extra(parser) -> None:
    parser.add_argument("--variants", help=f"comma-separated subset of: {', '.join(VARIANTS)} (default: all)")
    parser.add_argument(
        "--steps", type=int, help=f"pretraining steps of a variant that does not set its own (default {BASELINE_STEPS})"
    )
    parser.add_argument("--work", type=Path, help="where the variants train (default: runs/bench-representation)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="variants trained at once, each in its own process (default 1)"
    )
    parser.add_argument("--threads", type=int, help="torch threads per process (default: torch's; 1 with --jobs > 1)")
    parser.add_argument("--no-reference", action="store_true", help=argparse.SUPPRESS)  # a child of --jobs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv, _extra)
    import torch

    threads = args.threads or (1 if args.jobs > 1 else None)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    work = args.work or Path("runs/bench-representation" + ("-quick" if args.quick else ""))
    work.mkdir(parents=True, exist_ok=True)
    cfg, train_uri, held_uri, bank, label, truth = _stores(args, work)
    names = args.variants.split(",") if args.variants else list(QUICK_VARIANTS if args.quick else VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    steps = args.steps or (cfg.demo.pretrain_steps if args.quick else BASELINE_STEPS)
    started = time.perf_counter()
    reference = [] if args.no_reference else _reference(cfg, held_uri, label)
    if args.jobs > 1:
        _in_processes(names, args, work, threads or 1)  # each leaves its row in <work>/<variant>/result.json
    rows = []
    for name in names:
        overrides = dict(VARIANTS[name])
        run_steps = overrides.pop("steps", steps)
        rows.append(_variant(name, overrides, cfg, train_uri, held_uri, bank, label, truth, work, run_steps))
        _print_row(rows[-1])
    emit(
        {
            "quick": args.quick,
            "train_store": train_uri,
            "heldout_store": held_uri,
            "steps": steps,
            "seeds": list(SEEDS),
            "reference": reference,
            "variants": rows,
            "wall_s": round(time.perf_counter() - started, 1),
            **machine(),
        },
        args.out,
    )


def _in_processes(names: list[str], args, work: Path, threads: int) -> None:
    """Train and score the variants `args.jobs` at a time, each in a child process of this benchmark;
    a child that fails is reported, and its variant is then run here."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    def child(name: str) -> None:
        command = [sys.executable, "-m", "bench.representation", "--variants", name, "--work", str(work)]
        command += ["--threads", str(threads), "--out", str(work / name / "child.json"), "--no-reference"]
        command += ["--quick"] if args.quick else []
        command += ["--steps", str(args.steps)] if args.steps else []
        (work / name).mkdir(parents=True, exist_ok=True)
        with open(work / name / "child.log", "w") as log:
            status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
        print(
            f"   {name}: {'done' if status == 0 else f'failed ({status}), see ' + str(work / name / 'child.log')}",
            flush=True,
        )

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(child, names))


def _print_row(row: dict) -> None:
    r5 = row["r5"]
    cells = " ".join(
        f"{d}/{s} {_f(r5[d][s]['reconstruction'])} vs {_f(r5[d][s]['copy_nearest'])}"
        for d in ("trained", "all")
        for s in ("all", "boundary", "long_gap")
    )
    print(
        f"{row['variant']:<20} linear {row['probe_linear']:.3f} attentive {row['probe_attentive']:.3f} "
        f"linear@2 {_f(row['probe_linear_2'])} | R@5 {cells} | mse {row['mse']:.5f} (copy {row['copy_mse']:.5f}) "
        f"| {row['train_s']:.0f} s",
        flush=True,
    )


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    main()
