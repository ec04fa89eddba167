"""`lvmae serve` over the tiny demo: the JSON API through FastAPI's test client, then the page in a real
headless browser (Debian's chromium) against a live server on a free localhost port."""

import io
import json
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from lvmae import cli
from lvmae.api import create_app
from lvmae.foundation.schema import load_config
from lvmae.store import Store
from lvmae.web import MAX_K, MAX_QUERY_CHARS, THUMB_SIDE, Server, make_app
from tests.integration.conftest import ARTIFACTS, REBOUND

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

    with TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as c:
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

    app = create_app(cfg, index=demo / "index", captions=demo / "toyworld" / "captions.txt")
    with TestClient(app, base_url="http://localhost") as c:
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
        ("/api/video/VIDEO", {"seed": -1}),
        ("/api/video/VIDEO", {"seed": 2**63}),
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
        m.setattr(service.searcher, "answer", broken)
        answer = client.get("/api/search", params={"q": caption})
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error (RuntimeError); the server's log has the details"}
    assert client.get("/api/search", params={"q": caption, "k": 1}).status_code == 200


def test_only_the_hosts_it_serves_get_answers(app, client, caption):
    """DNS rebinding: a page on another site whose name now points here sends its own Host."""
    from fastapi.testclient import TestClient

    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example"):
        answer = client.get("/api/info", headers={"host": host})
        assert answer.status_code == 400, host
        assert "video" not in answer.text and "store" not in answer.text
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/api/info", headers={"host": host}).status_code == 200, host
    proxied = make_app(app.state.service, hosts=["videos.example"])
    with TestClient(proxied, base_url="http://videos.example") as c:
        assert c.get("/api/search", params={"q": caption, "k": 1}).status_code == 200
        assert c.get("/api/info", headers={"host": "localhost"}).status_code == 400


def test_a_long_query_is_refused_naming_the_limit(client, caption):
    long_word = client.get("/api/search", params={"q": "x" * (MAX_QUERY_CHARS + 1)})
    assert long_word.status_code == 400 and f"at most {MAX_QUERY_CHARS}" in long_word.json()["error"]
    many_words = client.get("/api/search", params={"q": " ".join([caption] * 6)})
    assert many_words.status_code == 400 and "tokens" in many_words.json()["error"]
    assert client.get("/api/search", params={"q": caption, "k": 1}).status_code == 200


def test_a_query_being_tokenized_holds_no_other_query_up(service, caption, monkeypatch):
    """Tokenizing runs outside the model lock: one query stuck in it (forced here) and another still answers."""
    tower = service.searcher.tower
    slow_query = "a slow query"
    entered, release = threading.Event(), threading.Event()
    tokenize = tower.tokenize

    def stuck(texts):
        if list(texts) == [slow_query]:
            entered.set()
            assert release.wait(30)
        return tokenize(texts)

    monkeypatch.setattr(tower, "tokenize", stuck)
    slow = threading.Thread(target=service.search, args=(slow_query,))
    slow.start()
    assert entered.wait(30)
    answers = []
    other = threading.Thread(target=lambda: answers.append(service.search(caption, 1)))
    other.start()
    other.join(timeout=30)
    finished = not other.is_alive()
    release.set()
    slow.join(timeout=30)
    other.join(timeout=30)
    assert finished and answers[0]["moments"], "a query waited for another one's tokenizing"


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
        # Before any click, every card's player shows its moment, not the video's first frame.
        page.wait_for_function(
            "() => [...document.querySelectorAll('.card')].every(c => { const v = c.querySelector('video');"
            " return v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - Number(c.dataset.start)) < 1.0; })"
        )

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


