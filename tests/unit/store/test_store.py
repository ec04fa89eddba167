import multiprocessing
import os
import signal
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from lvmae import cli
from lvmae.store import SCHEMA_VERSION, Store, StoreError, StoreIdentity, direct, layout, manifest

D = 8
GRID = (2, 3, 3)


def identity(tokenizer=True, sha="a" * 64):
    return StoreIdentity(
        encoder={"name": "toyclip", "weights_sha256": sha},
        tokenizer={"name": "magvit-fsq", "weights_sha256": "b" * 64, "levels": [8, 8, 8, 6, 5]} if tokenizer else None,
        segment={"seconds": 2.0, "clip_frames": 8},
    )


def video(n, seed, tokenizer=True, d=D):
    """One video's arrays, distinct per seed."""
    rng = np.random.default_rng(seed)
    t0 = np.arange(n, dtype=np.float32) * 2
    out = {
        "emb": rng.standard_normal((n, d)).astype(np.float32),
        "importance": rng.random(n),
        "span": np.stack([t0, t0 + 2], 1),
    }
    if tokenizer:
        out["codes"] = rng.integers(0, 15360, (n, *GRID))
        out["scores"] = rng.random((n, *GRID))
    return out


def write_shard(store, shard_id, videos, failed=(), **writer_args):
    """videos: {video_id: (n, seed)}; failed: video ids."""
    with store.shard_writer(shard_id, **writer_args) as w:
        for video_id, (n, seed) in videos.items():
            w.add_video(
                video_id=video_id,
                uri=f"/videos/{video_id}.mp4",
                duration=2.0 * n,
                fps=8.0,
                extra={"label": f"class-{seed % 3}"},
                **video(n, seed, store.identity.has_tokenizer),
            )
        for video_id in failed:
            w.add_failed(
                video_id=video_id,
                uri=f"/videos/{video_id}.mp4",
                error="moov atom not found",
                extra={"label": "unknown"},
            )


def assert_video_equal(store, video_id, n, seed):
    got = store.sequence(video_id)
    want = video(n, seed, store.identity.has_tokenizer)
    np.testing.assert_array_equal(got.emb, want["emb"].astype(np.float16))
    np.testing.assert_array_equal(got.importance, want["importance"].astype(np.float32))
    np.testing.assert_array_equal(got.span, want["span"])
    if store.identity.has_tokenizer:
        np.testing.assert_array_equal(got.codes, want["codes"].astype(np.int16))
        np.testing.assert_array_equal(got.scores, want["scores"].astype(np.float16))
    assert got.emb.dtype == np.float16 and got.importance.dtype == got.span.dtype == np.float32


@pytest.fixture
def small_chunks(monkeypatch):
    """256-row chunks at D=8, so that small test videos span several chunks."""
    monkeypatch.setattr(layout, "CHUNK_BYTES", 4096)


@pytest.fixture(params=["path", "file", "memory"])
def uri(request, tmp_path):
    if request.param == "memory":
        name = f"memory://lvmae-test-{uuid.uuid4().hex}"
        yield name
        fsspec.filesystem("memory").rm(name.removeprefix("memory:/"), recursive=True)
    else:
        yield str(tmp_path / "store") if request.param == "path" else (tmp_path / "store").as_uri()


# --- round trips ----------------------------------------------------------------------------------

SHARDS = {"000001": {"v1": (300, 1), "v2": (17, 2)}, "000002": {"v3": (600, 3)}}


def array_dir(root, shard_id: str, name: str) -> Path:
    """The folder of one array of a committed shard (in the generation its manifest names)."""
    return Path(root) / Store.open(root).array_path(shard_id, name)


def _record_files(root, shard_id: str, name: str) -> None:
    """Rewrite a shard's commit record with the files its array `name` has now (for tests that replace
    an array's files on purpose)."""
    path = Path(root) / "manifest" / f"{shard_id}.parquet"
    table = pq.read_table(path)
    commit = manifest.Commit.from_table(table, shard_id)
    folder = array_dir(root, shard_id, name)
    commit.files[name] = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    pq.write_table(table.replace_schema_metadata({manifest.COMMIT_KEY: commit.to_bytes()}), path)


