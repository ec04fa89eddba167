import json

import faiss
import numpy as np
import pytest

from lvmae.foundation.schema import RetrievalConfig
from lvmae.retrieval.errors import RetrievalError, StaleIndex
from lvmae.retrieval.index import SegmentIndex
from lvmae.store import Store
from tests.unit.retrieval.stores import vectors, write_videos

CFG = RetrievalConfig()


def queries(m=20, seed=99):
    return vectors(m, seed)


def results(index, q, h=10):
    """(video_id, row, score) per hit: what a search means, whatever the positions."""
    scores, pos = index.search(q, h)
    ids = index.ids
    return [
        [(ids.videos[ids.video[p]], int(ids.row[p]), float(s)) for s, p in zip(srow, prow) if p >= 0]
        for srow, prow in zip(scores, pos)
    ]


def test_flat_equals_numpy_brute_force(make_store):
    store = make_store({f"v{i}": (50 + i, i) for i in range(6)})
    index = SegmentIndex.build(store, CFG, kind="flat", progress=False)
    base = np.concatenate([store.sequence(f"v{i}").emb.astype(np.float32) for i in range(6)])
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    q = queries()
    exact = q @ base.T
    want = np.argsort(-exact, axis=1)[:, :10]
    scores, pos = index.search(q, 10)
    # positions follow the store's order (shard, then row), the order `base` was stacked in
    np.testing.assert_array_equal(pos, want)
    np.testing.assert_allclose(scores, np.take_along_axis(exact, want, 1), atol=1e-5)
    assert index.header["vectors"] == len(base) and index.header["videos"] == 6


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_every_kind_round_trips_to_disk(make_store, tmp_path, kind):
    n_videos = 6 if kind == "ivfpq" else 4  # IVF-PQ trains on at least 1,248 vectors
    store = make_store({f"v{i:02d}": (400, i) for i in range(n_videos)})
    index = SegmentIndex.build(store, CFG, kind=kind, progress=False)
    q = queries()
    before = results(index, q)
    index.save(tmp_path / "idx")
    for mmap in (False, True):
        loaded = SegmentIndex.load(tmp_path / "idx", mmap=mmap)
        loaded.check_fresh(store)
        assert loaded.kind == kind and len(loaded) == len(index)
        assert results(loaded, q) == before
    if kind == "flat":  # memory-mapped where the kind allows
        assert isinstance(faiss.downcast_index(SegmentIndex.load(tmp_path / "idx", mmap=True).index), faiss.IndexFlat)


def test_search_finds_a_stored_vector_first(make_store):
    store = make_store({"a": (30, 1), "b": (30, 2)})
    index = SegmentIndex.build(store, CFG, kind="hnsw", progress=False)
    scores, pos = index.search(store.sequence("b", 7, 8).emb.astype(np.float32), 5)
    assert index.ids.videos[index.ids.video[pos[0, 0]]] == "b" and index.ids.row[pos[0, 0]] == 7
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-3)


def test_a_new_shard_makes_the_index_stale_and_incremental_equals_a_fresh_flat_build(make_store, tmp_path):
    store = make_store({"a": (40, 1), "b": (30, 2)})
    SegmentIndex.build(store, CFG, kind="flat", progress=False).save(tmp_path / "idx")
    writable = Store.create(store.uri, store.identity)
    write_videos(writable, "s1", {"c": (35, 3), "d": (20, 4)})
    with pytest.raises(StaleIndex, match=r"1 shard committed since \(s1\).*--incremental"):
        SegmentIndex.load(tmp_path / "idx").check_fresh(store)
    index = SegmentIndex.load(tmp_path / "idx", writable=True)
    assert index.update(store) == ["s1"]
    index.save(tmp_path / "idx")
    updated = SegmentIndex.load(tmp_path / "idx")
    updated.check_fresh(store)
    fresh = SegmentIndex.build(store, CFG, kind="flat", progress=False)
    q = queries()
    got, want = results(updated, q), results(fresh, q)
    assert [[(v, r) for v, r, _ in row] for row in got] == [[(v, r) for v, r, _ in row] for row in want]
    np.testing.assert_allclose([[s for *_, s in row] for row in got], [[s for *_, s in row] for row in want], atol=1e-6)
    assert updated.header["updates"][0]["shards"] == 1 and len(updated) == 125
    assert sorted(p.name for p in (tmp_path / "idx").iterdir() if p.suffix == ".faiss") == [
        json.loads((tmp_path / "idx" / "index.json").read_text())["files"]["index"]
    ]  # the replaced generation is gone


