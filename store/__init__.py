"""The feature store: zarr v3 shards of per-segment arrays plus a parquet manifest per shard.

The contract between extraction (writes shards), pretraining (reads long windows of sequences) and
retrieval (streams every embedding). Layout and encoding: `store.layout`; identity: `store.identity`;
reads go straight to the shard files through `store.direct` (zarr writes them and `verify` checks both).

    ident = StoreIdentity(encoder={"name": ..., "weights_sha256": ...},
                          tokenizer={"name": ..., "weights_sha256": ..., "levels": [...]} or None,
                          segment={"seconds": 2.0, ...})
    store = Store.create(uri, ident)             # local path or fsspec URI; refuses another identity
    with store.shard_writer("000003") as w:      # one writer per shard; leaving the block commits
        w.add_video(video_id=..., uri=..., duration=..., fps=..., emb=..., codes=..., scores=...,
                    importance=..., span=..., extra={"label": ...})
        w.add_failed(video_id=..., uri=..., error="...")

    store = Store.open(uri)
    store.videos(status="ok")                    # pyarrow table of committed manifest rows (None: all)
    store.sequence(video_id, start, stop)        # Segments: emb (T, D), codes, scores, importance, span
    store.iter_embeddings(batch_size)            # EmbeddingBatch stream over every ok segment
    store.verify()                               # VerifyReport: problems (shard, array, message), orphans
    store.summary()                              # StoreSummary: videos ok/failed, segments, hours, identity

Rules: a shard exists for readers once its manifest exists; the manifest is written last (temp file
+ rename), after all of the shard's arrays; all shards share one identity and one set of per-segment
shapes.
"""

from lvmae.store.identity import StoreIdentity
from lvmae.store.layout import SCHEMA_VERSION, NoStore, StoreError
from lvmae.store.store import Dims, EmbeddingBatch, Segments, Store
from lvmae.store.summary import StoreSummary
from lvmae.store.verify import Problem, VerifyReport
from lvmae.store.writer import ShardWriter

__all__ = [
    "SCHEMA_VERSION",
    "Dims",
    "EmbeddingBatch",
    "NoStore",
    "Problem",
    "Segments",
    "ShardWriter",
    "Store",
    "StoreError",
    "StoreIdentity",
    "StoreSummary",
    "VerifyReport",
]
