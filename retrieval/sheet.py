"""Contact sheets of search results: one row per moment, its label at the left, thumbnails at its times.

Shape legend: `H`/`W` height/width of a thumbnail in pixels.

A thumbnail at time t is decoded from a seek, not a walk from the start: `iter_av_frames(seek_to=t)`
starts at the keyframe at or before t, so a moment two hours into a film costs one GOP of decoding.
The keyframe is usually before t, so frames before t come first; the thumbnail is the first frame whose
time is at least t minus half a frame (the frame nearest t from the later side, robust to timestamps
rounded by the container), or the last frame seen when the video ends before t.

Every tile is `tile` x `tile` pixels with the thumbnail centred in it, its longer side `tile`. A video
that cannot be had (no uri, a missing or corrupt file, a refused scheme, no frames) becomes a grey
placeholder tile holding the reason, never an exception: a sheet of fifty results is still worth
seeing when one file has gone. Errors that are not about a video (the output cannot be written) raise.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lvmae.extract.decode import DecodeLimits, VideoError, iter_av_frames, to_rgb
from lvmae.foundation.files import atomic_write
from lvmae.foundation.progress import bar

if TYPE_CHECKING:
    from lvmae.retrieval.search import Result

MARGIN = 8  # px around the whole sheet
TITLE_HEIGHT = 28  # px of the title band, when there is a title
LABEL_WIDTH = 360  # px of the label box at the left of each row, its padding included
LABEL_PAD = 8  # px between the label text and the first tile
TILE_GAP = 4  # px between tiles of a row
ROW_GAP = 8  # px between rows; a thin rule runs through its middle
CAPTION_HEIGHT = 16  # px of the caption band under each tile (kept when a row has no captions, so rows align)
PLACEHOLDER_PAD = 4  # px between a placeholder's edge and its text

BACKGROUND = (255, 255, 255)
TEXT = (30, 30, 30)
CAPTION_TEXT = (90, 90, 90)
RULE = (225, 225, 225)
PLACEHOLDER = (200, 200, 200)

NO_VIDEO = "no video known for this result"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class SheetRow:
    label: str  # text shown at the left of the row; may hold "\n" for several lines
    uri: str | None  # the video to take thumbnails from (local path or URI as stored); None = unknown
    times: tuple[float, ...]  # seconds; one thumbnail per time (search uses start, middle, end of a moment)
    captions: tuple[str, ...] = ()  # optional short text under each thumbnail; same length as times when given

    def __post_init__(self) -> None:
        if self.captions and len(self.captions) != len(self.times):
            raise ValueError(f"SheetRow {self.label!r}: {len(self.captions)} captions for {len(self.times)} times")


def thumbnails(
    uri: str, times: Sequence[float], *, side: int, limits: DecodeLimits | None = None
) -> list[np.ndarray | str]:
    """For each time, an (H, W, 3) uint8 upright RGB frame scaled so its longer side is `side`
    (aspect kept), or a str: the reason it could not be had. Never raises for a bad/missing/unreadable video:
    every element is then the reason string (e.g. the VideoError message)."""
    if side < 1:
        raise ValueError(f"side must be at least 1 pixel, not {side}")
    out: list[np.ndarray | str] = []
    for t in times:
        seen = None
        try:
            with closing(iter_av_frames(uri, limits=limits, seek_to=float(t))) as frames:
                for when, frame, rotation, duration in frames:
                    seen = frame, rotation
                    # Half a frame of slack: a timestamp rounded by the container still counts as at t.
                    if when >= t - 0.5 * duration:
                        break
                if seen is None:
                    raise VideoError(f"{uri}: no decodable video frame")
                # Converted before the container closes, while the decoder's buffers are surely alive.
                out.append(_scaled(to_rgb(*seen), side))
        except VideoError as exc:
            if seen is None and not any(isinstance(o, np.ndarray) for o in out):
                # Not one frame has come from this video: it cannot be opened or read (missing, corrupt,
                # refused), and every further open would fail the same way, slowly for a network input.
                return [str(exc)] * len(times)
            out.append(str(exc))
    return out


def _scaled(rgb: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) -> (h, w, 3) with max(h, w) == side, aspect kept."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return rgb
    # Upscaling keeps pixels as sharp squares (a 64 px toy frame stays legible, its colours exact);
    # downscaling needs a filter that averages, or fine detail aliases.
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    return np.array(Image.fromarray(rgb).resize(size, resample))  # (h, w, 3)


def contact_sheet(
    rows: Sequence[SheetRow],
    out: str | os.PathLike,
    *,
    tile: int = 128,
    title: str | None = None,
    limits: DecodeLimits | None = None,
    progress: bool = True,
) -> Path:
    """Write the PNG through foundation.files.atomic_write (the project's one atomic durable write helper:
    `atomic_write(path, lambda f: image.save(f, format="PNG"))`), creating the parent folder; return the path."""
    if tile < 1:
        raise ValueError(f"tile must be at least 1 pixel, not {tile}")
    path = Path(out)
    columns = max((len(row.times) for row in rows), default=0)
    row_height = tile + CAPTION_HEIGHT
    top = MARGIN + (TITLE_HEIGHT if title else 0)
    width = 2 * MARGIN + LABEL_WIDTH + columns * tile + max(0, columns - 1) * TILE_GAP
    height = top + len(rows) * row_height + max(0, len(rows) - 1) * ROW_GAP + MARGIN
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        font = _font(16)
        draw.text((MARGIN, MARGIN), _clip(title, font, width - 2 * MARGIN), font=font, fill=TEXT)

    with bar(total=len(rows), desc="contact sheet", unit="row", disable=None if progress else True) as meter:
        for r, row in enumerate(rows):
            y = top + r * (row_height + ROW_GAP)
            if r:
                rule_y = y - ROW_GAP // 2 - 1
                draw.line([(MARGIN, rule_y), (width - MARGIN - 1, rule_y)], fill=RULE)
            _draw_label(draw, row.label, MARGIN, y, row_height)
            if row.uri is None:
                tiles: list[np.ndarray | str] = [NO_VIDEO] * len(row.times)
            else:
                tiles = thumbnails(row.uri, row.times, side=tile, limits=limits)
            for i, item in enumerate(tiles):
                x = MARGIN + LABEL_WIDTH + i * (tile + TILE_GAP)
                _draw_tile(sheet, draw, item, x, y, tile)
                if row.captions:
                    _draw_caption(draw, row.captions[i], x, y + tile, tile)
            meter.update(1)

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: sheet.save(f, format="PNG"))


@functools.cache
def _font(size: int) -> Font:
    # Pillow's bundled font at `size` where FreeType is built in; its fixed bitmap font otherwise.
    return ImageFont.load_default(size=size)


def _line_height(font: Font) -> int:
    return font.getbbox("Ag|")[3] + 2


def _ellipsized(text: str, font: Font, width: int) -> str:
    """`text` cut so that it and a final "…" fit in `width` px."""
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _clip(text: str, font: Font, width: int) -> str:
    """`text` if it fits in `width` px, else cut and ended with "…"."""
    return text if font.getlength(text) <= width else _ellipsized(text, font, width)


def _wrap(text: str, font: Font, width: int) -> list[str]:
    """Lines of at most `width` px: each "\\n" starts a line, words wrap, and a word wider than a line
    (a path or a URI, which most reasons start with) is broken between characters."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            joined = f"{line} {word}" if line else word
            if font.getlength(joined) <= width:
                line = joined
                continue
            if line:
                lines.append(line)
            while len(word) > 1 and font.getlength(word) > width:
                cut = 1
                while cut < len(word) - 1 and font.getlength(word[: cut + 1]) <= width:
                    cut += 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _fit(lines: list[str], font: Font, width: int, max_lines: int) -> list[str]:
    """The first `max_lines` lines, the last ending in "…" when some were dropped."""
    if len(lines) <= max_lines:
        return lines
    if max_lines <= 0:
        return []
    return lines[: max_lines - 1] + [_ellipsized(lines[max_lines - 1], font, width)]


