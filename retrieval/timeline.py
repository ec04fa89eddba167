"""One video's reconstruction timeline as a single self-contained HTML page.

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

import numpy as np

from foundation.files import atomic_write_text
from retrieval.errors import RetrievalError
from retrieval.inspection import METHOD_NAMES, METHODS, Inspection
from retrieval.search import clock
from retrieval.sheet import thumbnails

MAX_THUMBNAILS = 400
THUMB_SIDE = 72  # px, the longer side

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } td, th { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.hit { color: #17803d; } .miss { color: #b42318; } .muted { color: #777; }
img.thumb { image-rendering: pixelated; display: block; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; } dt { color: #555; }
"""


def _png(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def timeline_figure(inspection: Inspection, video_id: str) -> str:
    """The timeline as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    track = inspection.tracks[video_id]
    start = track.span[:, 0] / 60  # minutes
    width = (track.span[:, 1] - track.span[:, 0]) / 60
    names = list(inspection.decoders)
    fig, axes = plt.subplots(
        3, 1, figsize=(12, 2.2 + 0.35 * len(names)), sharex=True, height_ratios=[1, 1.4, 0.5 + 0.35 * len(names)]
    )
    colours = plt.get_cmap("tab20")
    bands = axes[0]
    # One bar per step (a run of segments of one step), edged in white so that two steps whose captions
    # share a colour still show where one ends.
    edges = np.flatnonzero(np.diff(track.step) != 0) + 1
    for run in np.split(np.arange(len(start)), edges):
        label = int(track.label[run[0]])
        if label >= 0 and track.step[run[0]] >= 0:
            left, right = start[run[0]], start[run[-1]] + width[run[-1]]
            bands.barh(
                0, right - left, left=left, height=1, color=colours(label % 20), edgecolor="white", linewidth=0.6
            )
    bands.set_yticks([0], ["truth" if inspection.truth_source else "original top-1"])
    axes[1].plot(start + width / 2, track.importance, color="#444", linewidth=1)
    axes[1].set_ylabel("importance", fontsize=8)
    lanes = axes[2]
    hidden = np.flatnonzero(track.hidden)
    lanes.barh(0, width[hidden], left=start[hidden], height=0.8, color="#bbbbbb", linewidth=0)
    for lane, name in enumerate(names, start=1):
        rows = inspection.timeline_rows(name, video_id)
        for good, colour in ((True, "#17803d"), (False, "#b42318")):
            pos = [p for p, tops in rows.items() if (tops["reconstruction"][0] == track.label[p]) == good]
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
                    else f"{row['methods'][m]['r1']:.2f} / {row['methods'][m]['r5']:.2f}"
                )
                + "</td>"
                for m in METHODS
            )
            rows.append(
                f"<tr><td>{html.escape(name)} ({html.escape(decoder['decoder_mask'])})</td><td>{split}</td>"
                f"<td class=num>{row['segments']:,}</td>{cells}</tr>"
            )
    return (
        f"<table><tr><th>decoder</th><th>split</th><th>segments</th>{head}</tr>{''.join(rows)}</table>"
        f"<p class=muted>R@1 / R@5 against {html.escape(str(metrics['truth']))}; bank {metrics['bank_size']} captions, "
        f"chance {metrics['chance_r1']:.3f} / {metrics['chance_r5']:.3f}.</p>"
    )


def _captions(texts: list[str], tops: np.ndarray, label: int, n: int) -> str:
    return "<br>".join(
        f"<span class={'hit' if i == label else 'miss'}>{html.escape(texts[i])}</span>" for i in tops[:n]
    )


def page(inspection: Inspection, video_id: str) -> str:
    """The HTML of the page."""
    track = inspection.tracks[video_id]
    texts = inspection.bank.texts
    metrics = inspection.metrics()
    names = list(inspection.decoders)
    rows_by = {name: inspection.timeline_rows(name, video_id) for name in names}
    hidden = np.flatnonzero(track.hidden).tolist()
    with_thumb = set(
        np.array(hidden)[np.linspace(0, len(hidden) - 1, min(len(hidden), MAX_THUMBNAILS)).round().astype(int)].tolist()
        if hidden
        else []
    )
    chosen = sorted(with_thumb)
    pictures = dict(zip(chosen, thumbnails(track.uri, [float(track.span[p].mean()) for p in chosen], side=THUMB_SIDE)))
    header = "".join(f"<th>decoder {html.escape(n)} top-3</th>" for n in names)
    body = []
    for p in hidden:
        picture = pictures.get(p)
        if isinstance(picture, np.ndarray):
            thumb = f"<img class=thumb alt='frame at {clock(track.span[p].mean())}' src='data:image/png;base64,{_png(picture)}'>"
        else:
            thumb = f"<span class=muted>{html.escape(picture) if picture else ''}</span>"
        label = int(track.label[p])
        truth = track.truth[p] or f"{texts[label]} <span class=muted>(original top-1)</span>"
        cells = []
        any_tops = None
        for name in names:
            tops = rows_by[name].get(p)
            if tops is None:
                cells.append("<td class=muted>not reconstructed</td>")
                continue
            any_tops = tops
            cells.append(f"<td>{_captions(texts, tops['reconstruction'], label, 3)}</td>")
        copy = _captions(texts, any_tops["copy_nearest"], label, 1) if any_tops is not None else ""
        original = _captions(texts, any_tops["original"], label, 1) if any_tops is not None else ""
        marks = "".join(
            f" <span class=muted>{tag}</span>"
            for flag, tag in ((track.boundary[p], "boundary"), (track.long_gap[p], "long gap"))
            if flag
        )
        body.append(
            f"<tr><td class=num>{clock(track.span[p, 0])}{marks}</td><td>{thumb}</td>"
            f"<td>{html.escape(truth) if track.truth[p] else truth}</td><td class=num>{track.importance[p]:.3f}</td>"
            f"{''.join(cells)}<td>{copy}</td><td>{original}</td></tr>"
        )
    facts = {
        "video": f"{video_id} — {track.uri}",
        "segments": f"{len(track.span):,} ({clock(track.span[-1, 1])}), {len(hidden):,} hidden",
        "checkpoint": inspection.checkpoint,
        "encoder mask": f"{inspection.mask}, ratio {inspection.ratio:g}, seed {inspection.seed}",
        "truth": metrics["truth"],
        "caption bank": f"{inspection.bank.source} ({len(inspection.bank)} captions)",
    }
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lvmae inspect — {html.escape(video_id)}</title>
<style>{STYLE}</style></head><body>
<h1>Reconstruction timeline: {html.escape(video_id)}</h1>
<dl>{"".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items())}</dl>
<h2>Timeline</h2>
<p>Truth steps (colour per caption), the tokenizer's importance, the segments hidden from the encoder, and
each decoder's reconstructions: green where the top-1 caption is the truth, red where it is not.</p>
<img alt="timeline of {html.escape(video_id)}" src="data:image/png;base64,{timeline_figure(inspection, video_id)}">
<h2>Caption R@1 / R@5 of the inspected videos</h2>
{metrics_html(metrics)}
<h2>Hidden segments</h2>
<p>Each hidden segment's truth and the captions nearest to what each decoder put there, beside copying
the nearest visible segment and the original embedding; green = the truth.</p>
<table><tr><th>time</th><th>frame</th><th>truth</th><th>importance</th>{header}<th>copy-nearest top-1</th><th>original top-1</th></tr>
{"".join(body)}
</table>
</body></html>
"""


def write_page(inspection: Inspection, video_id: str, path: str | Path) -> Path:
    """Write the page of `video_id` to `path` (atomically) and return the path."""
    path = Path(path)
    if video_id not in inspection.tracks:
        raise RetrievalError(
            f"video {video_id!r} was not inspected; inspected: {', '.join(sorted(inspection.tracks)[:5])}…"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page(inspection, video_id))
    return path
