"""The demo: every stage, in order, on the embedded default (the toy world); `lvmae demo` calls `run_demo`.

Where each thing goes under the output folder is `DemoLayout`, the one definition that the demo, the
report (`lvmae report --demo`), the web app (`lvmae serve --demo`) and the benchmarks read.

Each stage records what it produced in `<out>/stages/<name>.json` together with a key of what it
depended on; a re-run skips a stage whose key is unchanged, so only new or changed stages run.

The demo deletes only folders it made: `<out>/.lvmae-demo` names them (`store`, `index`, `pretrain`,
`heldout`; `heldout/.lvmae-demo` names `store` inside it), and a
stage finding a stale one of those replaces it. A folder in the way that it did not make is an error,
unless it is exactly what the stage would resume (a store with the demo's identity, a pretrain run
with the demo's stamp for these settings): a folder an earlier version of the demo made, before the
marker, which is adopted, never deleted on adoption.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lvmae.foundation.errors import LvmaeError
from lvmae.foundation.files import atomic_write_json, atomic_write_text
from lvmae.foundation.progress import Summary, human_seconds
from lvmae.foundation.schema import Config, CorpusSpec

if TYPE_CHECKING:
    from lvmae.report import Artifacts


class DemoError(LvmaeError):
    """The demo cannot run as set up: a folder in its way, a setting that defeats it, weights that are gone."""


@dataclass(frozen=True)
class DemoLayout:
    """What `lvmae demo --out OUT` writes, and where: the one definition its readers share."""

    out: Path

    @property
    def corpus(self) -> Path:
        """The training corpus (`lvmae toyworld generate`): videos, videos.parquet, truth, captions."""
        return self.out / "toyworld"

    @property
    def captions(self) -> Path:
        return self.corpus / "captions.txt"

    @property
    def store(self) -> Path:
        return self.out / "store"

    @property
    def index(self) -> Path:
        return self.out / "index"

    @property
    def pretrain(self) -> Path:
        """The pretraining run: checkpoint.pt, model.pt, metrics.jsonl."""
        return self.out / "pretrain"

    @property
    def model(self) -> Path:
        return self.pretrain / "model.pt"

    @property
    def heldout(self) -> Path:
        """The held-out corpus (`toyworld/`) and its store (`store/`)."""
        return self.out / "heldout"

    @property
    def heldout_corpus(self) -> Path:
        return self.heldout / "toyworld"

    @property
    def heldout_store(self) -> Path:
        return self.heldout / "store"

    @property
    def stages(self) -> Path:
        """One record a stage: `<name>.json`, the key it ran with and its result rows."""
        return self.out / "stages"

    @property
    def search_examples(self) -> Path:
        return self.out / "search-examples.json"

    @property
    def search_sheet(self) -> Path:
        return self.out / "search-examples.png"

    @property
    def inspect(self) -> Path:
        """`Inspection.metrics()` of the held-out store."""
        return self.out / "inspect.json"

    @property
    def timeline(self) -> Path:
        """The longest inspected video's timeline record, which the report and the page draw."""
        return self.out / "inspect-timeline.json"

    @property
    def timeline_page(self) -> Path:
        return self.out / "inspect.html"

    @property
    def probe(self) -> Path:
        return self.out / "probe.json"

    @property
    def report(self) -> Path:
        return self.out / "report.html"

    def artifacts(self) -> Artifacts:
        """What the report reads of it: the files and folders that exist (absent ones stay None)."""
        from lvmae.report import Artifacts

        def found(path: Path) -> Path | None:
            return path if path.exists() else None

        return Artifacts(
            stages=found(self.stages),
            corpus=found(self.corpus),
            store=str(self.store) if (self.store / "zarr.json").is_file() else None,
            pretrain=found(self.pretrain),
            inspect=found(self.inspect),
            timeline=found(self.timeline),
            probe=found(self.probe),
            index=found(self.index),
            search=found(self.search_examples),
            sheet=found(self.search_sheet),
        )