def test_round_trip_of_every_array_and_the_manifest(uri, small_chunks):
    store = Store.create(uri, identity())
    write_shard(store, "000001", SHARDS["000001"], failed=["broken"])
    write_shard(store, "000002", SHARDS["000002"])

    reader = Store.open(uri)
    assert reader.identity == identity() and reader.identity.schema_version == SCHEMA_VERSION
    assert reader.committed_shards() == {"000001", "000002"}
    for videos in SHARDS.values():
        for video_id, (n, seed) in videos.items():
            assert_video_equal(reader, video_id, n, seed)
    table = reader.videos()
    assert table.column_names[:10] == [
        "video_id",
        "uri",
        "duration",
        "fps",
        "n_segments",
        "shard_id",
        "row_start",
        "status",
        "error",
        "error_kind",
    ]
    rows = {row["video_id"]: row for row in table.to_pylist()}
    assert rows["v2"] == {
        "video_id": "v2",
        "uri": "/videos/v2.mp4",
        "duration": 34.0,
        "fps": 8.0,
        "n_segments": 17,
        "shard_id": "000001",
        "row_start": 300,
        "status": "ok",
        "error": None,
        "error_kind": None,
        "label": "class-2",
    }
    assert rows["broken"]["status"] == "failed" and rows["broken"]["error"] == "moov atom not found"
    assert rows["broken"]["error_kind"] == "permanent"
    assert rows["broken"]["n_segments"] == 0 and rows["broken"]["label"] == "unknown"
    assert reader.dims().emb == D and reader.dims().token_grid == GRID
    report = reader.verify()
    assert report.ok and not report.orphans and report.shards == 2 and report.segments == 917


def test_store_without_tokenizer_has_no_token_arrays(tmp_path):
    store = Store.create(tmp_path / "s", identity(tokenizer=False))
    write_shard(store, "a", {"v": (5, 0)})
    got = Store.open(tmp_path / "s").sequence("v")
    assert got.codes is None and got.scores is None and got.emb.shape == (5, D)
    assert not list((tmp_path / "s" / "shards" / "a").glob("*/codes")) and list(
        (tmp_path / "s" / "shards" / "a").glob("*/emb")
    )
    with pytest.raises(StoreError, match="codes given, but the store's identity has no tokenizer"):
        with store.shard_writer("b") as w:
            w.add_video(video_id="x", uri="x", duration=2, fps=8, **video(2, 0, tokenizer=True))


def test_window_reads_equal_slices_of_full_reads(tmp_path, small_chunks):
    store = Store.create(tmp_path / "s", identity())
    write_shard(store, "000001", {"pad": (100, 9), "long": (1000, 4)})
    full = store.sequence("long")
    for start, stop in [(0, 1000), (0, 1), (255, 257), (156, 412), (999, 1000), (500, 500), (None, 10), (990, None)]:
        window = store.sequence("long", start, stop)
        s = slice(start, stop)
        for name in ("emb", "codes", "scores", "importance", "span"):
            np.testing.assert_array_equal(getattr(window, name), getattr(full, name)[s])
    only = store.sequence("long", 3, 7, arrays=("emb", "importance"))
    assert only.codes is None and only.span is None and only.emb.shape == (4, D)
    for start, stop in [(-1, 5), (5, 4), (0, 1001)]:
        with pytest.raises(StoreError, match="outside its 1000 segments"):
            store.sequence("long", start, stop)


def test_a_window_reads_only_the_chunks_it_needs(tmp_path, small_chunks, monkeypatch):
    store = Store.create(tmp_path / "s", identity(tokenizer=False))
    write_shard(store, "000001", {"long": (4096, 1)})  # 16 chunks of 256 rows per array
    read = []
    fetch = direct._Shard.fetch
    monkeypatch.setattr(direct._Shard, "fetch", lambda self, a, b: read.append(b - a) or fetch(self, a, b))
    reader = Store.open(tmp_path / "s")
    reader.sequence("long", 300, 310, arrays=["emb"])
    emb_file = (array_dir(tmp_path / "s", "000001", "emb") / "c" / "0" / "0").stat().st_size
    # The shard index, then one chunk of 256 rows: far less than the file's 16 chunks.
    assert len(read) == 2 and 0 < sum(read) < emb_file / 8