def _draw_lines(draw: ImageDraw.ImageDraw, lines: list[str], x: int, y: int, font: Font, fill) -> None:
    step = _line_height(font)
    for k, line in enumerate(lines):
        draw.text((x, y + k * step), line, font=font, fill=fill)


def _draw_label(draw: ImageDraw.ImageDraw, label: str, x: int, y: int, height: int) -> None:
    font = _font(13)
    text_width = LABEL_WIDTH - LABEL_PAD
    lines = _fit(_wrap(label, font, text_width), font, text_width, height // _line_height(font))
    _draw_lines(draw, lines, x, y, font, TEXT)


def _draw_tile(
    sheet: Image.Image, draw: ImageDraw.ImageDraw, item: np.ndarray | str, x: int, y: int, tile: int
) -> None:
    """A thumbnail centred in the `tile` x `tile` cell at (x, y), or a grey placeholder holding the reason."""
    if isinstance(item, np.ndarray):
        h, w = item.shape[:2]
        sheet.paste(Image.fromarray(item), (x + (tile - w) // 2, y + (tile - h) // 2))
        return
    draw.rectangle([x, y, x + tile - 1, y + tile - 1], fill=PLACEHOLDER)
    font = _font(10)
    inner = tile - 2 * PLACEHOLDER_PAD
    if inner < 1:
        return
    lines = _fit(_wrap(item, font, inner), font, inner, inner // _line_height(font))
    _draw_lines(draw, lines, x + PLACEHOLDER_PAD, y + PLACEHOLDER_PAD, font, TEXT)


def _draw_caption(draw: ImageDraw.ImageDraw, caption: str, x: int, y: int, tile: int) -> None:
    font = _font(11)
    text = _clip(caption, font, tile)
    draw.text((x + (tile - font.getlength(text)) / 2, y + 2), text, font=font, fill=CAPTION_TEXT)


def results_sheet(results: Sequence[Result], out: str | Path) -> Path:
    """A contact sheet of search results: per moment, thumbnails at its start, middle and end."""
    from lvmae.retrieval.search import clock, moment_times

    rows = []
    for r in results:
        m = r.moment
        times = moment_times(m)
        # ASCII dash: Pillow's bundled font has no en dash
        label = f"{r.query}\n#{r.rank}  {m.video_id}\n{clock(m.start)} - {clock(m.end)}  score {m.score:.3f}"
        if r.caption:
            label += f"\n{r.caption}"
        rows.append(SheetRow(label, r.uri, times, tuple(clock(t) for t in times)))
    return contact_sheet(rows, out, title=f"lvmae search: {len(results)} moments")