@dataclass
class Stage:
    name: str
    key: Callable[[Demo], dict]  # what the stage's result depends on
    run: Callable[[Demo], dict]  # does the work; returns rows for the summary
    outputs: Callable[[DemoLayout], tuple[Path, ...]] = lambda layout: ()  # files it writes: one missing runs it again


@dataclass
class Demo:
    cfg: Config
    out: Path

    @property
    def layout(self) -> DemoLayout:
        return DemoLayout(self.out)

    def record(self, stage: str) -> Path:
        return self.layout.stages / f"{stage}.json"

    def result(self, stage: str) -> dict:
        return json.loads(self.record(stage).read_text())["result"]


# ---- the demo's folders -------------------------------------------------------------------------

MARKER = ".lvmae-demo"
"""The file in the output folder naming the folders the demo made there, one a line: the only ones it
ever deletes."""

_MARKER_HEADER = "# Folders `lvmae demo` made here; it may delete and remake these, and never touches others.\n"


def made_by_demo(out: Path) -> set[str]:
    """The names of the folders of `out` that the demo made (its marker's lines)."""
    marker = out / MARKER
    if not marker.is_file():
        return set()
    return {ln.strip() for ln in marker.read_text().splitlines() if ln.strip() and not ln.startswith("#")}


def plan_folder(folder: Path, *, current: bool, what: str) -> str:
    """What the demo may do with `folder`, one it writes in its output folder; `current` says whether
    the folder holds what the stage would resume, `what` names that for the error. Deletes nothing.

    - "create": absent or empty; make it;
    - "keep": the demo made it and it is current; resume it;
    - "replace": the demo made it and it is stale; delete it and make it anew;
    - "adopt": not marked, but current: an earlier version of the demo made it; mark it and resume it.

    Anything else there is a DemoError naming the folder: the demo never deletes what it did not make.
    """
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return "create"
    if folder.is_dir() and folder.name in made_by_demo(folder.parent):
        return "keep" if current else "replace"
    if folder.is_dir() and current:
        return "adopt"
    raise DemoError(
        f"{folder} is in the way: lvmae demo did not make it (it is not named in {folder.parent / MARKER}) "
        f"and it is not {what}; choose another --out, or remove {folder} yourself"
    )


def claim_folder(folder: Path, *, current: bool, what: str) -> str:
    """Act on `plan_folder`: delete a stale folder the demo made, and mark the folder as the demo's
    before anything is written into it. Returns the plan."""
    plan = plan_folder(folder, current=current, what=what)
    if plan == "replace":
        shutil.rmtree(folder)
    if plan != "keep":
        names = made_by_demo(folder.parent) | {folder.name}
        folder.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder.parent / MARKER, _MARKER_HEADER + "".join(f"{n}\n" for n in sorted(names)))
    return plan


# ---- stages ------------------------------------------------------------------------------------


def _corpus_spec(d: Demo) -> CorpusSpec:
    return d.cfg.toyworld.corpus()


def _corpus_key(d: Demo) -> dict:
    from lvmae.toyworld.generate import spec_key

    return spec_key(_corpus_spec(d))


def _corpus_run(d: Demo) -> dict:
    from lvmae.toyworld.generate import generate

    corpus = generate(_corpus_spec(d), d.layout.corpus)
    corpus.summary().print()
    return {
        "corpus": str(d.layout.corpus),
        "videos": corpus.videos.num_rows,
        "video hours": round(corpus.video_seconds / 3600, 2),
    }


def _encoder_key(d: Demo) -> dict:
    from lvmae.foundation.files import sha256_file

    weights = Path(d.cfg.encoder.pretrained)
    return {
        "model": d.cfg.encoder.model,
        "weights": str(weights),
        "sha256": sha256_file(weights) if weights.is_file() else None,
        "corpus": _corpus_key(d),
    }