# --- direct reads (store.direct) ------------------------------------------------------------------


def still_video(n, seed):
    """A video whose tokens barely change (they compress) and whose codes are all zero (zarr's fill value,
    so those chunks are never written) in rows 256-767."""
    arrays = video(n, seed)
    rng = np.random.default_rng(seed)
    for i in range(1, n):
        keep = rng.random(GRID) > 0.05
        arrays["codes"][i] = np.where(keep, arrays["codes"][i - 1], arrays["codes"][i])
    arrays["codes"][256:768] = 0
    return arrays


def test_direct_reads_equal_zarr_reads_at_every_chunk_edge(uri, small_chunks):
    store = Store.create(uri, identity())
    with store.shard_writer("000001") as w:
        for video_id, n, seed in [("a", 300, 1), ("still", 1000, 2)]:
            w.add_video(video_id=video_id, uri=video_id, duration=2.0 * n, fps=8.0, **still_video(n, seed))
    reader = Store.open(uri)
    for name in layout.ARRAYS:  # every array is read directly, none falls back to zarr
        assert direct.RowReader.open(reader.location, reader.array_path("000001", name), name) is not None
    windows = [(0, 1300), (0, 0), (255, 257), (256, 768), (300, 301), (511, 1030), (1299, 1300), (17, 1283)]
    for start, stop in windows:
        for name in layout.ARRAYS:
            want = reader.shard_array("000001", name)[start:stop]  # zarr
            got = reader.read_rows("000001", name, start, stop)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    assert not reader.sequence("still").codes[256:768].any()
    index = reader._readers.get(("000001", "codes"), lambda: None)._shard(0).index
    assert (index == direct._MISSING).all(axis=1).any()  # shard rows 768-1023 are all zero: never written
    with pytest.raises(StoreError, match="rows \\[1200, 1301\\) of emb asked for, but it has 1300 rows"):
        reader.read_rows("000001", "emb", 1200, 1301)