@pytest.fixture(scope="module")
def slashed(tmp_path_factory, toy_corpus, tiny_tokenizer):
    """A store whose video ids hold "/" (an input table's `id` may), indexed, and its app."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lvmae.retrieval.index import SegmentIndex
    from tests.integration.conftest import extract_with, make_config

    tmp = tmp_path_factory.mktemp("slashed")
    listed = pq.read_table(toy_corpus.root / "videos.parquet")["uri"].to_pylist()
    uris = [str((toy_corpus.root / uri).resolve()) for uri in listed]  # the table's are relative to its folder
    ids = [f"camera {i}/take/{i}" for i in range(len(uris))]
    pq.write_table(pa.table({"uri": uris, "id": ids}), tmp / "inputs.parquet")
    cfg = make_config(tmp, tiny_tokenizer, **{"extract.runner": "local", "retrieval.index_dir": tmp / "index"})
    assert extract_with(cfg, inputs=tmp / "inputs.parquet").videos_ok == len(ids)
    SegmentIndex.build(Store.open(str(cfg.paths.store)), cfg.retrieval, progress=False).save(tmp / "index")
    return ids, create_app(cfg, captions=toy_corpus.root / "captions.txt")


def test_ids_holding_a_slash_open_through_every_route(slashed):
    from fastapi.testclient import TestClient

    from lvmae.web import media_url, thumb_url

    ids, app = slashed
    with TestClient(app, base_url="http://localhost") as c:
        for video_id in ids:
            record = c.get(f"/api/video/{quote(video_id, safe='')}")
            assert record.status_code == 200 and record.json()["video_id"] == video_id
            thumb = c.get(thumb_url(video_id, 1.0))
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            media = c.get(media_url(video_id), headers={"range": "bytes=0-99"})
            assert media.status_code == 206 and len(media.content) == 100
        moment = c.get("/api/search", params={"q": "a red circle", "k": 1}).json()["moments"][0]
        assert c.get(moment["thumbnail"]).status_code == 200 and c.get(moment["media"]).status_code == 200
        assert c.get(f"/api/video/{quote(ids[0], safe='')}x").status_code == 404


def test_serve_prints_its_address_once_it_listens_and_stops_quietly_on_ctrl_c(demo, demo_overrides, tmp_path):
    import signal
    import socket
    import subprocess
    import sys

    argv = [sys.executable, "-m", "lvmae", "serve", "--demo", str(demo), "--port", "0"]
    for override in demo_overrides:
        argv += ["--set", override]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        url = None
        for line in server.stdout:  # the summary; its "open" line names the address
            if line.strip().startswith("open"):
                url = line.split()[1].rstrip("/")
                break
        assert url is not None, server.stderr.read()
        host, port = url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as connection:  # listening already
            connection.sendall(f"GET /api/info HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            assert connection.recv(64).startswith(b"HTTP/1.1 200")
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=30)
    assert server.returncode == 0
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "stopped" in err


@pytest.fixture(scope="module")
def slashed_live(slashed):
    server = Server(slashed[1], "127.0.0.1", 0).start()
    yield server
    server.stop()


def test_in_the_browser_a_slashed_id_opens_and_a_rebound_name_gets_nothing(slashed, slashed_live, browser):
    """The page in chromium: a video whose id holds "/" opens in the video view; the same server reached
    by another name (DNS rebinding, simulated by chromium's resolver rules) answers 400 and no data."""
    ids, _ = slashed
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{slashed_live.url}/#video={quote(ids[1], safe='')}&t=0")
        page.wait_for_function("() => ['muted', 'error'].includes(document.querySelector('#video-facts').className)")
        assert page.locator("#video-facts").get_attribute("class") == "muted", page.locator("#video-facts").inner_text()
        assert "segments" in page.locator("#video-facts").inner_text() and page.locator("#timeline .lane").count() >= 2
        assert page.locator("#video-title").inner_text() == ids[1]
        page.goto(f"{slashed_live.url}/#q={quote('a red circle')}&k=3")
        page.wait_for_selector(".card")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert not errors, errors

        rebound = f"http://{REBOUND}:{slashed_live.port}"
        for path in ("/", "/api/info", f"/media/{quote(ids[0], safe='')}"):
            answer = page.goto(rebound + path)
            assert answer is not None and answer.status == 400, path
            assert ids[0] not in page.content() and "store" not in page.content()
    finally:
        page.close()
