"""`lvmae serve`: text-to-moment search and reconstruction inspection as a JSON API and one web page.

    GET /                         the page (package data: `lvmae/static/`)
    GET /api/info                 what is served: videos, segments, index, checkpoint, example queries
    GET /api/search?q=TEXT&k=10   moments: video id, uri, start, end, score, best caption, thumbnails
    GET /api/like?video=ID&t=S    moments like the segment of ID on screen at S seconds, itself excluded
    GET /api/video/ID[?seed=0]    the video's segments: spans, importance, truth when there is any, and with
                                  a checkpoint a seeded reconstruction's hidden segments and top captions
    GET /thumb/ID/SECONDS.jpg     a decoded frame, resized (cached)
    GET /media/ID                 the video file, with HTTP range requests (the page's <video> seeks)

`Service` holds what the answers come from, loaded once at start: the segment index and its searcher
(text tower and caption bank loaded eagerly, not on the first query), the store's manifest, the truth
file, the checkpoint. Videos are looked up by id in the manifest: no path from a request reaches the
file system, and only the files the manifest names are served. Model calls (text tower, reconstruction)
run one at a time under a lock; thumbnails and video records are cached (bounded LRU).

An ID is the manifest's `video_id`, percent-encoded in links; it may hold "/" (the routes take the rest of
the path). A query is at most `MAX_QUERY_CHARS` characters and the text tower's context in tokens; it is
tokenized outside the model lock, so a long one costs its own request, not everyone's.

`make_app` is the FastAPI app over a service. It answers only requests whose Host header is one it
serves (localhost by default, `--allow-host` for a name a proxy uses): a web page on another site
that rebinds its DNS name to this machine gets a 400, not the API. Every error is a JSON object
`{"error": message}` with a status: 400 for a bad request (empty or too long query, k or seed out of
range, a time outside the video), 404 for what
does not exist (unknown video, a path outside the manifest), 500 with the type only (the traceback goes
to the server's log) for a fault; the server keeps answering after any of them.
"""

from __future__ import annotations

import io
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from lvmae.evaluation.truth import Truth, resolve_truth
from lvmae.foundation.files import local_path
from lvmae.foundation.schema import EncoderConfig, RetrievalConfig
from lvmae.retrieval.captions import CaptionBank
from lvmae.retrieval.errors import RetrievalError
from lvmae.retrieval.search import Result, Searcher, checked_queries, moment_times, open_searcher

log = logging.getLogger(__name__)

MAX_K = 100  # moments one query may ask for
MAX_QUERY_CHARS = 500  # a query's length; byte-pair encoding time grows with the square of a long word's
MAX_SEED = 2**63 - 1  # reconstruction seeds: what a torch generator takes
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # Host headers served by default (the bound address aside)
THUMB_SIDE = 128  # px, a thumbnail's longer side
THUMB_CACHE = 4096  # thumbnails kept (a few KB each)
VIDEO_CACHE = 32  # video records kept (a reconstruction each)
EXAMPLES = 6  # example queries offered by /api/info
MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska"}


class NotFound(RetrievalError):
    """What a request names does not exist (HTTP 404)."""


class BadRequest(RetrievalError):
    """A request the service cannot answer as asked (HTTP 400)."""


class _LRU:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict[Any, Any](), threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # outside the lock: two threads may make the same value once each, never wrongly
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


