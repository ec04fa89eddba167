"""What a store must survive: two writers of one shard, a writer killed (or out of disk) at any stage of
an overwrite, lost data files, a crafted array that asks for a foreign codec, power loss (fsync order)."""

import json
import multiprocessing
import os
import resource
import signal

import numcodecs
import numpy as np
import pytest

from lvmae.store import Store, StoreError, manifest
from lvmae.store.writer import ShardWriter

from .test_store import array_dir, assert_video_equal, identity, write_shard

FORK = multiprocessing.get_context("fork")


def _commit_when_released(root, barrier, name, seed):
    store = Store.create(root, identity())
    barrier.wait(10)
    try:
        write_shard(store, "000001", {f"{name}-a": (30 + seed, seed), f"{name}-b": (7, seed + 100)}, overwrite=True)
    except StoreError:
        os._exit(3)
    os._exit(0)


def test_two_writers_of_one_shard_each_leave_a_whole_shard(tmp_path):
    root = str(tmp_path / "s")
    write_shard(Store.create(root, identity()), "000001", {"first": (5, 0)})
    for round_ in range(6):
        barrier = FORK.Barrier(2)
        writers = [
            FORK.Process(target=_commit_when_released, args=(root, barrier, name, round_ * 10 + i))
            for i, name in enumerate(("A", "B"))
        ]
        for w in writers:
            w.start()
        for w in writers:
            w.join(60)
        assert all(w.exitcode == 0 for w in writers)  # replacing writers both commit; the later rename wins
        store = Store.open(root)
        ids = sorted(store.videos()["video_id"].to_pylist())
        winner = ids[0][0]
        assert ids == [f"{winner}-a", f"{winner}-b"], ids  # one writer's videos, never a mix
        seed = round_ * 10 + ("A", "B").index(winner)
        assert_video_equal(store, f"{winner}-a", 30 + seed, seed)
        assert_video_equal(store, f"{winner}-b", 7, seed + 100)
        assert store.verify().ok


def test_without_overwrite_exactly_one_of_two_racing_writers_commits(tmp_path):
    root = str(tmp_path / "s")
    Store.create(root, identity())

    def commit(barrier, name):
        store = Store.create(root, identity())
        writer = store.shard_writer("000002")
        writer.add_video(video_id=name, uri=name, duration=4, fps=8, **_video(2, len(name)))
        barrier.wait(10)
        try:
            with writer:
                pass
        except StoreError as exc:
            os._exit(3 if "committed by another writer" in str(exc) else 4)
        os._exit(0)

    for _ in range(4):
        barrier = FORK.Barrier(2)
        procs = [FORK.Process(target=commit, args=(barrier, name)) for name in ("x", "yy")]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert sorted(p.exitcode for p in procs) == [0, 3]
        store = Store.open(root)
        assert len(store.videos()) == 1 and store.verify().ok
        Store.create(root, identity()).collect_garbage(min_age_s=0)
        os.remove(os.path.join(root, "manifest", "000002.parquet"))


def _video(n, seed):
    from .test_store import video

    return video(n, seed)


STAGES = ["during the arrays", "after the arrays", "at the manifest rename", "disk full"]


