"""Extraction jobs as users run them again and again: added videos, a second list, a video the store
refuses, a file that appears later, a misspelt model, a file name that is not UTF-8."""

import os
import shutil

import numpy as np
import pytest

from lvmae import cli
from lvmae.extract import work
from lvmae.extract.plan import shard_id_for
from lvmae.foundation.loader import ConfigError
from lvmae.store import Store

from .conftest import extract_with, make_config, write_video


@pytest.fixture
def folder(tmp_path, toy_corpus):
    """Three toy-world videos in a folder, named so that a fourth can sort before them."""
    d = tmp_path / "videos"
    d.mkdir()
    for name, row in zip(("b.mp4", "c.mp4", "d.mp4"), toy_corpus.videos.to_pylist()):
        shutil.copy(toy_corpus.root / row["uri"], d / name)
    return d


def committed_ids(uri):
    rows = Store.open(uri).videos().to_pylist()
    return sorted(r["video_id"] for r in rows), {r["shard_id"] for r in rows}


def test_a_video_added_to_the_folder_is_the_only_one_extracted(tmp_path, tiny_tokenizer, folder, toy_corpus):
    cfg = make_config(tmp_path, tiny_tokenizer)
    first = extract_with(cfg, inputs=folder, runner="local")
    assert first.videos_ok == 3 and first.shards_written == 2
    before, _ = committed_ids(cfg.paths.store)
    shutil.copy(toy_corpus.root / toy_corpus.videos.column("uri")[3].as_py(), folder / "a.mp4")  # sorts first
    again = extract_with(cfg, inputs=folder, runner="local")
    assert again.videos_ok == 1 and again.shards_written == 1 and again.shards_skipped == 2
    after, shards = committed_ids(cfg.paths.store)
    assert len(after) == len(set(after)) == 4 and set(before) < set(after)  # nothing twice, nothing lost
    assert len(shards) == 3 and Store.open(cfg.paths.store).verify().ok


def test_two_input_lists_into_one_store_are_both_present(tmp_path, tiny_tokenizer, folder, toy_corpus):
    cfg = make_config(tmp_path, tiny_tokenizer)
    extract_with(cfg, inputs=folder, runner="local")
    extract_with(cfg, inputs=toy_corpus.root / "videos.parquet", runner="local")
    ids, _ = committed_ids(cfg.paths.store)
    assert len(ids) == len(set(ids)) == 3 + 4
    assert set(toy_corpus.videos.column("id").to_pylist()) <= set(ids)
    assert Store.open(cfg.paths.store).verify().ok


def test_no_resume_replaces_shards_whole_and_keeps_the_old_until_the_new_commits(tmp_path, tiny_tokenizer, folder):
    cfg = make_config(tmp_path, tiny_tokenizer)
    extract_with(cfg, inputs=folder, runner="local")
    before, shards = committed_ids(cfg.paths.store)
    report = extract_with(cfg, inputs=folder, runner="local", resume=False)
    assert report.shards_written == report.shards_replaced == 2
    after, again = committed_ids(cfg.paths.store)
    assert after == before and again == shards
    store = Store.open(cfg.paths.store)
    assert store.verify().ok and len(store.garbage()) == 2  # the replaced generations, for gc


def test_a_video_with_non_finite_features_fails_alone(tmp_path, tiny_tokenizer, folder, monkeypatch):
    cfg = make_config(tmp_path, tiny_tokenizer, **{"extract.shard_videos": 3})
    run_models = work.FrozenModels.__call__

    def poisoned(self, batch):
        out = run_models(self, batch)
        hit = np.array([vid == poisoned.target for vid in batch["video_id"]]) & ~batch["end"]
        out["emb"][hit] = np.nan
        return out

    from lvmae.extract.inputs import list_inputs

    poisoned.target = next(v.video_id for v in list_inputs(folder) if v.uri.endswith("c.mp4"))
    monkeypatch.setattr(work.FrozenModels, "__call__", poisoned)
    report = extract_with(cfg, inputs=folder, runner="local")
    assert report.videos_ok == 2 and report.videos_failed == 1 and report.shards_written == 1
    rows = {r["video_id"]: r for r in Store.open(cfg.paths.store).videos().to_pylist()}
    assert rows[poisoned.target]["status"] == "failed" and "not finite" in rows[poisoned.target]["error"]
    assert sum(r["status"] == "ok" for r in rows.values()) == 2