@dataclass
class Service:
    """What `lvmae serve` answers from. Make one with `Service.open`."""

    searcher: Searcher
    store: Any  # store.Store
    videos: dict[str, dict[str, Any]]  # the manifest's ok videos by id: uri, duration, fps, n_segments, label
    truth: Truth | None = None
    pretrained: Any = None  # pretrain.checkpoint.Pretrained, or None: no reconstructions
    held_out: frozenset[str] = frozenset()  # videos the checkpoint never trained on
    examples: list[str] = field(default_factory=list)
    _model_lock: threading.Lock = field(default_factory=threading.Lock)
    _thumbs: _LRU = field(default_factory=lambda: _LRU(THUMB_CACHE))
    _records: _LRU = field(default_factory=lambda: _LRU(VIDEO_CACHE))

    @classmethod
    def open(
        cls,
        index_dir: str | Path,
        retrieval: RetrievalConfig,
        encoder: EncoderConfig,
        *,
        store_uri: str | None = None,
        checkpoint: str | Path | None = None,
        captions: str | Path | None = None,
        truth: str | Path | None = "auto",
        device: Any = "cpu",
    ) -> Service:
        """Load the index (refusing a stale one), its text tower and caption bank, the store's manifest,
        the truth and the checkpoint. `store_uri`, when given, must be the store the index was built from."""
        from lvmae.store import Store

        searcher = open_searcher(index_dir, retrieval, encoder, captions=captions)
        store = Store.open(searcher.index.store_uri)
        given = Store.open(store_uri).location if store_uri is not None else None
        if given is not None and (type(given.fs), given.root) != (type(store.location.fs), store.location.root):
            raise RetrievalError(
                f"--store {store_uri} is not the store index {index_dir} was built from ({store.uri}): "
                "give that store, or build an index of this one with `lvmae index`"
            )
        searcher.tower  # noqa: B018 -- load the text tower now, not on the first query
        bank = searcher.bank
        table = store.videos(status="ok").to_pydict()
        columns = ("uri", "duration", "fps", "n_segments", "label")
        videos = {v: {c: table[c][i] if c in table else None for c in columns} for i, v in enumerate(table["video_id"])}
        service = cls(
            searcher=searcher,
            store=store,
            videos=videos,
            truth=resolve_truth(truth, [v["uri"] for v in videos.values()]),
            examples=_examples(bank, searcher),
        )
        if checkpoint is not None:
            service._load_checkpoint(Path(checkpoint), device, bank)
        return service

    def _load_checkpoint(self, path: Path, device: Any, bank: CaptionBank | None) -> None:
        from lvmae.evaluation.inspection import check_inputs
        from lvmae.evaluation.reconstruction import held_out_videos
        from lvmae.pretrain.checkpoint import load_pretrained

        if bank is None:
            raise RetrievalError(
                f"--checkpoint {path}: reconstructions are shown as captions, and there is no caption bank "
                f"({self.searcher.cfg.captions}): give --captions FILE"
            )
        pretrained = load_pretrained(path, device)
        check_inputs(pretrained, self.store, bank)
        try:
            held = held_out_videos(pretrained, self.store)[0]
        except ValueError:  # the store it trained on, none held out: every video was trained on
            held = []
        self.pretrained, self.held_out = pretrained, frozenset(v.video_id for v in held)

    # --- answers ----------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        index = self.searcher.index
        return {
            "videos": len(self.videos),
            "segments": len(index),
            "index": f"{index.kind}, {len(index):,} segments of width {index.dim}",
            "store": self.store.uri,
            "checkpoint": self.pretrained.name if self.pretrained is not None else None,
            "truth": self.truth.source if self.truth is not None else None,
            "examples": self.examples,
            "max_k": MAX_K,
        }

    def search(self, q: str, k: int = 10) -> dict[str, Any]:
        k = _check_k(k)
        (query,) = checked_queries([q])
        tower = self.searcher.tower
        if len(query) > MAX_QUERY_CHARS:
            raise BadRequest(f"a query of {len(query):,} characters: at most {MAX_QUERY_CHARS}")
        tokens = tower.token_count(query)
        if tokens is not None and tower.context_length is not None and tokens > tower.context_length:
            raise BadRequest(
                f"a query of {tokens} tokens: the text encoder reads at most {tower.context_length}; shorten it"
            )
        ids = tower.tokenize([query])  # outside the lock: the CPU time of a long query is its own
        with self._model_lock:
            results = self.searcher.answer([query], tower.encode_tokens(ids), k=k)[0]
        return {"query": query, "k": k, "moments": [self.moment(r) for r in results]}

    def like(self, video_id: str, seconds: float, k: int = 10) -> dict[str, Any]:
        k = _check_k(k)
        self.video_entry(video_id)
        if not math.isfinite(seconds) or seconds < 0:
            raise BadRequest(f"t={seconds}: a time in seconds, 0 or more")
        with self._model_lock:
            results = self.searcher.like(video_id, seconds, k=k)
        return {
            "query": results[0].query if results else f"like {video_id}",
            "k": k,
            "moments": [self.moment(r) for r in results],
        }

    def moment(self, result: Result) -> dict[str, Any]:
        """A search result as the API gives it: `lvmae search --json`'s object, with the page's links."""
        out = result.to_json()
        out["thumbnails"] = [
            {"t": round(t, 1), "url": thumb_url(result.moment.video_id, t)} for t in moment_times(result.moment)
        ]
        out["thumbnail"] = out["thumbnails"][0]["url"]
        out["media"] = media_url(result.moment.video_id)
        return out

    def video_entry(self, video_id: str) -> dict[str, Any]:
        entry = self.videos.get(video_id)
        if entry is None:
            raise NotFound(f"no video {video_id!r} in store {self.store.uri} ({len(self.videos)} videos)")
        return entry

    def video(self, video_id: str, seed: int = 0) -> dict[str, Any]:
        """The video's segments; with a checkpoint, a reconstruction under the seeded random mask."""
        if not 0 <= int(seed) <= MAX_SEED:
            raise BadRequest(f"seed={seed}: 0 to {MAX_SEED}")
        entry = self.video_entry(video_id)
        return self._records.get((video_id, int(seed)), lambda: self._video_record(video_id, entry, int(seed)))

    def _video_record(self, video_id: str, entry: dict[str, Any], seed: int) -> dict[str, Any]:
        from lvmae.pretrain.data import Video

        truth = self.truth if self.truth is not None and not self.truth.missing([video_id]) else None
        base = {
            "video_id": video_id,
            "uri": entry["uri"],
            "media": media_url(video_id),
            "duration": entry["duration"],
            "label": entry["label"],
        }
        if self.pretrained is None:
            return {**base, **self._plain_record(video_id, truth)}
        from lvmae.evaluation.inspection import inspect_reconstructions
        from lvmae.timeline import timeline_record

        bank = self.searcher.bank
        assert bank is not None  # _load_checkpoint refuses a checkpoint without a bank
        with self._model_lock:
            inspection = inspect_reconstructions(
                self.pretrained,
                self.store,
                bank,
                [Video(video_id, int(entry["n_segments"]))],
                truth=truth,
                decoders=("trained", "all"),
                seed=seed,
            )
        record = timeline_record(inspection, video_id)
        record["held_out"] = video_id in self.held_out
        return {**record, **base}

    def _plain_record(self, video_id: str, truth: Truth | None) -> dict[str, Any]:
        """Spans, importance and truth, when there is no checkpoint to reconstruct with."""
        from lvmae.evaluation.inspection import step_starts

        arrays = ("span", "importance") if self.store.identity.has_tokenizer else ("span",)
        seq = self.store.sequence(video_id, arrays=arrays)
        span = seq.get("span").astype(np.float64)
        importance = seq.get("importance").astype(np.float64) if "importance" in arrays else np.zeros(len(span))
        captions, step = (
            truth.labels(video_id, span) if truth is not None else ([None] * len(span), np.full(len(span), -1))
        )
        boundary = step_starts(step)  # as inspection marks them: never the first segment
        segments = [
            {
                "start": float(span[t, 0]),
                "end": float(span[t, 1]),
                "importance": float(importance[t]),
                "hidden": False,
                "truth": captions[t],
                "step": int(step[t]),
                "boundary": bool(boundary[t]),
                "long_gap": False,
                "decoders": {},
            }
            for t in range(len(span))
        ]
        return {
            "segments": segments,
            "decoders": [],
            "truth": truth.source if truth is not None else None,
            "checkpoint": None,
        }

    def thumbnail(self, video_id: str, seconds: float) -> bytes:
        """A JPEG of the frame on screen at `seconds` (to 0.1 s), its longer side THUMB_SIDE."""
        entry = self.video_entry(video_id)
        duration = float(entry["duration"] or 0.0)
        if not math.isfinite(seconds) or not 0 <= seconds <= duration + 1.0:
            raise BadRequest(f"{seconds:g} s is outside video {video_id!r} (0–{duration:g} s)")
        return self._thumbs.get((video_id, round(seconds, 1)), lambda: _jpeg(entry["uri"], round(seconds, 1)))

    def media(self, video_id: str) -> tuple[Path, str]:
        """The local file of a video the manifest names, and its media type."""
        uri = str(self.video_entry(video_id)["uri"])
        path = local_path(uri)
        if path is None:
            raise NotFound(f"video {video_id!r} is at {uri}, not a local file: this server plays local files only")
        if not path.is_file():
            raise NotFound(f"video {video_id!r}: its file {path} is gone")
        return path, MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


