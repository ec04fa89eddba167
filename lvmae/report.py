"""The run report: one self-contained HTML page of every stage, drawn from what the stages saved.

It reads artifacts only (stage records, a store's manifests, a run's `metrics.jsonl` and checkpoint
header, the inspect and probe JSON, the saved timeline record, an index header, the search examples)
and never runs a model. Plots are matplotlib PNGs inline, styles are in the page, there is no script,
font or link to fetch: the file opens offline, alone, from any folder.

Each section is present only when its inputs are; an input that exists but cannot be read (a stage
that failed half-way, a truncated file) becomes a line saying what is missing, never an exception.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lvmae.foundation.files import atomic_write_text
from lvmae.foundation.progress import human_bytes, human_seconds
from lvmae.timeline import STYLE, metrics_html, number, segments_table, text, timeline_figure

REPORT_STYLE = (
    STYLE
    + """
section { margin-bottom: 36px; } .what { color: #444; margin-top: -6px; }
.missing { color: #9a6700; } img.plot { max-width: 100%; }
"""
)


@dataclass
class Artifacts:
    """Where a run's saved outputs are; any may be None (that section is then left out). A demo's are
    `lvmae.demo.DemoLayout(out).artifacts()`."""

    stages: Path | None = None  # folder of stage records (<name>.json: key, result, seconds)
    corpus: Path | None = None  # a toy-world corpus folder (videos.parquet)
    store: str | None = None
    pretrain: Path | None = None  # a run folder: metrics.jsonl, model.pt
    inspect: Path | None = None  # inspect.json
    timeline: Path | None = None  # a timeline record (inspect-timeline.json)
    probe: Path | None = None  # probe.json
    index: Path | None = None  # an index folder (index.json)
    search: Path | None = None  # search-examples.json
    sheet: Path | None = None  # search-examples.png
    bench_extract: Path | None = None  # bench.extract JSON
    notes: list[str] = field(default_factory=list)  # what was asked for and not found


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return f"<img class=plot alt='plot' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}'>"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _facts(items: dict[str, Any]) -> str:
    return (
        "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items.items()) + "</dl>"
    )


# --- sections: each returns its HTML body, or None when its inputs are absent ------------------------


def what_ran(a: Artifacts) -> str | None:
    parts = []
    if a.corpus is not None and (a.corpus / "videos.parquet").is_file():
        import pyarrow.parquet as pq

        videos = pq.read_table(a.corpus / "videos.parquet")
        hours = sum(videos.column("duration").to_pylist()) / 3600
        classes = len(set(videos.column("label").to_pylist())) if "label" in videos.column_names else "?"
        parts.append(_facts({"corpus": f"{a.corpus}: {videos.num_rows} videos, {hours:.2f} h, {classes} classes"}))
    if a.store is not None:
        from lvmae.store import Store

        identity = Store.open(a.store).identity
        models = [["encoder", identity.encoder.get("name"), str(identity.encoder.get("weights_sha256", ""))[:16]]]
        if identity.tokenizer:
            models.append(
                ["tokenizer", identity.tokenizer.get("name"), str(identity.tokenizer.get("weights_sha256"))[:16]]
            )
        rows = [m + [_param_count(a, m[0])] for m in models]
        if a.pretrain is not None and (a.pretrain / "model.pt").is_file():
            from lvmae.foundation.files import sha256_file
            from lvmae.pretrain.checkpoint import saved_params

            model = a.pretrain / "model.pt"
            rows.append(["LV-MAE", str(model), sha256_file(model)[:16], f"{saved_params(model):,}"])
        parts.append(_table(["model", "name", "weights sha256", "parameters"], rows))
    if a.stages is not None:
        rows = []
        for record in sorted(a.stages.glob("*.json"), key=lambda p: _stage_order(p.stem)):
            try:
                saved = _read_json(record)
            except (OSError, ValueError):
                rows.append([record.stem, "unreadable record", ""])
                continue
            seconds = saved.get("seconds")
            result = saved.get("result", {})
            rate = next((f"{v} {k}" for k, v in result.items() if k.endswith("/s")), "")
            timed = number(seconds) != "–"  # a NaN or a string in a record: that row says so, the rest stands
            rows.append([record.stem, human_seconds(seconds) if timed else "not timed", rate])
        parts.append(_table(["stage", "wall time", "rate"], rows))
    parts.append(
        _facts(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}",
            }
        )
    )
    return "".join(parts) if len(parts) > 1 else None


STAGE_ORDER = (
    "corpus",
    "encoder",
    "tokenizer",
    "extract",
    "index",
    "pretrain",
    "heldout",
    "inspect",
    "probe",
    "report",
)


def _stage_order(name: str) -> int:
    return STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER)


def _param_count(a: Artifacts, kind: str) -> str:
    """A frozen model's parameter count, summed over the tensors of the weights file its stage record
    names (read memory-mapped, never run); "" when unknown."""
    if a.stages is None or not (a.stages / f"{kind}.json").is_file():
        return ""
    key = _read_json(a.stages / f"{kind}.json").get("key", {})
    path = Path(key.get("weights") or key.get("checkpoint") or "")
    if not path.is_file():
        return ""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    tensors = state.get("state_dict", state) if isinstance(state, dict) else {}
    return f"{sum(t.numel() for t in tensors.values() if isinstance(t, torch.Tensor)):,}"


def store_section(a: Artifacts) -> str | None:
    if a.store is None:
        return None
    from lvmae.store import Store

    store = Store.open(a.store)
    summary = store.summary()
    size = _size_on_disk(a.store)
    identity = summary.identity
    facts = {
        "store": summary.store,
        "videos": f"{summary.videos_ok:,} ok, {summary.videos_failed:,} failed",
        "segments": f"{summary.segments:,} ({summary.hours:.2f} h of video)",
        "embedding width D": summary.emb_dim,
        "token grid": summary.token_grid or "none",
        "size on disk": human_bytes(size) if size is not None else "unknown (not a local folder)",
        "segment spec": json.dumps(identity.get("segment")),
    }
    out = _facts(facts)
    if summary.failed:
        out += "<p>Failed videos and why:</p>" + _table(
            ["video", "error"], [[f["video_id"], f["error"]] for f in summary.failed[:50]]
        )
    return out


def _size_on_disk(uri: str) -> int | None:
    path = Path(uri)
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def extract_section(a: Artifacts) -> str | None:
    if a.bench_extract is None:
        return None
    data = _read_json(a.bench_extract)
    rows = [[k, v] for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return _table(["figure", "value"], rows)


def pretrain_section(a: Artifacts) -> str | None:
    if a.pretrain is None or not (a.pretrain / "metrics.jsonl").is_file():
        return None
    from lvmae.pretrain.checkpoint import read_metrics

    rows = read_metrics(a.pretrain)
    steps = [r for r in rows if "loss" in r]
    vals = [r for r in rows if "val_loss" in r]
    if not steps:
        return "<p class=missing>metrics.jsonl holds no training step yet.</p>"
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    x = [r["step"] for r in steps]
    axes[0].plot(x, [r["loss"] for r in steps], linewidth=0.8, label="train")
    if vals:
        axes[0].plot([r["step"] for r in vals], [r["val_loss"] for r in vals], "o-", label="validation")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("loss", fontsize=10)
    axes[0].legend(fontsize=8)
    axes[1].plot(x, [r["lr"] for r in steps], linewidth=0.8)
    axes[1].set_xlabel("step")
    axes[1].set_title("learning rate", fontsize=10)
    rate = np.array([r["segments"] / r["step_s"] for r in steps if r.get("step_s")])
    if len(rate):
        kernel = min(25, len(rate))
        axes[2].plot(x[: len(rate) - kernel + 1], np.convolve(rate, np.ones(kernel) / kernel, "valid"), linewidth=0.8)
    axes[2].set_xlabel("step")
    axes[2].set_title("segments/s (running mean of 25 steps)", fontsize=10)
    fig.tight_layout()
    plots = _png(fig)
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.hist([r["window"] for r in steps if "window" in r], bins=30, color="#777")
    ax.set_xlabel("window length, segments")
    ax.set_title("training windows", fontsize=10)
    fig.tight_layout()
    facts = {
        "steps": f"{len(steps):,}",
        "loss first → last": f"{steps[0]['loss']:.4f} → {np.mean([r['loss'] for r in steps[-10:]]):.4f}",
        "validation loss": f"{vals[-1]['val_loss']:.5f} at step {vals[-1]['step']}" if vals else "none",
        "segments/s": f"{np.sum([r['segments'] for r in steps]) / np.sum([r['step_s'] for r in steps]):.1f}",
    }
    return _facts(facts) + plots + _png(fig)


def timeline_section(a: Artifacts) -> str | None:
    if a.timeline is None:
        return None
    record = _read_json(a.timeline)
    hidden = sum(s["hidden"] for s in record["segments"])
    return (
        _facts(
            {
                "video": f"{record['video_id']} ({record['uri']}), {len(record['segments'])} segments, {hidden} hidden",
                "checkpoint": record["checkpoint"],
                "encoder mask": f"{record['mask']}, ratio {number(record['ratio'], 'g')}, seed {record['seed']}",
                "truth": record["truth"],
            }
        )
        + f"<img class=plot alt='timeline' src='data:image/png;base64,{timeline_figure(record)}'>"
        + "<p>A selection of the hidden segments (evenly spread):</p>"
        + segments_table(record, max_rows=24)
    )


def inspect_section(a: Artifacts) -> str | None:
    if a.inspect is None:
        return None
    return metrics_html(_read_json(a.inspect))


def probe_section(a: Artifacts) -> str | None:
    if a.probe is None:
        return None
    data = _read_json(a.probe)
    groups = sorted({g for r in data["rows"] for g in r["per_group"]})
    rows = [
        [
            r["features"],
            r["head"],
            r["labels_per_class"],
            f"{number(r['accuracy_mean'], '.3f')} ± {number(r['accuracy_std'], '.3f')}",
            r["test_videos"],
            *(number(r["per_group"].get(g), ".2f") for g in groups),
        ]
        for r in data["rows"]
    ]
    table = _table(
        ["features", "head", "labels/class", "accuracy", "test videos", *(f"group {g}" for g in groups)], rows
    )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    series: dict[str, list[tuple[float, float, float]]] = {}
    most = max((r["labels_per_class"] for r in data["rows"] if r["labels_per_class"] != "all"), default=1)
    for r in data["rows"]:
        n = r["labels_per_class"]
        x = 2 * most if n == "all" else n
        series.setdefault(f"{r['features']} {r['head']}", []).append((x, r["accuracy_mean"], r["accuracy_std"]))
    for name, points in series.items():
        points.sort()
        xs, ys, es = zip(*points)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=2, linewidth=1, label=name)
    if number(data["chance"]) != "–":
        ax.axhline(data["chance"], color="#999", linestyle=":", label="chance")
    ax.set_xscale("log", base=2)
    ticks = sorted({p[0] for pts in series.values() for p in pts})
    ax.set_xticks(ticks, [str(t) if t != 2 * most else "all" for t in ticks])
    ax.set_xlabel("labelled videos per class")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return (
        f"<p>{text(data['classes'])} classes (chance {number(data['chance'], '.3f')}), {text(data['videos'])} "
        f"videos, mean ± std over seeds {text(data['seeds'])}.</p>" + table + _png(fig)
    )


def search_section(a: Artifacts) -> str | None:
    if a.search is None and a.sheet is None:
        return None
    out = ""
    if a.search is not None:
        from lvmae.retrieval.search import clock

        rows = []
        for result in _read_json(a.search):
            rows.append(
                [
                    result["query"],
                    result["rank"],
                    result["video_id"],
                    f"{clock(result['start'])}–{clock(result['end'])}",
                    number(result["score"], ".3f"),
                    result.get("caption") or "",
                ]
            )
        out += _table(["query", "rank", "video", "moment", "score", "caption"], rows)
    if a.sheet is not None:
        data = base64.b64encode(a.sheet.read_bytes()).decode("ascii")
        out += f"<img class=plot alt='contact sheet of the search examples' src='data:image/png;base64,{data}'>"
    return out


SECTIONS: list[tuple[str, str, Callable[[Artifacts], str | None]]] = [
    ("What ran", "The corpus, the models, every stage's wall time and rate, and the machine.", what_ran),
    ("Store", "What the feature store holds: videos and why any failed, segments, size, identity.", store_section),
    ("Extraction throughput", "bench.extract's figures: the pipeline beside the plain loop.", extract_section),
    (
        "Pretraining",
        "Training and validation loss (log scale), learning rate and throughput against step; the lengths of the training windows.",
        pretrain_section,
    ),
    (
        "One held-out video's timeline",
        "Where the encoder was blind and what the decoder put there: truth steps, importance, hidden and reconstructed segments, and some of them as captions.",
        timeline_section,
    ),
    (
        "Reconstruction inspection",
        "Caption R@1 / R@5 of reconstructions against the baselines, per decoder and split.",
        inspect_section,
    ),
    (
        "Probes",
        "Whole-video classification from frozen features, every head and feature set, and how accuracy grows with labels.",
        probe_section,
    ),
    ("Search examples", "Text queries and the moments they find, with thumbnails.", search_section),
]


def build(a: Artifacts, *, title: str = "lvmae report") -> tuple[str, list[str]]:
    """(the page, the names of the sections present). A section whose inputs fail to read says so."""
    body, present = [], []
    for name, what, make in SECTIONS:
        try:
            content = make(a)
        except Exception as exc:  # a half-written or foreign artifact: say what, keep the rest of the page
            content = f"<p class=missing>Could not read this section's inputs: {html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p>"
        if content is None:
            continue
        present.append(name)
        body.append(f"<section><h2>{html.escape(name)}</h2><p class=what>{html.escape(what)}</p>{content}</section>")
    notes = "".join(f"<p class=missing>{html.escape(n)}</p>" for n in a.notes)
    if not body:
        notes += "<p class=missing>No stage has saved anything here yet: nothing to report.</p>"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{REPORT_STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>{notes}{"".join(body)}</body></html>
"""
    return page, present


def write_report(a: Artifacts, path: str | Path, *, title: str = "lvmae report") -> tuple[Path, list[str]]:
    path = Path(path)
    page, present = build(a, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page)
    return path, present
