"""The `make_store` fixture: a store of synthetic segment embeddings in tmp_path."""

import pytest

from lvmae.store import Store
from tests.unit.retrieval.stores import identity, write_videos


@pytest.fixture
def make_store(tmp_path):
    def make(videos, *, shard="s0", name="store", encoder=None, gaps=None):
        store = Store.create(tmp_path / name, identity(encoder))
        write_videos(store, shard, videos, gaps=gaps)
        return Store.open(tmp_path / name)

    return make