def media_url(video_id: str) -> str:
    return f"/media/{quote(video_id, safe='')}"


def thumb_url(video_id: str, seconds: float) -> str:
    return f"/thumb/{quote(video_id, safe='')}/{round(seconds, 1):.1f}.jpg"


def _check_k(k: int) -> int:
    if not 1 <= int(k) <= MAX_K:
        raise BadRequest(f"k={k}: ask for 1 to {MAX_K} moments")
    return int(k)


def _jpeg(uri: str, seconds: float) -> bytes:
    from PIL import Image

    from lvmae.retrieval.sheet import thumbnails

    frame = thumbnails(uri, [seconds], side=THUMB_SIDE)[0]
    if isinstance(frame, str):
        raise NotFound(f"no frame at {seconds:g} s of {uri}: {frame}")
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _examples(bank: CaptionBank | None, searcher: Searcher) -> list[str]:
    """Captions worth typing: the bank's captions nearest to the most indexed segments (ties by text)."""
    if bank is None or not len(searcher.index):
        return []
    index = searcher.index
    step = max(1, len(index) // 2000)  # a sample of at most ~2,000 segments
    tops = bank.best(index.vectors(np.arange(0, len(index), step)), 1)[1][:, 0]
    counts = np.bincount(tops, minlength=len(bank))
    order = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], bank.texts[i]))
    return [bank.texts[i] for i in order[:EXAMPLES]]


