"""One video's reconstruction timeline as a single self-contained HTML page, from a JSON-able record.

`timeline_record` turns an inspection of a video into plain data (every segment's span, importance,
truth, hidden flag, and for each decoder that reconstructed it the top-3 captions; the copy baseline's
and the original's top-1), which the demo saves beside its metrics; the page and the demo's report are
drawn from that record alone, so neither re-runs a model.

The page holds, in this order: what was inspected (checkpoint, mask, truth, bank); a figure of the
video's timeline (truth steps as coloured bands, the tokenizer's importance, the hidden segments, and
for each decoder the segments it reconstructed, green where its top-1 caption is the truth and red
where not); the R@1 / R@5 table of the whole inspection; and a row per hidden segment with a thumbnail
from the video, the truth, the importance, each decoder's top-3 captions, and the copy baseline's and
the original's top-1. Images are inline (base64 PNG), styles are in the page and there is no script,
so the file opens offline, alone, from any folder.

At most `MAX_THUMBNAILS` rows get a thumbnail (evenly spread over the hidden segments), which bounds
the decoding for an hours-long video; a video that cannot be read gets the reason instead of a picture.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from lvmae.assets import asset
from lvmae.evaluation.inspection import METHOD_NAMES, METHODS, Inspection
from lvmae.foundation.files import atomic_write_text
from lvmae.retrieval.errors import RetrievalError
from lvmae.retrieval.search import clock
from lvmae.retrieval.sheet import thumbnails

MAX_THUMBNAILS = 400
THUMB_SIDE = 72  # px, the longer side

STYLE = asset("lvmae.css")  # shared with the report and `lvmae serve`


def number(value: Any, spec: str = "") -> str:
    """A figure read from a saved artifact as the page shows it: a finite real number formatted with
    `spec`, anything else (NaN, a string, a missing value) as "–". Artifacts are files anyone could
    have written: what is not a number is never formatted as one, nor put into a page unescaped."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return "–"
    return format(value, spec)


def text(value: Any) -> str:
    """Any value read from a saved artifact, escaped for HTML."""
    return html.escape(str(value))


