"""Extraction end to end: toy-world videos and broken ones, local and Ray runners, kill and resume."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lvmae import cli
from lvmae.extract.runner import pipeline_resources
from lvmae.foundation.runtime import ResourceError, check_resources
from lvmae.store import Store

from .conftest import assert_same_store, extract_with, make_config, store_contents, write_video


def test_toyworld_local_run_writes_every_segment_with_labels(tmp_path, tiny_tokenizer, toy_corpus):
    cfg = make_config(tmp_path, tiny_tokenizer)
    report = extract_with(cfg, inputs=toy_corpus.root / "videos.parquet", runner="local")
    assert report.videos_ok == 4 and report.videos_failed == 0 and report.shards_written == 2
    store = Store.open(cfg.paths.store)
    rows = {r["video_id"]: r for r in store.videos().to_pylist()}
    for v in toy_corpus.videos.to_pylist():
        row = rows[v["id"]]
        assert row["label"] == v["label"]  # input label columns reach the manifest
        assert row["n_segments"] == int(v["duration"] // 2 + (v["duration"] % 2 >= 1))
        seq = store.sequence(v["id"])
        assert seq.emb.shape == (row["n_segments"], 128) and seq.codes.shape == (row["n_segments"], 3, 16, 16)
        np.testing.assert_allclose(np.linalg.norm(seq.emb.astype(np.float32), axis=1), 1, atol=2e-3)
        assert (seq.span[:, 0] == np.arange(row["n_segments"]) * 2).all()
    again = extract_with(cfg, inputs=toy_corpus.root / "videos.parquet", runner="local")
    assert again.shards_skipped == 2 and again.shards_written == 0  # resume skips committed shards


@pytest.fixture(scope="module")
def edge_dir(tmp_path_factory, toy_corpus):
    d = tmp_path_factory.mktemp("edge")
    good = toy_corpus.root / toy_corpus.videos.column("uri")[0].as_py()
    shutil.copy(good, d / "good.mp4")
    (d / "zero.mp4").write_bytes(b"")
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    import av

    with av.open(str(d / "audio_only.mp4"), "w") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    write_video(d / "one_frame.mp4", 1)
    write_video(d / "short.mp4", 6)  # 0.75 s: under half a 2 s segment
    write_video(d / "odd_33x17.mp4", 40, size=(17, 33))  # 5 s
    write_video(d / "rotated.mp4", 40, size=(48, 80), rotation=90)  # 5 s
    write_video(d / "vfr.mp4", 6, pts_ms=[0, 900, 1500, 3000, 4200, 5400], fps=30)  # ends at 5.4 s + a frame
    write_video(d / "vidéo_日本.mp4", 24)  # 3 s
    return d


EXPECTED = {  # file -> (status, segments)
    "good.mp4": ("ok", None),
    "zero.mp4": ("failed", 0),
    "truncated.mp4": ("failed", 0),
    "audio_only.mp4": ("failed", 0),
    "one_frame.mp4": ("failed", 0),
    "short.mp4": ("failed", 0),
    "odd_33x17.mp4": ("ok", 3),
    "rotated.mp4": ("ok", 3),
    "vfr.mp4": ("ok", 3),
    "vidéo_日本.mp4": ("ok", 2),
}


@pytest.mark.parametrize("runner", ["local", "ray"])
def test_edge_cases_give_the_right_rows(tmp_path, tiny_tokenizer, edge_dir, toy_corpus, runner):
    cfg = make_config(tmp_path, tiny_tokenizer, **{"extract.shard_videos": 3})
    report = extract_with(cfg, inputs=edge_dir, runner=runner)
    rows = {Path(r["uri"]).name: r for r in Store.open(cfg.paths.store).videos().to_pylist()}
    assert set(rows) == set(EXPECTED)
    good_duration = toy_corpus.videos.column("duration")[0].as_py()
    for name, (status, n) in EXPECTED.items():
        row = rows[name]
        assert row["status"] == status, (name, row["error"])
        if status == "failed":
            assert row["error"] and row["n_segments"] == 0
        else:
            assert row["n_segments"] == (n if n is not None else int(good_duration // 2 + (good_duration % 2 >= 1)))
    assert "no video stream" in rows["audio_only.mp4"]["error"]
    assert "shorter than half a segment" in rows["short.mp4"]["error"]
    assert report.videos_failed == 5 and report.videos_ok == 5


def test_ray_run_equals_local_run(tmp_path, tiny_tokenizer, toy_corpus):
    local = make_config(tmp_path / "a", tiny_tokenizer)
    ray_cfg = make_config(tmp_path / "b", tiny_tokenizer)
    extract_with(local, inputs=toy_corpus.root / "videos.parquet", runner="local")
    extract_with(ray_cfg, inputs=toy_corpus.root / "videos.parquet", runner="ray")
    assert_same_store(store_contents(local.paths.store), store_contents(ray_cfg.paths.store))


def test_ray_run_with_actors_that_decode_equals_local_run(tmp_path, tiny_tokenizer, toy_corpus, monkeypatch):
    """The plan `extract.decoder = nvdec` runs on a GPU node (actors decode and encode, no decode
    tasks), here with the actors decoding in software: the same store as the local loop."""
    import lvmae.extract.runner

    monkeypatch.setattr(lvmae.extract.runner, "decodes_on_gpu", lambda ex: True)
    local = make_config(tmp_path / "a", tiny_tokenizer)
    ray_cfg = make_config(tmp_path / "b", tiny_tokenizer, **{"extract.decoder": "cpu", "extract.actors": 2})
    extract_with(local, inputs=toy_corpus.root / "videos.parquet", runner="local")
    report = extract_with(ray_cfg, inputs=toy_corpus.root / "videos.parquet", runner="ray")
    assert (
        report.videos_ok == 4
        and set(report.nodes)
        and all(w["videos"] and w["segments"] for w in report.nodes.values())
    )
    assert_same_store(store_contents(local.paths.store), store_contents(ray_cfg.paths.store))


def _pids_matching(text):
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                pids.append(int(pid))
    return pids


def test_killed_encoder_actor_is_replaced_and_every_video_lands_once(tmp_path, tiny_tokenizer, toy_corpus):
    cfg = make_config(
        tmp_path, tiny_tokenizer, **{"extract.shard_videos": 1, "extract.encode_batch": 8, "extract.chunk_segments": 4}
    )
    killed = []

    def killer():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            for pid in _pids_matching("FrozenModels"):
                # Let the actor take some work first, then kill it mid-job.
                time.sleep(1.0)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    report = extract_with(cfg, inputs=toy_corpus.root / "videos.parquet", runner="ray")
    t.join(timeout=1)
    assert killed, "no encoder actor process was found to kill"
    rows = Store.open(cfg.paths.store).videos().to_pylist()
    assert sorted(r["video_id"] for r in rows) == sorted(toy_corpus.videos.column("id").to_pylist())
    assert all(r["status"] == "ok" for r in rows) and report.videos_ok == 4
    reference = make_config(tmp_path / "ref", tiny_tokenizer, **{"extract.shard_videos": 1})
    extract_with(reference, inputs=toy_corpus.root / "videos.parquet", runner="local")
    assert_same_store(store_contents(reference.paths.store), store_contents(cfg.paths.store))


def test_interrupt_and_resume_equals_one_uninterrupted_run(tmp_path, tiny_tokenizer, toy_corpus):
    inputs = toy_corpus.root / "videos.parquet"
    args = [
        "--set",
        f"tokenizer.checkpoint={tiny_tokenizer}",
        "--set",
        "extract.shard_videos=1",
        "--set",
        f"encoder.pretrained={make_config(tmp_path, tiny_tokenizer).encoder.pretrained}",
        "--set",
        "extract.runner=local",
        "--inputs",
        str(inputs),
    ]
    store = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lvmae", "extract", "--store", str(store), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while (
        time.time() < deadline and not list((store / "manifest").glob("*.parquet"))
        if (store / "manifest").exists()
        else time.time() < deadline
    ):
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    committed = len(list((store / "manifest").glob("*.parquet")))
    assert 1 <= committed < 4, "the kill should land mid-job"
    assert cli.main(["extract", "--store", str(store), *args]) == 0
    assert cli.main(["extract", "--store", str(tmp_path / "clean"), *args]) == 0
    assert_same_store(store_contents(store), store_contents(tmp_path / "clean"), atol=0)
    assert Store.open(store).verify().ok


def test_resource_requests_that_cannot_fit_fail_fast(tmp_path, tiny_tokenizer):
    cfg = make_config(tmp_path, tiny_tokenizer, **{"extract.actors": 2})
    with pytest.raises(ResourceError, match="extract.actors"):
        check_resources(pipeline_resources(cfg.extract), {"CPU": 2.0})
    cfg = make_config(tmp_path, tiny_tokenizer, **{"extract.actor_num_gpus": 1})
    with pytest.raises(ResourceError, match="extract.actor_num_gpus"):
        check_resources(pipeline_resources(cfg.extract), {"CPU": 8.0})
    check_resources(pipeline_resources(make_config(tmp_path, tiny_tokenizer).extract), {"CPU": 2.0})


def test_cli_exit_status(tmp_path, tiny_tokenizer, edge_dir, capsys):
    base = [
        "extract",
        "--set",
        f"tokenizer.checkpoint={tiny_tokenizer}",
        "--set",
        "extract.runner=local",
        "--set",
        f"encoder.pretrained={make_config(tmp_path, tiny_tokenizer).encoder.pretrained}",
    ]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.mp4").write_bytes(b"")
    assert cli.main(base + ["--inputs", str(bad), "--store", str(tmp_path / "s1")]) == 1  # nothing succeeded
    mixed = tmp_path / "mixed.txt"
    mixed.write_text(f"{edge_dir / 'zero.mp4'}\n{edge_dir / 'odd_33x17.mp4'}\n")
    assert cli.main(base + ["--inputs", str(mixed), "--store", str(tmp_path / "s2")]) == 0
    assert cli.main(base + ["--inputs", str(mixed), "--store", str(tmp_path / "s3"), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "failed: " in out and "zero.mp4" in out
    assert cli.main(base + ["--inputs", str(tmp_path / "nope"), "--store", str(tmp_path / "s4")]) == 2
