"""`WindowDataset`: a store's windows as a PyTorch Dataset, read by a DataLoader with worker processes."""

import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from lvmae.foundation.schema import load_config
from lvmae.pretrain.data import (
    VAL_STREAM,
    WindowDataset,
    WindowSource,
    collate_windows,
    ok_videos,
    read_batch,
    split_videos,
)
from lvmae.pretrain.synthetic import write_procedure_store
from lvmae.store import Store

STEPS = 5


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("dataset") / "store")
    write_procedure_store(uri, videos=8, segments=(20, 90), tokenizer=True, shard_videos=3)
    return Store.open(uri)


@pytest.fixture(scope="module")
def p():
    overrides = ["pretrain.batch_size=3", "pretrain.min_segments=8", "pretrain.max_segments=40", "pretrain.seed=7"]
    return load_config(None, overrides, use_default_file=False).pretrain


def source_of(store, p, videos, **kwargs):
    """The batches `pretrain.train.train` draws: its WindowSource, built as train builds it (rank 0)."""
    return WindowSource(
        store,
        videos,
        batch_size=p.batch_size,
        min_segments=p.min_segments,
        max_segments=p.max_segments,
        seed=p.seed,
        rank=0,
        codes=p.code_head,
        **kwargs,
    )


def assert_same_batch(got, want):
    assert got.windows == want.windows
    for name in ("emb", "importance", "valid"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


def test_a_dataloader_with_two_workers_yields_the_batches_pretraining_draws(store, p):
    data = WindowDataset.pretraining(store, p, steps=STEPS)
    assert len(data) == STEPS * p.batch_size
    loader = DataLoader(data, batch_size=p.batch_size, num_workers=2, collate_fn=collate_windows)
    batches = list(loader)
    train_videos, _ = split_videos(ok_videos(store), p.val_fraction)
    source = source_of(store, p, train_videos)
    assert len(batches) == STEPS
    for step, batch in enumerate(batches):
        assert_same_batch(batch, source.batch(step))
    # Not one window over and over: the steps differ.
    assert len({tuple(b.windows) for b in batches}) == STEPS


def test_another_seed_draws_other_windows(store, p):
    import dataclasses

    a = WindowDataset.pretraining(store, p, steps=2)
    b = WindowDataset.pretraining(store, dataclasses.replace(p, seed=p.seed + 1), steps=2)
    assert [a.window(k) for k in range(len(a))] != [b.window(k) for k in range(len(b))]


def test_the_validation_split_gives_the_validation_windows(store, p):
    data = WindowDataset.pretraining(store, p, steps=2, split="val")
    _, val_videos = split_videos(ok_videos(store), p.val_fraction)
    source = source_of(store, p, val_videos, stream=VAL_STREAM)
    got = collate_windows([data[k] for k in range(p.batch_size, 2 * p.batch_size)])
    assert_same_batch(got, source.batch(1))
    assert {w.video_id for w in got.windows} <= {v.video_id for v in val_videos}


def test_whole_videos_cover_every_segment_once_and_can_carry_codes(store):
    data = WindowDataset.whole_videos(store, max_segments=32, codes=True)
    covered: dict[str, int] = {}
    for k in range(len(data)):
        item = data[k]
        w = item["window"]
        assert item["emb"].shape[0] == w.length and item["emb"].dtype == torch.float32
        assert item["codes"].shape[0] == w.length and w.length <= 32
        covered[w.video_id] = covered.get(w.video_id, 0) + w.length
    assert covered == {v.video_id: v.n_segments for v in ok_videos(store)}
    loader = DataLoader(data, batch_size=4, num_workers=2, collate_fn=collate_windows)
    first = next(iter(loader))
    assert_same_batch(first, read_batch(store, first.windows, codes=True))
    assert first.codes is not None and torch.equal(first.codes, read_batch(store, first.windows, codes=True).codes)


def test_a_pickled_dataset_carries_the_store_uri_not_the_open_store(store, p):
    data = WindowDataset.pretraining(store, p, steps=1)
    copy = pickle.loads(pickle.dumps(data))
    assert copy._store is None and copy.store_uri == store.uri
    assert_same_batch(collate_windows([copy[k] for k in range(len(copy))]), collate_windows(list(data)))


def test_an_index_past_the_end_is_an_index_error(store, p):
    data = WindowDataset.pretraining(store, p, steps=1)
    with pytest.raises(IndexError):
        data[len(data)]