def _encoder_run(d: Demo) -> dict:
    from lvmae.foundation.provenance import read_provenance
    from lvmae.toyworld.encoder import MODEL_NAME, create_model, labelled_frames, zero_shot
    from lvmae.toyworld.generate import load_corpus

    weights = Path(d.cfg.encoder.pretrained)
    if d.cfg.encoder.model != MODEL_NAME:
        return {
            "encoder": f"{d.cfg.encoder.model} ({d.cfg.encoder.pretrained}): not the toy-world stand-in, not checked"
        }
    if not weights.is_file():
        # The shipped weights are gone (or encoder.pretrained names another file): refitting takes half an
        # hour here and is the user's call, never a side effect of the demo.
        raise DemoError(
            f"encoder.pretrained {weights}: no such file; name the stand-in weights, or fit them with "
            f"`lvmae toyworld fit --out {weights}` (about half an hour on 2 cores)"
        )
    provenance = read_provenance(weights) or {}
    model, _, tokenizer = create_model(weights)
    scores = zero_shot(model, tokenizer, labelled_frames(load_corpus(d.layout.corpus), 1000, seed=0))
    fitted = provenance.get("fit_seconds")
    return {
        "encoder weights": str(weights),
        "fitted": f"{human_seconds(fitted)}, {provenance['steps_done']} steps" if fitted else "unknown",
        "zero-shot top-1 (demo corpus)": f"{scores['top1']:.1%} of {scores['frames']} frames",
    }


def _tokenizer_key(d: Demo) -> dict:
    from lvmae.foundation.files import sha256_file

    ckpt = Path(d.cfg.tokenizer.checkpoint)
    return {"checkpoint": str(ckpt), "sha256": sha256_file(ckpt) if ckpt.is_file() else None}


def _tokenizer_run(d: Demo) -> dict:
    from lvmae.foundation.provenance import read_provenance

    ckpt = Path(d.cfg.tokenizer.checkpoint)
    if not ckpt.is_file():
        raise DemoError(
            f"tokenizer.checkpoint {ckpt}: no such file; name the stand-in tokenizer, or fit one with "
            f"`lvmae tokenizer fit --out {ckpt}` (up to an hour on 2 cores)"
        )
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


def _extract_into(d: Demo, corpus_dir: Path, store_dir: Path):
    """Extract a toy-world corpus into a store folder of the demo's; returns the extraction report."""
    from lvmae.extract.runner import Models, run_extract, store_identity
    from lvmae.store import Store, StoreError

    models = Models.of(d.cfg)
    # A store of the demo's made with other models or segments is replaced, while one with the same
    # identity (an interrupted run) is resumed.
    try:
        current = Store.open(str(store_dir)).identity == store_identity(models)
    except StoreError:  # absent, or not a store
        current = False
    claim_folder(store_dir, current=current, what="an lvmae store with the demo's identity")
    report = run_extract(
        d.cfg.extract, models, d.cfg.ray, inputs=corpus_dir / "videos.parquet", store_uri=str(store_dir)
    )
    report.summary(str(store_dir), d.cfg.extract.runner).print()
    if report.videos_ok == 0:
        raise DemoError(f"extraction of {corpus_dir} produced no video")
    return report


def _extract_run(d: Demo) -> dict:
    report = _extract_into(d, d.layout.corpus, d.layout.store)
    return {
        "store": str(d.layout.store),
        "videos": f"{report.videos_ok} ok, {report.videos_failed} failed",
        "segments": report.segments,
        "segments/s": round(report.segments / max(report.seconds, 1e-9), 1),
    }


def _index_key(d: Demo) -> dict:
    return {"store": _extract_key(d), "retrieval": d.cfg.to_dict()["retrieval"]}


EXAMPLE_QUERIES = 3


def _example_queries(d: Demo) -> list[str]:
    """The captions shown most often in the demo corpus (ties by caption): queries with answers to see."""
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for caption in pq.read_table(d.layout.corpus / "truth.parquet", columns=["caption"])["caption"].to_pylist():
        counts[caption] = counts.get(caption, 0) + 1
    return sorted(counts, key=lambda c: (-counts[c], c))[:EXAMPLE_QUERIES]


