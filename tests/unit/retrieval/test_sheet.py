import numpy as np
import pytest
from PIL import Image

from lvmae.foundation.files import stale_temp_files
from lvmae.retrieval.sheet import (
    CAPTION_HEIGHT,
    LABEL_WIDTH,
    MARGIN,
    PLACEHOLDER,
    ROW_GAP,
    TILE_GAP,
    TITLE_HEIGHT,
    SheetRow,
    contact_sheet,
    thumbnails,
)
from tests.videos import write_frames

# Second s of the test video is COLOURS[s]: far apart, so h264's loss cannot confuse them.
COLOURS = np.array([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)], np.uint8)
FPS = 8


def colour_video(path, *, h=64, w=64, keyframe_every=None):
    """4 s at 8 fps, each second a solid colour."""
    frames = np.repeat(COLOURS, FPS, axis=0)[:, None, None, :] * np.ones((1, h, w, 1), np.uint8)
    write_frames(path, frames, fps=FPS, keyframe_every=keyframe_every)
    return path


def second_of(rgb):
    """Which second's colour the centre of `rgb` shows (nearest of COLOURS)."""
    h, w = rgb.shape[:2]
    centre = rgb[h // 2 - 2 : h // 2 + 2, w // 2 - 2 : w // 2 + 2].reshape(-1, 3).mean(axis=0)
    distances = np.abs(COLOURS.astype(float) - centre).sum(axis=1)
    assert distances.min() < 3 * 25, f"centre {centre} is none of the colours"
    return int(distances.argmin())


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    # A keyframe every second, so seeks land mid-video rather than at the start.
    return colour_video(tmp_path_factory.mktemp("videos") / "colours.mp4", keyframe_every=FPS)


@pytest.mark.parametrize("keyframes", ["every second", "first only"])
def test_thumbnails_show_the_frame_at_each_time(video, tmp_path, keyframes):
    path = video if keyframes == "every second" else colour_video(tmp_path / "one_gop.mp4")
    times = [0.0, 1.0, 1.5, 2.5, 3.9, 10.0]  # 1.0 is a second's first frame; 10.0 is past the end
    got = thumbnails(str(path), times, side=128)
    assert all(isinstance(t, np.ndarray) for t in got), got
    assert [t.shape for t in got] == [(128, 128, 3)] * len(times)
    assert all(t.dtype == np.uint8 for t in got)
    assert [second_of(t) for t in got] == [0, 1, 1, 2, 3, 3]


def test_thumbnails_keep_aspect_and_rotation(tmp_path):
    wide = colour_video(tmp_path / "wide.mp4", h=32, w=64)
    (small,) = thumbnails(str(wide), [2.5], side=100)
    assert small.shape == (50, 100, 3)
    assert second_of(small) == 2
    (down,) = thumbnails(str(wide), [0.5], side=16)
    assert down.shape == (8, 16, 3)

    frames = np.repeat(COLOURS, FPS, axis=0)[:, None, None, :] * np.ones((1, 32, 64, 1), np.uint8)
    write_frames(tmp_path / "rotated.mp4", frames, fps=FPS, rotation=90)
    (upright,) = thumbnails(str(tmp_path / "rotated.mp4"), [3.5], side=64)
    assert upright.shape == (64, 32, 3)  # stored wide, displayed tall
    assert second_of(upright) == 3


def test_missing_video_gives_reasons_naming_it(tmp_path):
    got = thumbnails(str(tmp_path / "missing.mp4"), [0.0, 1.0, 2.0], side=64)
    assert len(got) == 3
    assert all(isinstance(r, str) and "missing.mp4" in r for r in got), got


def test_corrupt_video_gives_reasons(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    got = thumbnails(str(garbage), [0.0, 2.0], side=64)
    assert len(got) == 2
    assert all(isinstance(r, str) and "garbage.mp4" in r for r in got), got


def test_refused_scheme_gives_reasons():
    got = thumbnails("http://example.invalid/a.mp4", [1.0], side=64)
    assert len(got) == 1 and isinstance(got[0], str) and "http" in got[0]


def test_captions_must_match_times():
    with pytest.raises(ValueError, match="2 captions for 3 times"):
        SheetRow("x", None, (0.0, 1.0, 2.0), ("a", "b"))


def test_contact_sheet_lays_out_rows_and_placeholders(video, tmp_path):
    tile = 48
    rows = [
        SheetRow("colours.mp4\n0:00:01 - 0:00:03\nscore 0.93", str(video), (1.0, 2.5, 3.5), ("0:01", "0:02", "0:03")),
        SheetRow("a long label " * 40, str(video), (0.5,)),  # wrapped and cut to the row
        SheetRow("unknown video", None, (0.0, 1.0, 2.0), ("0:00", "0:01", "0:02")),
        SheetRow("gone", str(tmp_path / "videos" / "missing.mp4"), (0.0, 1.0)),
    ]
    folder = tmp_path / "sheets" / "nested"  # does not exist yet
    out = contact_sheet(rows, folder / "sheet.png", tile=tile, title="query: a red thing", progress=False)

    assert out == folder / "sheet.png"
    image = np.asarray(Image.open(out).convert("RGB"))
    top = MARGIN + TITLE_HEIGHT
    row_height = tile + CAPTION_HEIGHT
    assert image.shape[0] == top + 4 * row_height + 3 * ROW_GAP + MARGIN
    assert image.shape[1] == 2 * MARGIN + LABEL_WIDTH + 3 * tile + 2 * TILE_GAP

    def cell(r, i):
        x = MARGIN + LABEL_WIDTH + i * (tile + TILE_GAP)
        y = top + r * (row_height + ROW_GAP)
        return image[y : y + tile, x : x + tile]

    assert [second_of(cell(0, i)) for i in range(3)] == [1, 2, 3]
    assert second_of(cell(1, 0)) == 0
    for r, i in [(2, 0), (2, 1), (2, 2), (3, 0), (3, 1)]:
        placeholder = cell(r, i)
        assert (placeholder[-2:, :] == PLACEHOLDER).all()  # the padding below the text is plain grey
        assert (placeholder == PLACEHOLDER).all(axis=-1).mean() > 0.5  # mostly grey; the rest is the reason
    assert (cell(1, 1) == 255).all()  # a row with fewer times leaves its other cells white
    assert stale_temp_files(folder) == []


def test_contact_sheet_without_rows_or_title(tmp_path):
    out = contact_sheet([], tmp_path / "empty.png")
    assert Image.open(out).size == (2 * MARGIN + LABEL_WIDTH, 2 * MARGIN)
    assert stale_temp_files(tmp_path) == []


def test_unwritable_output_raises(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OSError):
        contact_sheet([SheetRow("x", None, (0.0,))], tmp_path / "a_file" / "sheet.png", progress=False)
