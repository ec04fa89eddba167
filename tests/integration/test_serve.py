"""`lvmae serve` over the tiny demo: the JSON API through FastAPI's test client, then the page in a real
headless browser (Debian's chromium) against a live server on a free localhost port."""

import io
import json
import os
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from lvmae import cli
from lvmae.api import create_app
from lvmae.foundation.schema import load_config
from lvmae.store import Store
from lvmae.web import MAX_K, THUMB_SIDE, Server, make_app
from tests.integration.conftest import ARTIFACTS

SCREENSHOT = Path(__file__).parent / "serve.png"  # the README's picture; LVMAE_UPDATE_SCREENSHOT=1 rewrites it


@pytest.fixture(scope="module")
def cfg(demo_overrides):
    return load_config(None, demo_overrides, use_default_file=False)


@pytest.fixture(scope="module")
def app(demo, cfg):
    return create_app(cfg, demo=demo)


@pytest.fixture(scope="module")
def service(app):
    return app.state.service


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def caption(demo):
    """A caption shown in the demo corpus: the first truth step's."""
    import pyarrow.parquet as pq

    return pq.read_table(demo / "toyworld" / "truth.parquet").column("caption")[0].as_py()


def test_search_answers_what_lvmae_search_json_prints(demo, client, caption, demo_overrides, capsys):
    argv = ["search", caption, "-k", "5", "--json", "--index", str(demo / "index")]
    argv += ["--captions", str(demo / "toyworld" / "captions.txt")]
    for override in demo_overrides:
        argv += ["--set", override]
    capsys.readouterr()
    assert cli.main(argv) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    answer = client.get("/api/search", params={"q": caption, "k": 5})
    assert answer.status_code == 200
    moments = answer.json()["moments"]
    assert printed and [{k: m[k] for k in printed[0]} for m in moments] == printed
    for m in moments:
        assert m["media"] == f"/media/{m['video_id']}" and len(m["thumbnails"]) == 3
        assert m["thumbnail"] == m["thumbnails"][0]["url"]
    assert moments[0]["caption"] == caption


def test_like_finds_other_moments_and_excludes_itself(client, service):
    video = sorted(service.videos)[0]
    answer = client.get("/api/like", params={"video": video, "t": 3, "k": 4})
    assert answer.status_code == 200
    moments = answer.json()["moments"]
    assert moments and not any(m["video_id"] == video and m["start"] <= 3 < m["end"] for m in moments)


def test_a_video_shows_its_segments_truth_and_a_seeded_reconstruction(client, service, demo):
    video = sorted(service.videos)[0]
    record = client.get(f"/api/video/{video}").json()
    n = Store.open(demo / "store").videos().to_pandas().set_index("video_id").loc[video, "n_segments"]
    segments = record["segments"]
    assert len(segments) == n and record["decoders"] == ["trained", "all"]
    assert all(s["truth"] for s in segments) and record["truth"].endswith("truth.parquet")
    hidden = [s for s in segments if s["hidden"]]
    assert 0 < len(hidden) < n
    assert all(len(s["decoders"]["all"]) == 3 for s in hidden)  # decoder all answers every hidden segment
    assert {s["start"] for s in segments if "trained" in s["decoders"]} <= {s["start"] for s in hidden}
    again = client.get(f"/api/video/{video}", params={"seed": 0}).json()
    other = client.get(f"/api/video/{video}", params={"seed": 1}).json()
    assert [s["hidden"] for s in again["segments"]] == [s["hidden"] for s in segments]
    assert [s["hidden"] for s in other["segments"]] != [s["hidden"] for s in segments]


def test_without_a_checkpoint_the_video_view_has_no_reconstruction(demo, cfg):
    from fastapi.testclient import TestClient

    with TestClient(create_app(cfg, index=demo / "index", captions=demo / "toyworld" / "captions.txt")) as c:
        info = c.get("/api/info").json()
        assert info["checkpoint"] is None and info["examples"]
        assert c.get("/api/video/nope").status_code == 404
        first = c.get("/api/search", params={"q": "anything at all", "k": 1}).json()["moments"][0]["video_id"]
        record = c.get(f"/api/video/{first}").json()
        assert record["decoders"] == [] and not any(s["hidden"] for s in record["segments"])
        assert all(s["truth"] for s in record["segments"])


def test_thumbnails_are_decoded_resized_frames_and_cached(client, service):
    video = sorted(service.videos)[0]
    first = client.get(f"/thumb/{video}/2.5.jpg")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(first.content))
    assert max(image.size) == THUMB_SIDE and np.asarray(image).std() > 0
    assert client.get(f"/thumb/{video}/2.5.jpg").content == first.content
    assert client.get(f"/thumb/{video}/99999.0.jpg").status_code == 400  # past the video's end
    assert client.get(f"/thumb/{video}/later.jpg").status_code == 404


