"""`lvmae demo`: every stage that exists, in order, on the embedded default (the toy world).

Each stage records what it produced in `<out>/stages/<name>.json` together with a key of what it
depended on; a re-run skips a stage whose key is unchanged, so only new or changed stages run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from foundation.files import atomic_write_json, atomic_write_text
from foundation.progress import Summary, human_seconds
from foundation.schema import Config, CorpusSpec
from lvmae.commands.command import Command


@dataclass
class Stage:
    name: str
    key: Callable[[Demo], dict]  # what the stage's result depends on
    run: Callable[[Demo], dict]  # does the work; returns rows for the summary


@dataclass
class Demo:
    cfg: Config
    out: Path

    @property
    def corpus_dir(self) -> Path:
        return self.out / "toyworld"

    @property
    def store_dir(self) -> Path:
        return self.out / "store"

    def record(self, stage: str) -> Path:
        return self.out / "stages" / f"{stage}.json"

    def result(self, stage: str) -> dict:
        return json.loads(self.record(stage).read_text())["result"]


# ---- stages ------------------------------------------------------------------------------------


def _corpus_spec(d: Demo) -> CorpusSpec:
    return d.cfg.toyworld.corpus()


def _corpus_key(d: Demo) -> dict:
    from toyworld.generate import spec_key

    return spec_key(_corpus_spec(d))


def _corpus_run(d: Demo) -> dict:
    from lvmae.commands.toyworld import summarize_corpus
    from toyworld.generate import generate

    corpus = generate(_corpus_spec(d), d.corpus_dir)
    summarize_corpus(corpus).print()
    return {
        "corpus": str(d.corpus_dir),
        "videos": corpus.videos.num_rows,
        "video hours": round(corpus.video_seconds / 3600, 2),
    }


def _encoder_key(d: Demo) -> dict:
    from foundation.files import sha256_file

    weights = Path(d.cfg.encoder.pretrained)
    return {
        "model": d.cfg.encoder.model,
        "weights": str(weights),
        "sha256": sha256_file(weights) if weights.is_file() else None,
        "corpus": _corpus_key(d),
    }


def _encoder_run(d: Demo) -> dict:
    from foundation.provenance import read_provenance
    from toyworld.encoder import MODEL_NAME, create_model, fit_encoder, labelled_frames, zero_shot
    from toyworld.generate import load_corpus

    weights = Path(d.cfg.encoder.pretrained)
    if d.cfg.encoder.model != MODEL_NAME:
        return {
            "encoder": f"{d.cfg.encoder.model} ({d.cfg.encoder.pretrained}): not the toy-world stand-in, not checked"
        }
    if not weights.is_file():
        # The shipped weights were removed or moved: fit them again (slow; normally never happens).
        print(f"stand-in weights {weights} not found: fitting them now (about half an hour on 2 cores)")
        fit_encoder(weights, d.cfg.toyworld.fit, command="lvmae demo")
    provenance = read_provenance(weights) or {}
    model, _, tokenizer = create_model(weights)
    scores = zero_shot(model, tokenizer, labelled_frames(load_corpus(d.corpus_dir), 1000, seed=0))
    fitted = provenance.get("fit_seconds")
    return {
        "encoder weights": str(weights),
        "fitted": f"{human_seconds(fitted)}, {provenance['steps_done']} steps" if fitted else "unknown",
        "zero-shot top-1 (demo corpus)": f"{scores['top1']:.1%} of {scores['frames']} frames",
    }


def _tokenizer_key(d: Demo) -> dict:
    from foundation.files import sha256_file

    ckpt = Path(d.cfg.tokenizer.checkpoint)
    return {"checkpoint": str(ckpt), "sha256": sha256_file(ckpt) if ckpt.is_file() else None}


def _tokenizer_run(d: Demo) -> dict:
    from foundation.provenance import read_provenance

    ckpt = Path(d.cfg.tokenizer.checkpoint)
    if not ckpt.is_file():
        # The shipped weights were removed or moved: fit them again (slow; normally never happens).
        from lvmae.commands.tokenizer import COMMAND as tokenizer

        print(f"tokenizer weights {ckpt} not found: fitting them now (up to an hour on 2 cores)")
        tokenizer.main(["fit", "--out", str(ckpt)] + (["--config", str(d.cfg.source)] if d.cfg.source else []))
    prov = read_provenance(ckpt) or {}
    held, fit = prov.get("heldout", {}), prov.get("fit", {})
    rows = {"tokenizer weights": str(ckpt)}
    if fit:
        rows["fitted"] = f"{human_seconds(fit['fit_seconds'])}, {fit['steps_done']} steps"
    if held:
        rows["held-out PSNR / scorer AUC"] = f"{held['psnr_db']:.1f} dB / {held['scorer_motion_auc']:.3f}"
    return rows


def _extract_key(d: Demo) -> dict:
    return {
        "corpus": _corpus_key(d),
        "encoder": _encoder_key(d)["sha256"],
        "tokenizer": _tokenizer_key(d)["sha256"],
        "segment": d.cfg.to_dict()["segment"],
    }


def _extract_run(d: Demo) -> dict:
    import shutil

    from extract.runner import run_extract, store_identity
    from lvmae.commands.extract import models_of
    from store import Store, StoreError

    models = models_of(d.cfg)
    if d.store_dir.exists():
        # The demo owns this store: one made with other models or segments is replaced, while one
        # with the same identity (an interrupted run) is resumed.
        try:
            stale = Store.open(str(d.store_dir)).identity != store_identity(models)
        except StoreError:
            stale = True
        if stale:
            shutil.rmtree(d.store_dir)
    report = run_extract(
        d.cfg.extract, models, d.cfg.ray, inputs=d.corpus_dir / "videos.parquet", store_uri=str(d.store_dir)
    )
    report.summary(str(d.store_dir), d.cfg.extract.runner).print()
    if report.videos_ok == 0:
        raise SystemExit("lvmae demo: extraction produced no video")
    return {
        "store": str(d.store_dir),
        "videos": f"{report.videos_ok} ok, {report.videos_failed} failed",
        "segments": report.segments,
        "segments/s": round(report.segments / max(report.seconds, 1e-9), 1),
    }


def _pretrain_config(d: Demo):
    import dataclasses

    return dataclasses.replace(
        d.cfg,
        pretrain=dataclasses.replace(
            d.cfg.pretrain, steps=d.cfg.demo.pretrain_steps, checkpoint_dir=d.out / "pretrain"
        ),
    )


def _pretrain_key(d: Demo) -> dict:
    return {"store": _extract_key(d), "pretrain": _pretrain_config(d).to_dict()["pretrain"]}


def _pretrain_run(d: Demo) -> dict:
    import shutil

    from pretrain.checkpoint import load_pretrained
    from pretrain.evaluate import reconstruction_mse
    from pretrain.train import train
    from store import Store

    cfg = _pretrain_config(d)
    out = cfg.pretrain.checkpoint_dir
    # An interrupted run with the same settings and store is resumed; anything else there is replaced.
    stamp = out / "demo-key.json"
    key = json.dumps(_pretrain_key(d), sort_keys=True, default=str)
    if out.exists() and not (stamp.is_file() and stamp.read_text() == key):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, key)
    result = train(cfg.pretrain, store_uri=str(d.store_dir), out_dir=out, resume=(out / "checkpoint.pt").exists())
    ev = reconstruction_mse(load_pretrained(out / "model.pt"), Store.open(str(d.store_dir)), split="val")
    return {
        "checkpoint": str(out / "model.pt"),
        "steps": result.steps,
        "loss first → last": f"{result.first_loss:.4f} → {result.last_loss:.4f}",
        f"held-out MSE ({ev.decoder} decoder)": (
            f"model {ev.model_mse:.5f} vs copy-nearest "
            f"{ev.copy_nearest_mse:.5f} ({ev.reconstructed_segments} segments "
            f"of {ev.videos} videos)"
        ),
    }


STAGES: list[Stage] = [
    Stage("corpus", _corpus_key, _corpus_run),
    Stage("encoder", _encoder_key, _encoder_run),
    Stage("tokenizer", _tokenizer_key, _tokenizer_run),
    Stage("extract", _extract_key, _extract_run),
    Stage("pretrain", _pretrain_key, _pretrain_run),
]


# ---- command -----------------------------------------------------------------------------------


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="output directory (default: demo.out)")
    parser.add_argument("--force", action="store_true", help="re-run every stage even if finished")


def _run(args: argparse.Namespace, cfg: Config) -> int:
    demo = Demo(cfg, (args.out or cfg.demo.out).resolve())
    summary = Summary(f"lvmae demo: {demo.out}")
    for stage in STAGES:
        key = stage.key(demo)
        record = demo.record(stage.name)
        if not args.force and record.is_file() and json.loads(record.read_text()).get("key") == key:
            status, result = "cached", demo.result(stage.name)
        else:
            print(f"== {stage.name}", flush=True)
            result = stage.run(demo)
            record.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(record, {"key": key, "result": result}, default=str)
            status = "ran"
        summary.add(f"[{status}] {stage.name}", "")
        for label, value in result.items():
            summary.add(f"    {label}", value)
    summary.print()
    return 0


COMMAND = Command(
    "lvmae demo",
    "Run every stage on the embedded default (toy world): "
    + ", ".join(s.name for s in STAGES)
    + ". Finished stages are skipped on a re-run.",
    run=_run,
    arguments=_arguments,
)