def _overwrite_and_fail(root, stage):
    store = Store.create(root, identity())

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if stage == "during the arrays":
        import zarr

        create = zarr.Group.create_array
        calls = []

        def second_array_dies(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                die()
            return create(self, *args, **kwargs)

        zarr.Group.create_array = second_array_dies
    elif stage == "after the arrays":
        write = ShardWriter._write_arrays
        ShardWriter._write_arrays = lambda self, *a: (write(self, *a), die())
    elif stage == "at the manifest rename":
        write = ShardWriter._write_arrays

        def then(self, *a):
            write(self, *a)
            os.replace = os.link = die

        ShardWriter._write_arrays = then
    else:  # a full disk: files may not grow past 64 KiB (the new shard needs far more)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
    try:
        write_shard(store, "000001", {"new": (3000, 7)}, overwrite=True)
    except StoreError as exc:
        print(exc)
        os._exit(3)
    os._exit(0)


@pytest.mark.parametrize("stage", STAGES)
def test_an_overwrite_that_dies_leaves_the_previous_shard_readable(tmp_path, stage):
    root = str(tmp_path / "s")
    write_shard(Store.create(root, identity()), "000001", {"old": (40, 1)})
    child = FORK.Process(target=_overwrite_and_fail, args=(root, stage))
    child.start()
    child.join(120)
    assert child.exitcode == (3 if stage == "disk full" else -signal.SIGKILL)
    store = Store.open(root)
    assert store.videos()["video_id"].to_pylist() == ["old"]
    assert_video_equal(store, "old", 40, 1)
    report = store.verify()
    assert report.ok and report.orphans  # the failed attempt's leftovers are garbage, listed
    Store.create(root, identity()).collect_garbage(min_age_s=0)
    assert not Store.open(root).verify().orphans
    write_shard(Store.create(root, identity()), "000001", {"new": (30, 7)}, overwrite=True)  # the re-run
    assert_video_equal(Store.open(root), "new", 30, 7)


def test_a_lost_data_file_is_an_error_not_zeros(tmp_path, capsys):
    root = tmp_path / "s"
    write_shard(Store.create(root, identity()), "000001", {"v": (40, 1)})
    write_shard(Store.create(root, identity()), "000002", {"w": (40, 2)})
    (array_dir(root, "000002", "emb") / "c" / "0" / "0").unlink()
    store = Store.open(root)
    with pytest.raises(StoreError, match=r"shard 000002: emb: data lost: .*emb/c/0/0 is missing"):
        store.sequence("w")
    with pytest.raises(StoreError, match="shard 000002: emb: data lost"):
        list(store.iter_embeddings())
    assert_video_equal(store, "v", 40, 1)  # other shards read as before
    report = store.verify()
    assert [(p.shard, p.array) for p in report.problems] == [("000002", "emb")]
    assert "data lost" in report.problems[0].message


def test_an_array_asking_for_a_codec_lvmae_never_writes_is_refused(tmp_path):
    """A crafted shard: its emb replaced by a zarr v2 array with a pickle filter (reading it through
    zarr would unpickle whatever the file holds)."""
    root = tmp_path / "s"
    write_shard(Store.create(root, identity()), "000001", {"v": (10, 1)})
    folder = array_dir(root, "000001", "emb")
    for path in folder.rglob("*"):
        if path.is_file():
            path.unlink()
    meta = {
        "zarr_format": 2,
        "shape": [10, 8],
        "chunks": [10, 8],
        "dtype": "<f2",
        "compressor": None,
        "fill_value": 0,
        "order": "C",
        "filters": [numcodecs.Pickle().get_config()],
    }
    (folder / ".zarray").write_text(json.dumps(meta))
    (folder / "0.0").write_bytes(numcodecs.Pickle().encode(np.zeros((10, 8), np.float16)))
    table = manifest.read(Store.open(root).location, "000001")
    commit = manifest.Commit.from_table(table, "000001")
    commit.files["emb"] = {p.name: p.stat().st_size for p in folder.iterdir()}
    import pyarrow.parquet as pq

    pq.write_table(
        table.replace_schema_metadata({manifest.COMMIT_KEY: commit.to_bytes()}), root / "manifest" / "000001.parquet"
    )
    store = Store.open(root)
    with pytest.raises(StoreError, match="zarr v2 array, which lvmae never writes; refusing to read it"):
        store.sequence("v")
    report = store.verify()
    assert [p.array for p in report.problems] == ["emb"] and "refusing to read it" in report.problems[0].message
    # And a v3 array whose codecs include one lvmae never writes.
    from lvmae.store.layout import check_array_metadata

    foreign = {"zarr_format": 3, "node_type": "array", "codecs": [{"name": "bytes"}, {"name": "zstd"}]}
    with pytest.raises(StoreError, match=r"codecs \['zstd'\] that lvmae never writes"):
        check_array_metadata(foreign, "x")


def test_a_commit_syncs_its_data_then_renames_its_manifest_once_listed(tmp_path, monkeypatch):
    root = tmp_path / "s"
    store = Store.create(root, identity())
    events = []
    real_fsync, real_link, real_entries = os.fsync, os.link, type(store.location).entries

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def link(src, dst):  # zarr's own writes link too; the commit is the manifest's
        events.append(("commit" if str(dst).endswith(".parquet") else "link", str(dst)))
        return real_link(src, dst)

    def entries(self, *parts):
        events.append(("list", "/".join(parts)))
        return real_entries(self, *parts)

    writer = store.shard_writer("000001")
    writer.add_video(video_id="v", uri="v", duration=4, fps=8, **_video(2, 1))
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(type(store.location), "entries", entries)
    with writer:
        pass
    commit_at = next(i for i, e in enumerate(events) if e[0] == "commit")
    synced_before = [path for kind, path in events[:commit_at] if kind == "fsync"]
    data = [p for p in (root / "shards" / "000001").rglob("*") if p.is_file()]
    assert data and [p for p in data if str(p) not in synced_before] == []  # every data file
    assert str(root / "shards" / "000001" / writer.generation) in synced_before  # their folders
    assert any(p.endswith(".tmp") and "/manifest/" in p for p in synced_before)  # the manifest temp file
    assert ("fsync", str(root / "manifest")) in events[commit_at:]  # the rename itself
    assert [e for e in events if e[0] == "list"] == [("list", "manifest")]  # manifest/ listed once