def test_media_answers_range_requests_with_the_right_bytes(client, service):
    video = sorted(service.videos)[0]
    data = Path(service.videos[video]["uri"]).read_bytes()
    whole = client.get(f"/media/{video}")
    assert whole.status_code == 200 and whole.content == data and whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/media/{video}", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    tail = client.get(f"/media/{video}", headers={"Range": "bytes=-64"})
    assert tail.status_code == 206 and tail.content == data[-64:]
    assert client.get(f"/media/{video}", headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416


@pytest.mark.parametrize(
    "path",
    [
        "/media/nope",
        "/media/..%2F..%2F..%2Fetc%2Fpasswd",
        "/media/%2Fetc%2Fpasswd",
        "/media/../../etc/passwd",
        "/thumb/..%2Fstore/1.0.jpg",
        "/thumb/nope/1.0.jpg",
        "/api/video/nope",
        "/api/video/..%2F..%2Fetc%2Fpasswd",
        "/static/..%2Fserve.py",
        "/static/serve.py",
        "/no/such/page",
    ],
)
def test_unknown_videos_and_paths_outside_the_manifest_get_404(client, path):
    answer = client.get(path)
    assert answer.status_code == 404 and "error" in answer.json()


def test_a_video_file_path_is_not_a_video_id(client, service):
    uri = service.videos[sorted(service.videos)[0]]["uri"]
    assert client.get(f"/media/{quote(uri, safe='')}").status_code == 404


@pytest.mark.parametrize(
    "path,params",
    [
        ("/api/search", {"q": "   "}),
        ("/api/search", {}),
        ("/api/search", {"q": "a circle", "k": 0}),
        ("/api/search", {"q": "a circle", "k": MAX_K + 1}),
        ("/api/search", {"q": "a circle", "k": "ten"}),
        ("/api/like", {"video": "VIDEO", "t": -1}),
        ("/api/like", {"video": "VIDEO", "t": 99999}),
        ("/api/like", {"video": "VIDEO"}),
        ("/api/video/VIDEO", {"seed": "x"}),
    ],
)
def test_bad_requests_get_a_json_error_and_the_server_keeps_answering(client, service, path, params, caption):
    video = sorted(service.videos)[0]
    path = path.replace("VIDEO", video)
    answer = client.get(path, params={k: video if v == "VIDEO" else v for k, v in params.items()})
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"} and "Traceback" not in answer.text
    assert client.get("/api/search", params={"q": caption, "k": 1}).status_code == 200


def test_a_fault_is_a_500_without_a_traceback_and_the_next_request_works(client, service, caption, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire at /secret/path")

    with monkeypatch.context() as m:
        m.setattr(service.searcher, "text", broken)
        answer = client.get("/api/search", params={"q": caption})
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error (RuntimeError); the server's log has the details"}
    assert client.get("/api/search", params={"q": caption, "k": 1}).status_code == 200


def test_the_command_refuses_what_it_cannot_serve(tmp_path, demo, capsys):
    assert cli.main(["serve", "--demo", str(tmp_path)]) == 1
    assert "no index there" in capsys.readouterr().err
    assert cli.main(["serve", "--demo", str(demo), "--index", str(demo / "index")]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli.main(["serve", "--demo", str(demo), "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err


# --- the page in a real browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(service):
    server = Server(make_app(service), "127.0.0.1", 0).start()
    yield server.url
    server.stop()


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"serve-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    assert pixels.std() > 10, f"{path} is blank"
    return path


def test_the_page_searches_plays_the_moment_and_opens_the_timeline(live, browser, caption):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(live + "/")
        page.fill("#q", caption)
        page.press("#q", "Enter")
        page.wait_for_selector(".card")
        cards = page.locator(".card")
        assert cards.count() >= 1
        assert caption in cards.first.locator(".caption").inner_text()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        _shot(page, "search")

        # the card whose moment starts latest: playing it from its start is then not playing from 0
        starts = [float(s) for s in cards.evaluate_all("cs => cs.map(c => c.dataset.start)")]
        pick = int(np.argmax(starts))
        assert starts[pick] > 0
        cards.nth(pick).locator(".when").click()
        page.wait_for_function(
            "([i, s]) => { const v = document.querySelectorAll('.card video')[i];"
            " return v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - s) < 1.0; }",
            arg=[pick, starts[pick]],
        )
        _shot(page, "playing")

        cards.nth(pick).locator("a.open-video").click()
        page.wait_for_selector("#timeline .lane.decoder .seg")
        lanes = page.locator("#timeline .lane .name").all_inner_texts()
        assert lanes[:3] == ["truth", "importance", "hidden"] and "decoder all" in lanes
        assert page.locator("#hidden-table tr.seekable").count() > 0
        segment = page.locator("#timeline .lane.decoder .seg").nth(3)
        at = float(segment.get_attribute("data-start"))
        segment.click()
        page.wait_for_function(
            "(s) => { const v = document.querySelector('#player');"
            " return v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - s) < 1.0; }",
            arg=at,
        )
        page.evaluate("window.scrollTo(0, 0)")
        video = _shot(page, "video")
        assert not errors, errors
    finally:
        page.close()
    if os.environ.get("LVMAE_UPDATE_SCREENSHOT"):
        shutil.copy(video, SCREENSHOT)