def _index_run(d: Demo) -> dict:
    from lvmae.retrieval.index import HEADER, SegmentIndex
    from lvmae.retrieval.search import clock, open_searcher, results_table
    from lvmae.retrieval.sheet import results_sheet
    from lvmae.store import Store

    folder = d.layout.index
    store = Store.open(str(d.layout.store))
    current = False
    if (folder / HEADER).is_file():
        try:
            SegmentIndex.load(folder).check_fresh(store)
            current = True
        except LvmaeError:  # stale, or not an index: a folder of the demo's is rebuilt
            current = False
    if claim_folder(folder, current=current, what="an up-to-date index of the demo's store") in ("create", "replace"):
        index = SegmentIndex.build(store, d.cfg.retrieval)
        index.save(folder)
    searcher = open_searcher(folder, d.cfg.retrieval, d.cfg.encoder, captions=d.layout.captions)
    answers = searcher.text(_example_queries(d), k=5)
    for results in answers:
        print(results_table(results, query=results[0].query))
    sheet = results_sheet([r for results in answers for r in results], d.layout.search_sheet)
    atomic_write_json(d.layout.search_examples, [r.to_json() for results in answers for r in results])
    header = searcher.index.header
    rows = {
        "index": f"{folder} ({header['kind']}, {header['vectors']:,} segments of {header['videos']} videos)",
    }
    for results in answers:
        top = results[0]
        rows[f'"{top.query}"'] = (
            f"top: {top.moment.video_id} {clock(top.moment.start)}–{clock(top.moment.end)} "
            f"({top.moment.score:.3f}, {top.caption})"
        )
    rows["contact sheet"] = str(sheet)
    return rows


def _pretrain_config(d: Demo):
    import dataclasses

    return dataclasses.replace(
        d.cfg,
        pretrain=dataclasses.replace(d.cfg.pretrain, steps=d.cfg.demo.pretrain_steps, checkpoint_dir=d.layout.pretrain),
    )


def _pretrain_key(d: Demo) -> dict:
    return {"store": _extract_key(d), "pretrain": _pretrain_config(d).to_dict()["pretrain"]}