def _png(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def timeline_record(inspection: Inspection, video_id: str) -> dict[str, Any]:
    """Everything the page shows of `video_id`, as JSON-able data."""
    if video_id not in inspection.tracks:
        raise RetrievalError(
            f"video {video_id!r} was not inspected; inspected: {', '.join(sorted(inspection.tracks)[:5])}…"
        )
    track = inspection.tracks[video_id]
    texts = inspection.bank.texts
    names = list(inspection.decoders)
    rows_by = {name: inspection.timeline_rows(name, video_id) for name in names}
    segments = []
    for t in range(len(track.span)):
        label = int(track.label[t])
        segment: dict[str, Any] = {
            "start": float(track.span[t, 0]),
            "end": float(track.span[t, 1]),
            "importance": float(track.importance[t]),
            "hidden": bool(track.hidden[t]),
            "truth": track.truth[t] if track.truth[t] is not None else (texts[label] if label >= 0 else None),
            "step": int(track.step[t]),
            "boundary": bool(track.boundary[t]),
            "long_gap": bool(track.long_gap[t]),
            "decoders": {},
        }
        for name in names:
            tops = rows_by[name].get(t)
            if tops is None:
                continue
            segment["decoders"][name] = [texts[i] for i in tops["reconstruction"][:3]]
            # The baselines depend on the hidden mask alone, the same for every decoder.
            segment["copy_nearest"] = texts[tops["copy_nearest"][0]]
            segment["original"] = texts[tops["original"][0]]
        segments.append(segment)
    return {
        "video_id": video_id,
        "uri": track.uri,
        "checkpoint": inspection.checkpoint,
        "mask": inspection.mask,
        "ratio": inspection.ratio,
        "seed": inspection.seed,
        "truth": inspection.truth_source or "original top-1",
        "bank": f"{inspection.bank.source} ({len(inspection.bank)} captions)",
        "decoders": names,
        "segments": segments,
        "metrics": inspection.metrics(),
    }


def timeline_figure(record: dict[str, Any]) -> str:
    """The timeline of a `timeline_record` as a base64 PNG: truth steps as coloured bands (one colour per
    caption, white edges between steps), importance, hidden segments, and each decoder's reconstructions
    (green where its top-1 is the truth, red where not)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    segs = record["segments"]
    start = np.array([s["start"] for s in segs]) / 60  # minutes
    width = np.array([s["end"] - s["start"] for s in segs]) / 60
    names = record["decoders"]
    fig, axes = plt.subplots(
        3, 1, figsize=(12, 2.2 + 0.35 * len(names)), sharex=True, height_ratios=[1, 1.4, 0.5 + 0.35 * len(names)]
    )
    colours = plt.get_cmap("tab20")
    palette = {c: i for i, c in enumerate(sorted({s["truth"] for s in segs if s["truth"]}))}
    bands = axes[0]
    steps = np.array([s["step"] for s in segs])
    for run in np.split(np.arange(len(segs)), np.flatnonzero(np.diff(steps) != 0) + 1):
        first = segs[run[0]]
        if first["truth"] is not None and first["step"] >= 0:
            left, right = start[run[0]], start[run[-1]] + width[run[-1]]
            colour = colours(palette[first["truth"]] % 20)
            bands.barh(0, right - left, left=left, height=1, color=colour, edgecolor="white", linewidth=0.6)
    bands.set_yticks([0], ["original top-1" if record["truth"] == "original top-1" else "truth"])
    axes[1].plot(start + width / 2, [s["importance"] for s in segs], color="#444", linewidth=1)
    axes[1].set_ylabel("importance", fontsize=8)
    lanes = axes[2]
    hidden = np.array([s["hidden"] for s in segs], dtype=bool)
    lanes.barh(0, width[hidden], left=start[hidden], height=0.8, color="#bbbbbb", linewidth=0)
    for lane, name in enumerate(names, start=1):
        for good, colour in ((True, "#17803d"), (False, "#b42318")):
            pos = [
                i
                for i, s in enumerate(segs)
                if name in s["decoders"] and (s["decoders"][name][0] == s["truth"]) == good
            ]
            lanes.barh(lane, width[pos], left=start[pos], height=0.8, color=colour, linewidth=0)
    lanes.set_yticks(range(len(names) + 1), ["hidden"] + [f"decoder {n}" for n in names])
    lanes.invert_yaxis()
    lanes.set_xlabel("minutes")
    for ax in axes:
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def metrics_html(metrics: dict) -> str:
    head = "".join(f"<th>{METHOD_NAMES[m]}</th>" for m in METHODS)
    rows = []
    for name, decoder in metrics["decoders"].items():
        for split, row in decoder["splits"].items():
            cells = "".join(
                "<td class=num>"
                + (
                    "–"
                    if row["methods"][m]["r1"] is None
                    else f"{number(row['methods'][m]['r1'], '.2f')} / {number(row['methods'][m]['r5'], '.2f')}"
                )
                + "</td>"
                for m in METHODS
            )
            rows.append(
                f"<tr><td>{text(name)} ({text(decoder['decoder_mask'])})</td><td>{text(split)}</td>"
                f"<td class=num>{number(row['segments'], ',')}</td>{cells}</tr>"
            )
    return (
        f"<table><tr><th>decoder</th><th>split</th><th>segments</th>{head}</tr>{''.join(rows)}</table>"
        f"<p class=muted>R@1 / R@5 against {text(metrics['truth'])}; bank {number(metrics['bank_size'], ',')} "
        f"captions, chance {number(metrics['chance_r1'], '.3f')} / {number(metrics['chance_r5'], '.3f')}.</p>"
    )


def _captions(captions: list[str], truth: str | None) -> str:
    return "<br>".join(f"<span class={'hit' if c == truth else 'miss'}>{html.escape(c)}</span>" for c in captions)


def segments_table(record: dict[str, Any], *, max_rows: int | None = None, max_thumbnails: int = MAX_THUMBNAILS) -> str:
    """A row per hidden segment (at most `max_rows`, evenly spread): time, thumbnail, truth, importance,
    each decoder's top-3, the copy baseline's and the original's top-1."""
    segs = record["segments"]
    hidden = [i for i, s in enumerate(segs) if s["hidden"]]
    if max_rows is not None and len(hidden) > max_rows:
        hidden = [hidden[int(k)] for k in np.linspace(0, len(hidden) - 1, max_rows).round()]
    n_thumbs = min(len(hidden), max_thumbnails)
    chosen = sorted({hidden[int(k)] for k in np.linspace(0, len(hidden) - 1, n_thumbs).round()}) if hidden else []
    times = [(segs[i]["start"] + segs[i]["end"]) / 2 for i in chosen]
    pictures = dict(zip(chosen, thumbnails(record["uri"], times, side=THUMB_SIDE)))
    names = record["decoders"]
    body = []
    for i in hidden:
        s = segs[i]
        picture = pictures.get(i)
        if isinstance(picture, np.ndarray):
            thumb = f"<img class=thumb alt='frame at {clock(s['start'])}' src='data:image/png;base64,{_png(picture)}'>"
        else:
            thumb = f"<span class=muted>{html.escape(picture) if picture else ''}</span>"
        cells = "".join(
            f"<td>{_captions(s['decoders'][n], s['truth'])}</td>"
            if n in s["decoders"]
            else "<td class=muted>not reconstructed</td>"
            for n in names
        )
        copy = _captions([s["copy_nearest"]], s["truth"]) if "copy_nearest" in s else ""
        original = _captions([s["original"]], s["truth"]) if "original" in s else ""
        marks = "".join(
            f" <span class=muted>{tag}</span>"
            for flag, tag in ((s["boundary"], "boundary"), (s["long_gap"], "long gap"))
            if flag
        )
        truth = html.escape(s["truth"] or "")
        if record["truth"] == "original top-1":
            truth += " <span class=muted>(original top-1)</span>"
        body.append(
            f"<tr><td class=num>{clock(s['start'])}{marks}</td><td>{thumb}</td><td>{truth}</td>"
            f"<td class=num>{number(s['importance'], '.3f')}</td>{cells}<td>{copy}</td><td>{original}</td></tr>"
        )
    header = "".join(f"<th>decoder {html.escape(n)} top-3</th>" for n in names)
    return (
        f"<table><tr><th>time</th><th>frame</th><th>truth</th><th>importance</th>{header}"
        f"<th>copy-nearest top-1</th><th>original top-1</th></tr>\n{''.join(body)}\n</table>"
    )


def page(record: dict[str, Any]) -> str:
    """The HTML of the page of a `timeline_record`."""
    segs = record["segments"]
    video_id = record["video_id"]
    hidden = sum(s["hidden"] for s in segs)
    facts = {
        "video": f"{video_id} — {record['uri']}",
        "segments": f"{len(segs):,} ({clock(segs[-1]['end'])}), {hidden:,} hidden",
        "checkpoint": record["checkpoint"],
        "encoder mask": f"{record['mask']}, ratio {number(record['ratio'], 'g')}, seed {record['seed']}",
        "truth": record["truth"],
        "caption bank": record["bank"],
    }
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lvmae inspect — {html.escape(video_id)}</title>
<style>{STYLE}</style></head><body>
<h1>Reconstruction timeline: {html.escape(video_id)}</h1>
<dl>{"".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items())}</dl>
<h2>Timeline</h2>
<p>Truth steps (colour per caption), the tokenizer's importance, the segments hidden from the encoder, and
each decoder's reconstructions: green where the top-1 caption is the truth, red where it is not.</p>
<img alt="timeline of {html.escape(video_id)}" src="data:image/png;base64,{timeline_figure(record)}">
<h2>Caption R@1 / R@5 of the inspected videos</h2>
{metrics_html(record["metrics"])}
<h2>Hidden segments</h2>
<p>Each hidden segment's truth and the captions nearest to what each decoder put there, beside copying
the nearest visible segment and the original embedding; green = the truth.</p>
{segments_table(record)}
</body></html>
"""


def write_page(inspection: Inspection, video_id: str, path: str | Path) -> Path:
    """Write the page of `video_id` to `path` (atomically) and return the path."""
    path = Path(path)
    record = timeline_record(inspection, video_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page(record))
    return path