# --- the app ------------------------------------------------------------------------------------------


def make_app(service: Service, *, hosts: Sequence[str] = LOCAL_HOSTS):
    """The FastAPI app answering from `service`, to requests whose Host header names one of `hosts`
    (without the port; IPv6 addresses in brackets; "*" for any)."""
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from lvmae.assets import ASSETS, asset

    app = FastAPI(title="lvmae", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))
    app.state.service = service  # what it answers from (`lvmae serve` prints its summary)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RetrievalError)
    async def retrieval_error(request: Request, exc: RetrievalError) -> JSONResponse:
        return error(404 if isinstance(exc, NotFound) else 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors())
        return error(400, problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def fault(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error(500, f"internal error ({type(exc).__name__}); the server's log has the details")

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(asset("index.html"))

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in ASSETS:
            raise NotFound(f"no static file {name!r}")
        return Response(asset(name), media_type=ASSETS[name])

    @app.get("/api/info")
    def info() -> dict:
        return service.info()

    @app.get("/api/search")
    def search(q: str = Query(..., description="what to look for"), k: int = 10) -> dict:
        return service.search(q, k)

    @app.get("/api/like")
    def like(video: str, t: float, k: int = 10) -> dict:
        return service.like(video, t, k)

    @app.get("/api/video/{video_id:path}")
    def video(video_id: str, seed: int = 0) -> dict:
        return service.video(video_id, seed)

    @app.get("/thumb/{video_id:path}/{name}")
    def thumb(video_id: str, name: str) -> Response:
        seconds = _seconds_of(name)
        return Response(
            service.thumbnail(video_id, seconds), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"}
        )

    @app.get("/media/{video_id:path}")
    def media(video_id: str) -> FileResponse:
        path, media_type = service.media(video_id)
        return FileResponse(path, media_type=media_type)  # answers Range requests (206) itself

    return app


def _seconds_of(name: str) -> float:
    """'12.5.jpg' -> 12.5."""
    stem, dot, ext = name.rpartition(".")
    try:
        seconds = float(stem) if dot and ext == "jpg" else math.nan
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise NotFound(f"no thumbnail {name!r}: thumbnails are named SECONDS.jpg, e.g. 12.5.jpg")
    return seconds


class Server:
    """A uvicorn server of `app` on a socket bound here, so port 0 gets a free port known before it
    starts (`url`). `run()` serves until interrupted; `start()` serves on a thread until `stop()`
    (benchmarks and browser tests)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8000):
        import socket

        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on sockets that say so, and without
        # it every response waits ~40 ms for the client's delayed ACK (Nagle)
        self.socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError as exc:
            self.socket.close()
            raise RetrievalError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.host, self.port = host, self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{'[' + self.host + ']' if ':' in self.host else self.host}:{self.port}"

    def run(self) -> None:
        self.server.run(sockets=[self.socket])

    def wait(self) -> None:
        """Until the server started by `start()` stops; Ctrl-C (KeyboardInterrupt) reaches the caller,
        since the server's thread installs no signal handlers."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def start(self, timeout: float = 30.0) -> Server:
        import time

        self._thread = threading.Thread(target=self.run, name="lvmae-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RetrievalError(f"the server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()