def _pretrain_run(d: Demo) -> dict:
    from lvmae.evaluation.reconstruction import reconstruction_mse
    from lvmae.pretrain.checkpoint import load_pretrained
    from lvmae.pretrain.train import train
    from lvmae.store import Store

    cfg = _pretrain_config(d)
    out = cfg.pretrain.checkpoint_dir
    # An interrupted run with the same settings and store is resumed; a stale run of the demo's is replaced.
    stamp = out / "demo-key.json"
    key = json.dumps(_pretrain_key(d), sort_keys=True, default=str)
    current = stamp.is_file() and stamp.read_text() == key
    claim_folder(out, current=current, what="a demo pretrain run with these settings (its demo-key.json)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, key)
    result = train(cfg.pretrain, store_uri=str(d.layout.store), out_dir=out, resume=(out / "checkpoint.pt").exists())
    ev = reconstruction_mse(load_pretrained(d.layout.model), Store.open(str(d.layout.store)), split="val")
    return {
        "checkpoint": str(d.layout.model),
        "steps": result.steps,
        "loss first → last": f"{result.first_loss:.4f} → {result.last_loss:.4f}",
        f"held-out MSE ({ev.decoder} decoder)": (
            f"model {ev.model_mse:.5f} vs copy-nearest "
            f"{ev.copy_nearest_mse:.5f} ({ev.reconstructed_segments} segments "
            f"of {ev.videos} videos)"
        ),
    }


def _heldout_spec(d: Demo) -> CorpusSpec:
    world = _corpus_spec(d)
    if d.cfg.demo.heldout_seed == world.seed:
        raise DemoError(
            f"demo.heldout_seed {d.cfg.demo.heldout_seed} equals toyworld.seed: the held-out corpus would be the "
            "training corpus; give it another seed"
        )
    return d.cfg.demo.heldout(world)


def _heldout_key(d: Demo) -> dict:
    from lvmae.toyworld.generate import spec_key

    return {
        "corpus": spec_key(_heldout_spec(d)),
        "extract": {k: v for k, v in _extract_key(d).items() if k != "corpus"},
    }


def _heldout_run(d: Demo) -> dict:
    """The held-out corpus: generated, and extracted with the same models into its own store."""
    from lvmae.toyworld.generate import generate, is_complete

    spec = _heldout_spec(d)
    corpus_dir, store_dir = d.layout.heldout_corpus, d.layout.heldout_store
    # The store depends on the corpus: a stale corpus of the demo's replaces the whole folder.
    claim_folder(
        d.layout.heldout, current=is_complete(corpus_dir, spec), what="the demo's held-out corpus (its corpus.json)"
    )
    corpus = None if is_complete(corpus_dir, spec) else generate(spec, corpus_dir)
    report = _extract_into(d, corpus_dir, store_dir)
    return {
        "corpus": f"{corpus_dir} (seed {spec.seed}, {spec.videos} videos of {spec.minutes[0]:g}–{spec.minutes[1]:g} min)"
        + ("" if corpus is None else f", generated in {human_seconds(corpus.seconds)}"),
        "store": str(store_dir),
        "videos": f"{report.videos_ok} ok, {report.videos_failed} failed",
        "segments": report.segments,
        "segments/s": round(report.segments / max(report.seconds, 1e-9), 1),
    }


def _inspect_key(d: Demo) -> dict:
    return {"pretrain": _pretrain_key(d), "heldout": _heldout_key(d), "inspect": INSPECT}


INSPECT = {"mask": "random", "decoders": ["trained", "all"], "seed": 0}
"""How the demo inspects: the checkpoint's mask ratio under a random encoder mask, both decoders."""


def _inspect_run(d: Demo) -> dict:
    from lvmae.evaluation.inspection import METHOD_NAMES, metrics_table, rk, run_inspection
    from lvmae.timeline import page, timeline_record

    inspection, which = run_inspection(
        str(d.layout.heldout_store),
        d.layout.model,
        encoder=d.cfg.encoder,
        retrieval=d.cfg.retrieval,
        captions=d.layout.heldout_corpus / "captions.txt",
        mask=INSPECT["mask"],
        decoders=tuple(INSPECT["decoders"]),
        seed=INSPECT["seed"],
        device=d.cfg.pretrain.device,
        cache_dir=d.cfg.paths.work_dir / "captions",
    )
    metrics = inspection.metrics()
    print(metrics_table(metrics))
    atomic_write_json(d.layout.inspect, metrics)
    record = timeline_record(inspection, inspection.longest_video())
    atomic_write_json(d.layout.timeline, record)  # what the report draws the timeline from
    atomic_write_text(d.layout.timeline_page, page(record))
    rows = {
        "inspected": f"{which}; bank {metrics['bank_size']} captions, chance R@1 / R@5 "
        f"{metrics['chance_r1']:.3f} / {metrics['chance_r5']:.3f}",
        "R@1 / R@5": ", ".join(METHOD_NAMES[m] for m in ("reconstruction", "copy_nearest", "interpolate", "original")),
    }
    for name, decoder in metrics["decoders"].items():
        for split, row in decoder["splits"].items():
            cells = " · ".join(
                f"{rk(row['methods'][m]['r1'])} / {rk(row['methods'][m]['r5'])}"
                for m in ("reconstruction", "copy_nearest", "interpolate", "original")
            )
            rows[f"{name} decoder, {split} ({row['segments']:,})"] = cells
    rows["metrics"] = str(d.layout.inspect)
    rows["timeline page"] = str(d.layout.timeline_page)
    return rows


def _probe_key(d: Demo) -> dict:
    return {"pretrain": _pretrain_key(d), "heldout": _heldout_key(d), "probe": PROBE}


PROBE = {"label": "label", "group": "group", "seeds": 3}
"""How the demo probes: procedure class, accuracy per group, 3 seeds."""


def _probe_run(d: Demo) -> dict:
    from lvmae.evaluation.probes import probe_table, run_probe

    report, _ = run_probe(
        str(d.layout.heldout_store),
        PROBE["label"],
        group=PROBE["group"],
        checkpoints=[d.layout.model],
        seeds=PROBE["seeds"],
        device=d.cfg.pretrain.device,
    )
    data = report.to_json()
    print(probe_table(data))
    atomic_write_json(d.layout.probe, data)
    rows = {
        "probed": f"{data['videos']} held-out videos, {data['classes']} classes (chance {data['chance']:.3f}), "
        f"seeds {data['seeds']}",
    }
    for row in data["rows"]:
        if row["labels_per_class"] in ("all", 2):
            rows[f"{row['features']} {row['head']}, {row['labels_per_class']} labels/class"] = (
                f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f} ({row['test_videos']} test videos)"
            )
    rows["table"] = str(d.layout.probe)
    return rows


