"""What one input may cost (`DecodeLimits`): which inputs open, timeouts, the wall-time budget, frame
limits, and whether each failure is transient (retry may help) or permanent."""

import os
import socket
import threading
import time

import numpy as np
import pytest

from lvmae.extract.decode import DecodeLimits, VideoError, iter_frames, probe
from lvmae.extract.segments import iter_segments
from lvmae.foundation.schema import ExtractConfig, SegmentConfig
from tests.videos import numbered, write_frames

SEG = SegmentConfig(seconds=2.0, clip_frames=4, tok_frames=5, tok_fps=8.0, tok_size=16)


class QuietServer:
    """A TCP server on 127.0.0.1 that accepts connections and then says nothing, or sends `reply` (the
    start of an HTTP answer) and stalls. It serves from a thread and closes itself after `lifetime` s."""

    def __init__(self, reply: bytes = b"", lifetime: float = 20.0):
        self.reply, self.lifetime = reply, lifetime
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def _serve(self) -> None:
        conns = []
        deadline = time.monotonic() + self.lifetime
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    continue
                self.accepted += 1
                conns.append(conn)
                if self.reply:
                    try:
                        conn.settimeout(2.0)
                        conn.recv(65536)  # the request
                        conn.sendall(self.reply)
                    except OSError:
                        pass
        finally:
            for conn in conns:
                conn.close()
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def net(**kw) -> DecodeLimits:
    return DecodeLimits(schemes=("http",), open_timeout_s=1.0, read_timeout_s=1.0, **kw)


def test_a_server_that_never_answers_is_a_transient_failure_within_the_timeout():
    with QuietServer() as server:
        t = time.monotonic()
        with pytest.raises(VideoError, match="open_timeout_s") as err:
            list(iter_segments(server.url("v.mp4"), SEG, 32, limits=net()))
        assert time.monotonic() - t < 1.0 + 3.0
        assert err.value.transient and server.accepted >= 1


def test_a_stream_that_stalls_while_reading_is_a_transient_failure(tmp_path):
    write_frames(tmp_path / "v.mkv", numbered(80), keyframe_every=8)
    data = (tmp_path / "v.mkv").read_bytes()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-matroska\r\nContent-Length: %d\r\n\r\n" % len(data)
    with QuietServer(head + data[: len(data) // 2]) as server:
        t = time.monotonic()
        with pytest.raises(VideoError, match="read_timeout_s") as err:
            list(iter_segments(server.url("v.mkv"), SEG, 32, limits=net()))
        assert time.monotonic() - t < 1.0 + 4.0
        assert err.value.transient


def test_schemes_not_accepted_are_refused_before_connecting():
    with QuietServer() as server:
        with pytest.raises(VideoError, match="extract.schemes") as err:
            list(iter_segments(server.url("v.mp4"), SEG, 32, limits=DecodeLimits(open_timeout_s=1.0)))
        assert not err.value.transient and server.accepted == 0
        with pytest.raises(VideoError, match="'ftp'.*extract.schemes"):
            probe("ftp://127.0.0.1/v.mp4", limits=net())


def test_a_connection_refused_is_transient():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed on leaving: nothing listens there any more
    with pytest.raises(VideoError) as err:
        probe(f"http://127.0.0.1:{port}/v.mp4", limits=net())
    assert err.value.transient


def test_a_fifo_is_refused_at_once_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    caught = []

    def read():
        try:
            list(iter_segments(fifo, SEG, 32))
        except VideoError as exc:
            caught.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # it blocked in open(): unblock it before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not worker.is_alive()
    assert len(caught) == 1 and "pipe.mp4: is a FIFO, not a regular file" in str(caught[0])
    assert not caught[0].transient


def test_a_folder_is_permanent_and_a_missing_file_is_transient(tmp_path):
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(VideoError, match="is a folder, not a regular file") as err:
        probe(tmp_path / "dir.mp4")
    assert not err.value.transient
    with pytest.raises(VideoError, match="missing.mp4") as err:
        list(iter_segments(tmp_path / "missing.mp4", SEG, 32))
    assert err.value.transient


def test_file_uris_are_local_files(tmp_path):
    write_frames(tmp_path / "a b.mp4", numbered(20))
    uri = (tmp_path / "a b.mp4").as_uri()  # file:///.../a%20b.mp4
    assert probe(uri).duration == pytest.approx(2.5)
    assert len(list(iter_frames(uri))) == 20


def test_corrupt_data_is_permanent(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(1).bytes(4000))
    with pytest.raises(VideoError, match="bad.mp4") as err:
        list(iter_segments(bad, SEG, 32))
    assert not err.value.transient


def test_the_wall_time_budget_is_a_transient_failure(tmp_path):
    write_frames(tmp_path / "v.mp4", numbered(40))
    with pytest.raises(VideoError, match=r"took longer than extract.video_timeout_s = 1e-09 s") as err:
        list(iter_segments(tmp_path / "v.mp4", SEG, 32, limits=DecodeLimits(video_timeout_s=1e-9)))
    assert err.value.transient
    assert len(list(iter_segments(tmp_path / "v.mp4", SEG, 32, limits=DecodeLimits(video_timeout_s=60.0)))) == 1


def test_frames_over_the_pixel_and_aspect_limits_are_permanent(tmp_path):
    write_frames(tmp_path / "big.mp4", numbered(20, 32, 48))
    with pytest.raises(VideoError, match=r"48x32 are 1536 pixels, more than extract.max_pixels = 1000") as err:
        list(iter_segments(tmp_path / "big.mp4", SEG, 32, limits=DecodeLimits(max_pixels=1000)))
    assert not err.value.transient
    write_frames(tmp_path / "strip.mp4", numbered(20, 8, 64))
    with pytest.raises(VideoError, match=r"64x8 have an aspect of 8.00, more than extract.max_aspect = 4") as err:
        list(iter_segments(tmp_path / "strip.mp4", SEG, 8, limits=DecodeLimits(max_aspect=4.0)))
    assert not err.value.transient
    # At the limits themselves, and rotated (the aspect is the same either way), frames are accepted.
    write_frames(tmp_path / "ok.mp4", numbered(20, 16, 64), rotation=90)
    got = list(iter_segments(tmp_path / "ok.mp4", SEG, 16, limits=DecodeLimits(max_pixels=1024, max_aspect=4.0)))
    assert len(got) == 1


def test_limits_from_the_config_and_decoder_threads(tmp_path):
    ex = ExtractConfig(schemes=["http", "https"], decode_num_cpus=1.5, video_timeout_s=None, max_aspect=3.0)
    limits = DecodeLimits.from_config(ex)
    assert limits == DecodeLimits(
        schemes=("http", "https"),
        open_timeout_s=30.0,
        read_timeout_s=30.0,
        video_timeout_s=None,
        max_pixels=3840 * 2160,
        max_aspect=3.0,
        threads=2,
        sparse=True,
    )
    assert not DecodeLimits.from_config(ExtractConfig(sparse_decode=False)).sparse
    write_frames(tmp_path / "v.mp4", numbered(40))
    one = list(iter_segments(tmp_path / "v.mp4", SEG, 32, limits=DecodeLimits(threads=1)))
    auto = list(iter_segments(tmp_path / "v.mp4", SEG, 32))
    np.testing.assert_array_equal(one[0].clip, auto[0].clip)