def _flip_byte(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupted_chunk_fails_the_read_naming_shard_array_and_chunk(tmp_path, small_chunks):
    store = Store.create(tmp_path / "s", identity())
    write_shard(store, "000002", {"v": (1000, 2)})
    _flip_byte(array_dir(tmp_path / "s", "000002", "emb") / "c" / "0" / "0", 100)  # in the first chunk
    reader = Store.open(tmp_path / "s")
    assert reader.sequence("v", 256, 1000).emb.shape == (744, D)  # other chunks still read
    with pytest.raises(
        StoreError,
        match="shard 000002: emb: chunk 0 \\(rows 0-255\\) of .*000002/g[0-9a-f-]+/emb/c/0/0 "
        "fails its crc32c checksum \\(corrupted\\)",
    ):
        reader.sequence("v", 10, 20)


def test_a_truncated_shard_file_is_a_clear_error(tmp_path, small_chunks):
    store = Store.create(tmp_path / "s", identity())
    write_shard(store, "000002", {"v": (1000, 2)})
    path = array_dir(tmp_path / "s", "000002", "span") / "c" / "0" / "0"
    path.write_bytes(path.read_bytes()[:10])
    # The commit record knows the file's size: the read fails before any chunk is decoded.
    with pytest.raises(StoreError, match="shard 000002: span: data lost: .*/span/c/0/0 is 10 bytes; the commit wrote"):
        Store.open(tmp_path / "s").sequence("v")


def test_arrays_in_another_encoding_are_read_through_zarr(tmp_path):
    store = Store.create(tmp_path / "s", identity(tokenizer=False))
    write_shard(store, "000001", {"v": (40, 1)})
    # Rewrite emb unsharded, in chunks of 7 rows (codecs the store writes, but not the layout store.direct
    # reads), and record the files it now has, as the commit would have.
    emb = np.asarray(store.shard_array("000001", "emb")[:])
    path = Store.open(tmp_path / "s").array_path("000001", "emb")
    group = zarr.open_group(str(tmp_path / "s"), mode="r+")
    group.create_array(path, data=emb, chunks=(7, D), overwrite=True, compressors=[zarr.codecs.BloscCodec()])
    _record_files(tmp_path / "s", "000001", "emb")
    reader = Store.open(tmp_path / "s")
    assert direct.RowReader.open(reader.location, reader.array_path("000001", "emb"), "emb") is None
    np.testing.assert_array_equal(reader.sequence("v", 3, 30).emb, emb[3:30])


def test_iter_embeddings_covers_every_ok_segment_exactly_once(tmp_path, small_chunks):
    store = Store.create(tmp_path / "s", identity())
    write_shard(store, "000001", SHARDS["000001"], failed=["broken"])
    write_shard(store, "000002", SHARDS["000002"])
    write_shard(store, "000003", {}, failed=["also-broken"])
    seen, emb, span = [], {}, {}
    for batch in store.iter_embeddings(batch_size=256):
        assert 0 < len(batch.emb) <= 256 and len(batch.video_id) == len(batch.row) == len(batch.span) == len(batch.emb)
        for i, key in enumerate(zip(batch.video_id.tolist(), batch.row.tolist())):
            seen.append(key)
            emb[key], span[key] = batch.emb[i], batch.span[i]
    expected = [
        (video_id, row) for videos in SHARDS.values() for video_id, (n, _) in videos.items() for row in range(n)
    ]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    for videos in SHARDS.values():
        for video_id, (n, _) in videos.items():
            full = store.sequence(video_id)  # the batches hold the same rows as reading each video whole
            np.testing.assert_array_equal(np.stack([emb[video_id, row] for row in range(n)]), full.emb)
            np.testing.assert_array_equal(np.stack([span[video_id, row] for row in range(n)]), full.span)


# --- concurrency and crashes ----------------------------------------------------------------------


def _write_one_shard(root, index):
    store = Store.create(root, identity())  # all eight race to create the store
    write_shard(store, f"{index:06d}", {f"p{index}a": (40 + index, 10 * index), f"p{index}b": (7, 10 * index + 1)})


def test_eight_processes_write_eight_shards_at_once(tmp_path):
    root = str(tmp_path / "s")
    # fork: the children run this test module's function without importing it (zarr and fsspec reset
    # their event loops in forked children).
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_one_shard, args=(root, i)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * 8
    store = Store.open(root)
    assert store.committed_shards() == {f"{i:06d}" for i in range(8)}
    for i in range(8):
        assert_video_equal(store, f"p{i}a", 40 + i, 10 * i)
        assert_video_equal(store, f"p{i}b", 7, 10 * i + 1)
    report = store.verify()
    assert report.ok and not report.orphans


def _write_and_die_before_the_manifest_rename(root):
    store = Store.create(root, identity())

    def die(*args, **kwargs):  # the process is killed just before the rename that would commit the shard
        os.kill(os.getpid(), signal.SIGKILL)

    # In this forked child only: once the arrays are written (zarr renames its own temp files), the next
    # rename is the manifest's, the commit (foundation.files.atomic_write).
    from lvmae.store.writer import ShardWriter

    write_arrays = ShardWriter._write_arrays

    def then_die_at_the_rename(self, *args):
        write_arrays(self, *args)
        os.replace = os.link = die

    ShardWriter._write_arrays = then_die_at_the_rename
    write_shard(store, "000001", {"v1": (50, 1)})


def test_writer_killed_between_data_and_manifest_leaves_nothing_visible(tmp_path):
    root = str(tmp_path / "s")
    child = multiprocessing.get_context("fork").Process(target=_write_and_die_before_the_manifest_rename, args=(root,))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert list((tmp_path / "s" / "shards" / "000001").glob("*/emb/zarr.json"))  # the data was written

    store = Store.open(root)
    assert store.committed_shards() == set() and store.videos().num_rows == 0
    with pytest.raises(StoreError, match="no committed shards"):
        store.sequence("v1")
    report = store.verify()
    assert report.ok
    assert any(o.startswith("shards/000001/ (no manifest") for o in report.orphans)
    assert any(o.startswith("manifest/.000001.parquet.") for o in report.orphans)

    write_shard(Store.create(root, identity()), "000001", {"v1": (50, 1)})  # the re-run
    store = Store.open(root)
    assert store.committed_shards() == {"000001"}
    assert_video_equal(store, "v1", 50, 1)
    report = store.verify()
    assert report.ok  # the dead writer's generation and temp file are garbage, not problems
    assert len(report.orphans) == 2 and any("a generation no manifest names" in o for o in report.orphans)
    removed, spared = Store.create(root, identity()).collect_garbage(min_age_s=0)
    assert len(removed) == 2 and not spared
    report = store.verify()
    assert report.ok and not report.orphans
    assert_video_equal(store, "v1", 50, 1)


def test_an_exception_inside_the_block_commits_nothing(tmp_path):
    store = Store.create(tmp_path / "s", identity())
    with pytest.raises(RuntimeError):
        with store.shard_writer("000001") as w:
            w.add_video(video_id="v", uri="v", duration=2, fps=8, **video(3, 0))
            raise RuntimeError("worker failed")
    assert store.committed_shards() == set() and not (tmp_path / "s" / "shards" / "000001").exists()
    write_shard(store, "000001", {"v": (3, 0)})  # the writer slot was released
    assert store.committed_shards() == {"000001"}


def test_committed_shard_refused_unless_overwrite(tmp_path):
    store = Store.create(tmp_path / "s", identity())
    write_shard(store, "000001", {"old": (5, 0)})
    reader = Store.open(tmp_path / "s")
    assert reader.videos()["video_id"].to_pylist() == ["old"]
    with pytest.raises(StoreError, match="shard 000001 is already committed.*overwrite=True"):
        store.shard_writer("000001")
    write_shard(store, "000001", {"new": (9, 1)}, overwrite=True)
    assert reader.videos()["video_id"].to_pylist() == ["new"]  # the reader notices the rewritten manifest
    assert_video_equal(reader, "new", 9, 1)
    with pytest.raises(StoreError, match="no video 'old'"):
        reader.sequence("old")


def test_one_open_writer_per_shard_and_read_only_stores_do_not_write(tmp_path):
    store = Store.create(tmp_path / "s", identity())
    with store.shard_writer("000001"):
        with pytest.raises(StoreError, match="already has an open writer"):
            store.shard_writer("000001")
    with pytest.raises(StoreError, match="read-only"):
        Store.open(tmp_path / "s").shard_writer("000002")
    with pytest.raises(StoreError, match="shard id '../x' is not usable"):
        store.shard_writer("../x")


# --- refusals and clear errors ----------------------------------------------------------------------


def test_identity_mismatch_refused_showing_both_identities(tmp_path):
    Store.create(tmp_path / "s", identity(sha="a" * 64))
    with pytest.raises(StoreError) as error:
        Store.create(tmp_path / "s", identity(sha="c" * 64))
    message = str(error.value)
    assert "differs in encoder.weights_sha256" in message
    assert "store has:" in message and "a" * 64 in message and "writer has:" in message and "c" * 64 in message
    with pytest.raises(StoreError, match="differs in tokenizer"):
        Store.create(tmp_path / "s", identity(tokenizer=False))


def test_a_store_replaced_under_a_running_writer_is_refused_at_commit(tmp_path):
    store = Store.create(tmp_path / "s", identity())
    zarr.open_group(str(tmp_path / "s"), mode="r+").attrs["lvmae"] = identity(sha="d" * 64).to_attrs()
    with pytest.raises(StoreError, match="another identity"):
        write_shard(store, "000001", {"v": (3, 0)})
    assert store.committed_shards() == set()


def test_another_schema_version_is_refused(tmp_path):
    Store.create(tmp_path / "s", identity())
    group = zarr.open_group(str(tmp_path / "s"), mode="r+")
    group.attrs["lvmae"] = {**group.attrs["lvmae"], "schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store.open(tmp_path / "s")


def test_shapes_must_agree_within_and_across_shards(tmp_path):
    store = Store.create(tmp_path / "s", identity())
    write_shard(store, "000001", {"v": (3, 0)})
    with pytest.raises(
        StoreError,
        match=r"shard 000002: emb rows have shape \(D\) = \(16,\) but committed "
        r"shard 000001's have \(8,\)",
    ):
        with store.shard_writer("000002") as w:
            w.add_video(video_id="w", uri="w", duration=2, fps=8, **video(3, 1, d=16))
    other_grid = {"codes": np.zeros((3, 2, 3, 4), np.int16), "scores": np.zeros((3, 2, 3, 4))}
    with pytest.raises(
        StoreError,
        match=r"codes rows have shape \(t, h, w\) = \(2, 3, 4\) but committed "
        r"shard 000001's have \(2, 3, 3\)",
    ):
        with store.shard_writer("000002") as w:
            w.add_video(video_id="w", uri="w", duration=2, fps=8, **{**video(3, 1), **other_grid})
    with pytest.raises(StoreError, match=r"video 'y': emb has shape \(3, 16\); expected \(n, D\) = \(3, 8\)"):
        with store.shard_writer("000003") as w:
            w.add_video(video_id="x", uri="x", duration=2, fps=8, **video(3, 1))
            w.add_video(video_id="y", uri="y", duration=2, fps=8, **video(3, 1, d=16))
    assert store.committed_shards() == {"000001"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"emb": np.zeros((0, D))}, "emb must be \\(n, D\\) with n >= 1"),
        ({"importance": np.zeros(4)}, "importance has shape \\(4,\\); expected \\(n\\) = \\(3\\)"),
        ({"span": np.zeros((3, 3))}, "span has shape \\(3, 3\\); expected \\(n, 2\\) = \\(3, 2\\)"),
        ({"codes": np.full((3, *GRID), 40000)}, "codes has values in \\[40000, 40000\\]"),
        ({"codes": np.zeros((3, *GRID), np.float32)}, "codes must be integers"),
        ({"emb": np.full((3, D), np.nan)}, "emb has values that are not finite"),
        ({"emb": np.full((3, D), 1e6)}, "emb has values that are not finite as float16"),
        ({"codes": None}, "codes is required"),
        ({"scores": np.zeros((3, 2, 3, 4))}, "codes \\(3, 2, 3, 3\\) and scores \\(3, 2, 3, 4\\) must have the same"),
    ],
)
def test_bad_video_arrays_are_refused_naming_the_video(tmp_path, change, message):
    store = Store.create(tmp_path / "s", identity())
    with pytest.raises(StoreError, match=f"video 'v': {message}"):
        with store.shard_writer("000001") as w:
            w.add_video(video_id="v", uri="v", duration=2, fps=8, **{**video(3, 0), **change})