STAGES: list[Stage] = [
    Stage("corpus", _corpus_key, _corpus_run),
    Stage("encoder", _encoder_key, _encoder_run),
    Stage("tokenizer", _tokenizer_key, _tokenizer_run),
    Stage("extract", _extract_key, _extract_run),
    Stage("index", _index_key, _index_run, lambda o: (o.search_examples, o.search_sheet)),
    Stage("pretrain", _pretrain_key, _pretrain_run),
    Stage("heldout", _heldout_key, _heldout_run),
    Stage("inspect", _inspect_key, _inspect_run, lambda o: (o.inspect, o.timeline, o.timeline_page)),
    Stage("probe", _probe_key, _probe_run, lambda o: (o.probe,)),
]
"""The stages; the report is written after them, every run (it only reads what they saved)."""


# ---- running it ---------------------------------------------------------------------------------


@dataclass
class DemoRun:
    """What `run_demo` did: where everything went, the one-screen summary, the report."""

    layout: DemoLayout
    summary: Summary
    ran: list[str]
    """The stages that ran (the others were finished and skipped)."""
    report: Path
    sections: list[str]


def run_demo(cfg: Config, out: str | Path | None = None, *, force: bool = False) -> DemoRun:
    """Run every stage of the demo under `out` (default `demo.out`) that is not finished with the same
    inputs, then write the report; `force` runs every stage again. Raises DemoError (or the stage's own
    LvmaeError) when a stage cannot run."""
    demo = Demo(cfg, Path(out or cfg.demo.out).resolve())
    summary = Summary(f"lvmae demo: {demo.out}")
    ran = []
    for stage in STAGES:
        key = stage.key(demo)
        record = demo.record(stage.name)
        saved = json.loads(record.read_text()) if record.is_file() else {}
        outputs_there = all(path.is_file() for path in stage.outputs(demo.layout))
        if not force and saved.get("key") == key and outputs_there:
            status, result, seconds = "cached", saved["result"], saved.get("seconds")
        else:
            print(f"== {stage.name}", flush=True)
            started = time.perf_counter()
            result = stage.run(demo)
            seconds = time.perf_counter() - started
            record.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(record, {"key": key, "result": result, "seconds": seconds}, default=str)
            status = "ran"
            ran.append(stage.name)
        took = "" if seconds is None else f"{human_seconds(seconds)}" + (" when it ran" if status == "cached" else "")
        summary.add(f"[{status}] {stage.name}", took)
        for label, value in result.items():
            summary.add(f"    {label}", value)
    from lvmae.report import write_report

    report, present = write_report(demo.layout.artifacts(), demo.layout.report, title=f"lvmae demo — {demo.out}")
    summary.add("report", f"{report} ({len(present)} sections)")
    return DemoRun(demo.layout, summary, ran, report, present)
