import os
from pathlib import Path

import pytest

from lvmae.foundation.files import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    local_path,
    sha256_file,
    stale_temp_files,
)
from lvmae.foundation.provenance import provenance_path, read_provenance, write_provenance


def test_atomic_write_replaces_whole_files_and_syncs(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert len(synced) == 6  # the file, and its folder before and after the rename, at each write


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"k": 1})

    def half(f):
        f.write(b'{"k": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half)
    assert path.read_text() == '{\n  "k": 1\n}\n' and stale_temp_files(tmp_path) == []


def test_temp_files_of_killed_writes_are_found(tmp_path):
    (tmp_path / ".model.pt.tmp-123").write_bytes(b"half")
    (tmp_path / "model.pt").write_bytes(b"whole")
    assert [p.name for p in stale_temp_files(tmp_path)] == [".model.pt.tmp-123"]


def test_provenance_sits_beside_its_weights(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    assert read_provenance(weights) is None
    write_provenance(weights, {"sha256": sha256_file(weights)})
    assert provenance_path(weights).name == "w.provenance.json"
    assert read_provenance(weights)["sha256"] == sha256_file(weights) and len(sha256_file(weights)) == 64


def test_local_path_of_plain_file_and_remote_uris():
    assert local_path("/data/v.mp4") == Path("/data/v.mp4")
    assert local_path("file:///data/v.mp4") == Path("/data/v.mp4")
    assert local_path("videos/v.mp4") == Path("videos/v.mp4")
    assert local_path("s3://bucket/v.mp4") is None
    assert local_path("https://host/v.mp4") is None