def test_a_re_extracted_shard_needs_a_rebuild(make_store, tmp_path):
    store = make_store({"a": (40, 1)})
    index = SegmentIndex.build(store, CFG, kind="flat", progress=False)
    writable = Store.create(store.uri, store.identity)
    with writable.shard_writer("s0", overwrite=True) as w:
        w.add_video(
            video_id="a",
            uri="/videos/a.mp4",
            duration=80.0,
            fps=8.0,
            emb=vectors(40, 7),
            importance=np.ones(40, np.float32),
            span=np.stack([np.arange(40) * 2.0, np.arange(40) * 2.0 + 2], 1),
        )
    with pytest.raises(StaleIndex, match="re-extracted since") as err:
        index.update(store)
    assert "--incremental" not in str(err.value)


def test_a_folder_that_is_not_an_index_is_a_clear_error(tmp_path, make_store):
    with pytest.raises(RetrievalError, match="no such folder"):
        SegmentIndex.load(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RetrievalError, match="is not an lvmae index: it has no index.json"):
        SegmentIndex.load(tmp_path / "other")
    index = SegmentIndex.build(make_store({"a": (10, 1)}), CFG, kind="flat", progress=False)
    with pytest.raises(RetrievalError, match="holds other files"):
        index.save(tmp_path / "other")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.json").write_text("{}")
    with pytest.raises(RetrievalError, match="not an lvmae-segment-index header"):
        SegmentIndex.load(tmp_path / "bad")


def test_a_missing_index_file_is_named(make_store, tmp_path):
    index = SegmentIndex.build(make_store({"a": (10, 1)}), CFG, kind="flat", progress=False)
    index.save(tmp_path / "idx")
    (tmp_path / "idx" / index.header["files"]["index"]).unlink()
    with pytest.raises(RetrievalError, match=r"segments-.*\.faiss, which its index.json names, is missing"):
        SegmentIndex.load(tmp_path / "idx")


def test_a_byte_flipped_index_file_is_caught_by_verify_and_a_truncated_one_always(make_store, tmp_path):
    index = SegmentIndex.build(make_store({"a": (40, 1), "b": (30, 2)}), CFG, kind="flat", progress=False)
    folder = index.save(tmp_path / "idx")
    name = index.header["files"]["index"]
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of a vector: FAISS reads it happily and answers other neighbours
    (folder / name).write_bytes(bytes(data))
    SegmentIndex.load(folder)  # the size is right: a cheap load does not hash
    with pytest.raises(RetrievalError, match=f"{name} does not have the sha256 its index.json records"):
        SegmentIndex.load(folder, verify=True)
    (folder / name).write_bytes(bytes(data[:-8]))
    with pytest.raises(RetrievalError, match=f"{name} is {len(data) - 8:,} bytes; its index.json says {len(data):,}"):
        SegmentIndex.load(folder)


def test_a_save_killed_mid_write_is_checked_on_load_and_its_temp_file_removed_by_the_next(make_store, tmp_path):
    index = SegmentIndex.build(make_store({"a": (40, 1)}), CFG, kind="flat", progress=False)
    folder = index.save(tmp_path / "idx")
    stale = folder / ".segments-20260101T000000-dead.faiss.tmp-4242"  # what a killed write_faiss leaves
    stale.write_bytes(b"half an index")
    name = index.header["files"]["index"]
    good = (folder / name).read_bytes()
    (folder / name).write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])  # and damage, same size
    with pytest.raises(RetrievalError, match="does not have the sha256"):  # a crash happened here: hashed
        SegmentIndex.load(folder)
    (folder / name).write_bytes(good)
    SegmentIndex.load(folder).save(folder)
    assert not stale.exists() and not [p for p in folder.iterdir() if ".tmp-" in p.name]


def test_two_builds_into_one_folder_are_exclusive_and_a_save_keeps_what_the_header_names(make_store, tmp_path):
    import threading

    from lvmae.foundation.locks import Locked, folder_lock

    index = SegmentIndex.build(make_store({"a": (40, 1)}), CFG, kind="flat", progress=False)
    folder = tmp_path / "idx"
    holding, done = threading.Event(), threading.Event()

    def other_build():  # holds the folder as a build does, until told to finish
        with folder_lock(folder, "index build"):
            holding.set()
            assert done.wait(30)

    thread = threading.Thread(target=other_build)
    thread.start()
    try:
        assert holding.wait(30)
        with pytest.raises(Locked, match=r"another index build holds it since \d{4}-\d\d-\d\d .*\(pid \d+\)"):
            index.save(folder)
    finally:
        done.set()
        thread.join(30)
    index.save(folder)
    named = set(json.loads((folder / "index.json").read_text())["files"].values())
    assert named <= {p.name for p in folder.iterdir()}
    SegmentIndex.load(folder, verify=True)