def test_empty_store_and_unknown_video_give_clear_errors(tmp_path):
    store = Store.create(tmp_path / "s", identity())
    assert store.videos().num_rows == 0 and "video_id" in store.videos().column_names
    with pytest.raises(StoreError, match="has no committed shards: nothing to read"):
        store.sequence("v1")
    with pytest.raises(StoreError, match="has no committed shards: no embeddings"):
        store.iter_embeddings()
    assert store.verify().ok and store.dims().emb is None
    write_shard(store, "000001", {}, failed=["bad"])
    with pytest.raises(StoreError, match=r"has no ok videos \(1 failed\): no embeddings"):
        store.iter_embeddings()
    write_shard(store, "000002", {"v1": (3, 0)})
    with pytest.raises(StoreError, match=r"no video 'nope' in store .* \(2 videos in 2 committed shards\)"):
        store.sequence("nope")
    with pytest.raises(StoreError, match="video 'bad' has no segments: it failed in shard 000001: moov atom"):
        store.sequence("bad")


def test_open_refuses_a_missing_place_or_something_else(tmp_path):
    with pytest.raises(StoreError, match="no store at .*nothing there"):
        Store.open(tmp_path / "missing")
    (tmp_path / "folder").mkdir()
    with pytest.raises(StoreError, match="is not an lvmae store: there is no zarr group"):
        Store.open(tmp_path / "folder")
    zarr.open_group(str(tmp_path / "other"), mode="w")
    with pytest.raises(StoreError, match="is a zarr group but not an lvmae store"):
        Store.open(tmp_path / "other")
    with pytest.raises(StoreError, match="is a zarr group but not an lvmae store"):
        Store.create(tmp_path / "other", identity())


