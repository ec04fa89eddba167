"""The demo's report end to end: a tiny `lvmae demo` (tiny preset, few short videos), its report parsed,
its images decoded, and the page rendered in a real headless browser (Debian's chromium)."""

import base64
import io
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

from lvmae import cli

SCREENSHOT = Path(__file__).parent / "report.png"  # the README's picture; LVMAE_UPDATE_SCREENSHOT=1 rewrites it
SECTIONS = [
    "What ran",
    "Store",
    "Pretraining",
    "One held-out video's timeline",
    "Reconstruction inspection",
    "Probes",
    "Search examples",
]


class Parsed(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.sources, self.h2, self._in_h2 = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        self.sources += [attrs[k] for k in ("src", "href") if k in attrs]
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        self._in_h2 = False if tag == "h2" else self._in_h2

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data)


def test_the_report_has_every_section_and_nothing_external(demo):
    page = (demo / "report.html").read_text()
    parsed = Parsed()
    parsed.feed(page)
    parsed.close()
    assert parsed.h2 == SECTIONS  # no bench.extract JSON given: no throughput section
    assert "script" not in parsed.tags and "link" not in parsed.tags
    assert "http://" not in page and "https://" not in page  # ':' is not base64: no URL hides in the images
    assert all(s.startswith("data:image/png;base64,") for s in parsed.sources)
    assert len(parsed.sources) >= 6  # pretraining (2), timeline, thumbnails, probe plot, contact sheet
    for source in parsed.sources:
        Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).verify()
    for name in ("inspect.json", "probe.json", "inspect-timeline.json", "search-examples.json", "inspect.html"):
        assert (demo / name).is_file()


def test_missing_inputs_leave_their_sections_out_and_say_so(demo, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(demo, partial)
    shutil.rmtree(partial / "pretrain")
    (partial / "probe.json").write_text('{"label": "label", "rows": [')  # a stage killed while writing
    (partial / "search-examples.json").unlink()
    (partial / "search-examples.png").unlink()
    assert cli.main(["report", "--demo", str(partial)]) == 0
    page = (partial / "report.html").read_text()
    parsed = Parsed()
    parsed.feed(page)
    assert "Pretraining" not in parsed.h2 and "Search examples" not in parsed.h2
    assert "Probes" in parsed.h2 and "Could not read this section" in page
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["report", "--demo", str(empty)]) == 0
    assert "nothing to report" in (empty / "report.html").read_text()
    assert cli.main(["report", "--probe", str(tmp_path / "none.json"), "--out", str(tmp_path / "r.html")]) == 0
    assert "none.json: no such file" in (tmp_path / "r.html").read_text()
    from lvmae.store import Store

    Store.create(tmp_path / "empty-store", Store.open(demo / "store").identity)  # made, nothing extracted yet
    assert cli.main(["report", "--store", str(tmp_path / "empty-store"), "--out", str(tmp_path / "e.html")]) == 0
    page = (tmp_path / "e.html").read_text()
    assert "0 ok, 0 failed" in page and "Store" in page
    capsys.readouterr()


def test_the_report_renders_in_a_real_browser(demo, browser, tmp_path):
    shot = tmp_path / "report.png"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto((demo / "report.html").resolve().as_uri())
        assert page.title().startswith("lvmae demo")
        timeline = page.locator("h2", has_text="One held-out video's timeline")
        timeline.scroll_into_view_if_needed()
        assert timeline.is_visible()
        assert page.locator("img").first.evaluate("i => i.complete && i.naturalWidth > 0")
        page.goto((demo / "report.html").resolve().as_uri())
        page.screenshot(path=str(shot), full_page=False)
    finally:
        page.close()
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10  # not a blank page
    if os.environ.get("LVMAE_UPDATE_SCREENSHOT"):
        shutil.copy(shot, SCREENSHOT)
