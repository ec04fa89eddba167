import numpy as np
import pytest
import torch

from lvmae.pretrain.data import (
    Video,
    Window,
    WindowSource,
    ok_videos,
    read_batch,
    sample_windows,
    split_videos,
    tile_windows,
)
from lvmae.pretrain.synthetic import write_procedure_store
from lvmae.store import Store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_procedure_store(
        str(tmp_path_factory.mktemp("data") / "store"), videos=10, segments=(20, 300), tokenizer=True
    )


def test_ok_videos_skips_failed(tmp_path):
    s = write_procedure_store(str(tmp_path / "s"), videos=3)
    with Store.create(str(tmp_path / "s"), s.identity).shard_writer("000009") as w:
        w.add_failed(video_id="broken", uri="x://broken", error="no video stream")
    ids = [v.video_id for v in ok_videos(Store.open(str(tmp_path / "s")))]
    assert ids == ["video0000", "video0001", "video0002"]


def test_split_is_deterministic_disjoint_and_order_free():
    videos = [Video(f"v{i}", 10 + i) for i in range(100)]
    train, val = split_videos(videos, 0.2)
    assert len(val) == 20 and len(train) == 80
    assert not {v.video_id for v in train} & {v.video_id for v in val}
    train2, val2 = split_videos(list(reversed(videos)), 0.2)
    assert {v.video_id for v in val2} == {v.video_id for v in val}
    # A video's side depends on its id only: adding videos moves few of the old ones.
    _, val_more = split_videos(videos + [Video(f"w{i}", 5) for i in range(10)], 0.2)
    assert len({v.video_id for v in val} & {v.video_id for v in val_more}) >= 15


def test_split_edges():
    two = [Video("a", 5), Video("b", 5)]
    assert [len(x) for x in split_videos(two, 0.01)] == [1, 1]  # at least one held out
    assert [len(x) for x in split_videos(two, 0.0)] == [2, 0]
    assert [len(x) for x in split_videos([Video("a", 5)], 0.5)] == [1, 0]  # never all of them


def test_sample_windows_lengths_and_bounds():
    videos = [Video("short", 10), Video("long", 5000)]
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(300):
        ws = sample_windows(videos, 4, min_segments=16, max_segments=1024, rng=rng)
        target = max(w.length for w in ws)
        for w in ws:
            n = 10 if w.video_id == "short" else 5000
            assert 0 <= w.start < w.stop <= n
            assert w.length == min(target, n) or w.length == n  # short videos: whole, not tiled
        lengths.append(target)
    assert min(lengths) >= 16 and max(lengths) <= 1024
    assert np.median(lengths) < 300  # log-uniform: short windows are common


def test_long_videos_are_drawn_in_proportion_to_their_segments():
    videos = [Video("a", 100), Video("b", 900)]
    rng = np.random.default_rng(0)
    picks = [w.video_id for _ in range(500) for w in sample_windows(videos, 2, min_segments=2, max_segments=8, rng=rng)]
    assert 0.85 < picks.count("b") / len(picks) < 0.95


def test_tile_windows_cover_every_segment_once():
    ws = tile_windows([Video("a", 10), Video("b", 3)], 4)
    assert ws == [Window("a", 0, 4), Window("a", 4, 8), Window("a", 8, 10), Window("b", 0, 3)]


def test_read_batch_pads_and_marks_valid(store):
    windows = [Window("video0000", 0, 20), Window("video0005", 7, 40)]
    batch = read_batch(store, windows, codes=True)
    assert batch.emb.shape == (2, 33, 32) and batch.emb.dtype == torch.float32
    assert batch.valid.sum(1).tolist() == [20, 33] and batch.segments == 53
    assert not batch.valid[0, 20:].any() and (batch.emb[0, 20:] == 0).all()
    assert batch.codes.shape == (2, 33, 1, 2, 2)
    seq = store.sequence("video0005", 7, 40)
    assert np.allclose(batch.emb[1].numpy(), seq.emb.astype(np.float32))
    assert np.allclose(batch.importance[1].numpy(), seq.importance)


def test_window_source_is_a_function_of_seed_rank_step(store):
    videos = ok_videos(store)

    def make(**kw):
        return WindowSource(store, videos, batch_size=3, min_segments=8, max_segments=64, **{"seed": 0, **kw})

    a, b = make(), make()
    assert a.windows(5) == b.windows(5)
    assert a.windows(5) != a.windows(6)
    assert a.windows(5) != make(rank=1).windows(5)
    assert a.windows(5) != make(seed=1).windows(5)
    g1, g2 = a.mask_generator(5), b.mask_generator(5)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
    # Iterating with prefetch gives the same batches as asking step by step, from any start.
    got = list(a.iterate(3, 7))
    assert [s for s, _ in got] == [3, 4, 5, 6]
    for step, batch in got:
        assert batch.windows == a.windows(step)
        assert torch.equal(batch.emb, a.batch(step).emb)


def test_iterate_stops_cleanly_when_abandoned_and_reraises_errors(store):
    import threading

    source = WindowSource(store, ok_videos(store), batch_size=2, min_segments=4, max_segments=16, seed=0)
    before = set(threading.enumerate())
    it = source.iterate(0, 1000, prefetch=2)
    next(it)
    (producer,) = [t for t in threading.enumerate() if t.name == "window-prefetch" and t not in before]
    it.close()  # the producer thread must end, not keep reading batches for a consumer that has gone
    producer.join(timeout=20)
    assert not producer.is_alive()
    bad = WindowSource(store, [Video("nope", 50)], batch_size=2, min_segments=4, max_segments=16, seed=0)
    with pytest.raises(Exception, match="nope"):
        list(bad.iterate(0, 3))