def test_a_transient_failure_is_retried_by_retry_failed(tmp_path, tiny_tokenizer, folder, capsys):
    later = tmp_path / "later.mp4"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / 'b.mp4'}\n{later}\n")
    base = [
        "extract",
        "--inputs",
        str(listing),
        "--store",
        str(tmp_path / "s"),
        "--set",
        "extract.runner=local",
        "--set",
        f"tokenizer.checkpoint={tiny_tokenizer}",
        "--set",
        f"encoder.pretrained={make_config(tmp_path, tiny_tokenizer).encoder.pretrained}",
    ]
    assert cli.main(base) == 0  # one ok, one failed: the job finishes
    rows = {r["uri"]: r for r in Store.open(tmp_path / "s").videos().to_pylist()}
    assert rows[str(later)]["status"] == "failed" and rows[str(later)]["error_kind"] == "transient"
    assert cli.main(base) == 0
    assert "failed in earlier runs  1 (1 transient" in capsys.readouterr().out  # counted, not hidden
    shutil.copy(folder / "c.mp4", later)  # the file appears
    assert cli.main(base + ["--retry-failed"]) == 0
    rows = {r["uri"]: r for r in Store.open(tmp_path / "s").videos().to_pylist()}
    assert rows[str(later)]["status"] == "ok" and len(rows) == 2
    assert Store.open(tmp_path / "s").verify().ok


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("encoder.model", "toyclpi", "encoder.model: 'toyclpi' is not an open_clip model name"),
        (
            "encoder.pretrained",
            "weights/missing.pt",
            "encoder.pretrained: checkpoint file 'weights/missing.pt' does not",
        ),
        ("encoder.pretrained", "laion9000", "encoder.pretrained: 'laion9000' is neither a file nor a pretrained tag"),
    ],
)
def test_bad_model_settings_are_errors_and_write_no_store(tmp_path, tiny_tokenizer, folder, setting, value, message):
    cfg = make_config(tmp_path, tiny_tokenizer, **{setting: value})
    with pytest.raises(ConfigError, match=message):
        extract_with(cfg, inputs=folder, runner="local")
    assert not os.path.exists(cfg.paths.store)  # no root with the wrong identity
    report = extract_with(make_config(tmp_path, tiny_tokenizer), inputs=folder, runner="local")  # corrected
    assert report.videos_ok == 3


def test_a_file_name_that_is_not_utf8_is_processed_by_name(tmp_path, tiny_tokenizer):
    d = tmp_path / "odd"
    d.mkdir()
    write_video(d / "fine.mp4", 24)
    odd = os.path.join(os.fsencode(d), b"caf\xe9.mp4")
    write_video(tmp_path / "tmp.mp4", 24, seed=3)
    os.rename(tmp_path / "tmp.mp4", odd)
    cfg = make_config(tmp_path, tiny_tokenizer)
    report = extract_with(cfg, inputs=d, runner="local")
    assert report.videos_ok == 2
    uris = sorted(Store.open(cfg.paths.store).videos().column("uri").to_pylist())
    assert any(u.endswith("caf\\xe9.mp4") for u in uris)  # kept, with its byte shown


def test_an_empty_folder_is_an_error_naming_it(tmp_path, tiny_tokenizer):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "clip.m2ts").write_bytes(b"")
    from lvmae.extract.inputs import InputError

    with pytest.raises(InputError, match="no video in .*empty"):
        extract_with(make_config(tmp_path, tiny_tokenizer), inputs=empty, runner="local")


def test_shard_ids_name_their_videos(tmp_path, tiny_tokenizer, folder):
    cfg = make_config(tmp_path, tiny_tokenizer, **{"extract.shard_videos": 3})
    extract_with(cfg, inputs=folder, runner="local")
    ids, shards = committed_ids(cfg.paths.store)
    assert shards == {shard_id_for(ids)}


def test_a_fifo_and_a_server_that_never_answers_fail_alone_within_their_timeouts(tmp_path, tiny_tokenizer, folder):
    import socket
    import threading
    import time

    fifo = tmp_path / "stream.fifo"
    os.mkfifo(fifo)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held = []

    def accept_and_say_nothing():
        server.settimeout(20)
        try:
            while len(held) < 4:
                held.append(server.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/video.mp4"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / 'b.mp4'}\n{fifo}\n{url}\n")
    cfg = make_config(
        tmp_path,
        tiny_tokenizer,
        **{"extract.schemes": "[http]", "extract.open_timeout_s": 1.0, "extract.read_timeout_s": 1.0},
    )
    began = time.monotonic()
    try:
        report = extract_with(cfg, inputs=listing, runner="local")
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert time.monotonic() - began < 60
    assert report.videos_ok == 1 and report.videos_failed == 2
    rows = {r["uri"]: r for r in Store.open(cfg.paths.store).videos().to_pylist()}
    assert rows[str(fifo)]["status"] == "failed" and "FIFO" in rows[str(fifo)]["error"]
    assert rows[url]["status"] == "failed" and rows[url]["error_kind"] == "transient"
