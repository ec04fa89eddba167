"""`lvmae serve` latency: warm `/api/search` over HTTP on localhost, one client, then 8 at once.

    python -m bench.serve [--quick] [--out FILE] [--demo DIR]

The server is `lvmae serve --demo DIR` (default `runs/demo`, what `make demo` made: its index, store,
checkpoint and caption bank) in a child process on a free localhost port, so the clients here do not
share its interpreter. `--quick` (for `make bench`) serves a fresh toy-world corpus of 4 short videos
instead (extracted and indexed here, no checkpoint) and shortens every loop.

The clients are the standard library's `http.client`, one persistent connection each, as a browser
keeps one.

The queries are the caption bank's texts, distinct, in a seeded order (so no answer is a repeat of an
earlier one); 10 are asked first to warm the server.

- `search_median_ms`, `search_p99_ms`: one client, `queries` (200) queries one after another, each the
  wall time of the whole HTTP request (encode the text, search, merge into moments, caption them);
  `target_median_ms` (50) and `meets_target`.
- `concurrent_*`: `clients` (8) clients, each with its own connection, asking queries back to back for
  `concurrent_s` (20) seconds: requests, errors (any status but 200, or a failed connection), requests
  per second, median and p99 latency.
"""

from __future__ import annotations

import http.client
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from bench._common import emit, machine, parse_args, toy_index

TARGET_MEDIAN_MS = 50.0
WARMUP = 10


class Client:
    """GET over one persistent HTTP/1.1 connection to localhost."""

    def __init__(self, url: str, timeout: float = 30.0):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def get(self, path: str, **params: object) -> tuple[int, bytes]:
        self.connection.request("GET", path + ("?" + urlencode(params) if params else ""))
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.connection.close()


def _start(command: list[str], timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start `lvmae serve` and return (process, base url) once it answers."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, deadline, seen = None, time.monotonic() + timeout, []
    assert proc.stdout is not None
    while url is None:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("lvmae serve did not start:\n" + "".join(seen[-20:]))
        seen.append(line)
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        url = found.group(1) if found else None
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its output
    while True:
        try:
            client = Client(url, timeout=5)
            status = client.get("/api/info")[0]
            client.close()
            if status == 200:
                return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"lvmae serve at {url} does not answer")
        time.sleep(0.1)


def percentile(ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(ms), q)) if ms else float("nan")


def one_client(url: str, queries: list[str], k: int) -> list[float]:
    times = []
    client = Client(url)
    try:
        for q in queries:
            started = time.perf_counter()
            status, body = client.get("/api/search", q=q, k=k)
            times.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise SystemExit(f"/api/search?q={q!r}: HTTP {status} {body[:200]!r}")
    finally:
        client.close()
    return times


def concurrent(url: str, queries: list[str], k: int, clients: int, seconds: float) -> dict:
    times: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.perf_counter() + seconds

    def run(i: int) -> None:
        rng = np.random.default_rng(i)
        client = Client(url)
        while time.perf_counter() < stop:
            q = queries[int(rng.integers(len(queries)))]
            started = time.perf_counter()
            try:
                ok = client.get("/api/search", q=q, k=k)[0] == 200
            except (OSError, http.client.HTTPException):
                ok = False
                client.close()
                client = Client(url)  # a broken connection: the next request gets a new one
            times[i].append((time.perf_counter() - started) * 1000)
            errors[i] += not ok
        client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    every = [ms for per in times for ms in per]
    return {
        "concurrent_clients": clients,
        "concurrent_s": round(wall, 1),
        "concurrent_requests": len(every),
        "concurrent_errors": sum(errors),
        "concurrent_rps": round(len(every) / wall, 1),
        "concurrent_median_ms": round(percentile(every, 50), 1),
        "concurrent_p99_ms": round(percentile(every, 99), 1),
    }


def measure(command: list[str], captions: list[str], *, queries: int, clients: int, seconds: float, k: int) -> dict:
    order = [captions[i] for i in np.random.default_rng(0).permutation(len(captions))]
    asked = (order * (1 + (queries + WARMUP) // max(len(order), 1)))[: queries + WARMUP]
    proc, url = _start(command)
    try:
        one_client(url, asked[:WARMUP], k)
        times = one_client(url, asked[WARMUP:], k)
        print(
            f"one client, {len(times)} queries: median {statistics.median(times):.1f} ms, p99 {percentile(times, 99):.1f} ms",
            flush=True,
        )
        crowd = concurrent(url, order, k, clients, seconds)
        print(
            f"{clients} clients for {crowd['concurrent_s']} s: {crowd['concurrent_requests']} requests, "
            f"{crowd['concurrent_errors']} errors, p99 {crowd['concurrent_p99_ms']} ms",
            flush=True,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    median = statistics.median(times)
    return {
        "search_median_ms": round(median, 1),
        "search_p99_ms": round(percentile(times, 99), 1),
        "queries": len(times),
        "k": k,
        "target_median_ms": TARGET_MEDIAN_MS,
        "meets_target": median <= TARGET_MEDIAN_MS,
        **crowd,
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(
        __doc__.split("\n\n")[0],
        argv,
        extra=lambda p: p.add_argument(
            "--demo",
            metavar="DIR",
            type=Path,
            default=Path("runs/demo"),
            help="the demo run to serve (default runs/demo)",
        ),
    )
    serve = [sys.executable, "-m", "lvmae", "serve", "--host", "127.0.0.1", "--port", "0"]
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            from lvmae.toyworld.generate import CorpusSpec

            corpus, _ = toy_index(CorpusSpec(videos=4, minutes=(0.3, 0.5), seed=7), Path(tmp))
            captions_file = corpus.root / "captions.txt"
            command = serve + ["--index", str(Path(tmp) / "index"), "--captions", str(captions_file)]
            served = f"a toy world of 4 videos ({tmp})"
        else:
            from lvmae.demo import DemoLayout

            demo = DemoLayout(args.demo)
            if not (demo.index / "index.json").is_file():
                raise SystemExit(f"--demo {args.demo}: no index there; run `make demo` (or lvmae demo --out DIR) first")
            captions_file = demo.captions
            command = serve + ["--demo", str(args.demo)]
            served = str(args.demo)
        captions = [line.strip() for line in captions_file.read_text().splitlines() if line.strip()]
        print(f"serving {served}; {len(captions)} distinct captions as queries", flush=True)
        result = measure(
            command,
            captions,
            queries=50 if args.quick else 200,
            clients=8,
            seconds=3.0 if args.quick else 20.0,
            k=10,
        )
    result.update({"served": served, "quick": args.quick, **machine()})
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