def test_an_unknown_protocol_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot open store nosuchprotocol://x: .*nosuchprotocol"):
        Store.open("nosuchprotocol://x")


def test_create_refuses_a_folder_holding_other_files(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "holiday.mp4").write_bytes(b"")
    with pytest.raises(StoreError, match="already holds other files \\(holiday.mp4\\)"):
        Store.create(tmp_path / "home", identity())


# --- verify -------------------------------------------------------------------------------------------


def test_a_corrupted_chunk_makes_store_verify_fail_naming_the_shard(tmp_path, capsys):
    store = Store.create(tmp_path / "s", identity())
    write_shard(store, "000001", {"v1": (40, 1)})
    write_shard(store, "000002", {"v2": (40, 2)})
    assert cli.main(["store", "verify", str(tmp_path / "s")]) == 0
    capsys.readouterr()

    chunk_file = array_dir(tmp_path / "s", "000002", "emb") / "c" / "0" / "0"
    data = bytearray(chunk_file.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the chunk's bytes, before the shard index at the end
    chunk_file.write_bytes(bytes(data))

    assert cli.main(["store", "verify", str(tmp_path / "s")]) == 1
    out, err = capsys.readouterr()
    assert "problem: shard 000002: emb rows [0, 40) are unreadable" in out
    assert "000001" not in out.split("problem")[-1] and "in shard(s) 000002" in err


def test_verify_names_a_shard_whose_manifest_disagrees_with_its_arrays(tmp_path):
    store = Store.create(tmp_path / "s", identity())
    write_shard(store, "000001", {"v1": (40, 1)})
    path = tmp_path / "s" / "manifest" / "000001.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.column_names.index("n_segments"), "n_segments", [[41]]), path)
    report = Store.open(tmp_path / "s").verify()
    assert not report.ok
    names = ("emb", "codes", "scores", "importance", "span")
    assert [str(p) for p in report.problems] == [
        f"shard 000001: {name} has 40 rows; the manifest's ok videos have 41 segments" for name in names
    ]
    assert [(p.shard, p.array) for p in report.problems] == [("000001", name) for name in names]


def test_verify_lists_foreign_files_as_orphans_without_failing(tmp_path):
    store = Store.create(tmp_path / "s", identity())
    (tmp_path / "s" / "notes.txt").write_text("")
    (tmp_path / "s" / "shards" / "000007").mkdir(parents=True)
    report = store.verify()
    assert report.ok
    assert report.orphans == [
        "notes.txt (not part of a store)",
        "shards/000007/ (no manifest: a shard never committed)",
    ]


def test_verify_fails_where_the_direct_reader_and_zarr_disagree(tmp_path, monkeypatch):
    store = Store.create(tmp_path / "s", identity())
    write_shard(store, "000001", {"v": (40, 1)})
    read = direct.RowReader.read
    monkeypatch.setattr(
        direct.RowReader,
        "read",
        lambda self, a, b: read(self, a, b) * 0 if self.label.endswith("scores") else read(self, a, b),
    )
    report = Store.open(tmp_path / "s").verify()
    assert [str(p) for p in report.problems] == [
        "shard 000001: scores rows [0, 40) read differently through zarr and through the store's direct reader "
        "(store.direct)"
    ]
    assert report.problems[0].array == "scores"
