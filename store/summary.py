"""What a store holds, in one record: what `lvmae store info` shows and the report will."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from lvmae.store.identity import StoreIdentity


class SummarizedStore(Protocol):
    """What a summary reads of a store (`store.Store` is one)."""

    identity: StoreIdentity

    @property
    def uri(self) -> str: ...

    def committed_shards(self) -> set[str]: ...

    def videos(self, status: str | None = None) -> pa.Table: ...

    def dims(self) -> Any: ...


@dataclass
class StoreSummary:
    store: str
    shards: int
    videos_ok: int
    videos_failed: int
    segments: int  # of the ok videos
    hours: float  # of video, ok videos
    emb_dim: int | None  # D; None while no shard has segments
    token_grid: list[int] | None  # (t, h, w); None without a tokenizer
    identity: dict[str, Any]  # StoreIdentity.to_attrs()
    failed: list[dict[str, str]] = field(default_factory=list)  # {"video_id", "error"} per failed video

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(store: SummarizedStore) -> StoreSummary:
    ok, failed = store.videos(status="ok"), store.videos(status="failed")
    dims = store.dims()
    return StoreSummary(
        store=store.uri,
        shards=len(store.committed_shards()),
        videos_ok=ok.num_rows,
        videos_failed=failed.num_rows,
        segments=int(pc.sum(ok["n_segments"]).as_py() or 0),
        hours=float(pc.sum(ok["duration"]).as_py() or 0.0) / 3600,
        emb_dim=dims.emb,
        token_grid=list(dims.token_grid) if dims.token_grid else None,
        identity=store.identity.to_attrs(),
        failed=[
            {"video_id": video_id, "error": error}
            for video_id, error in zip(failed["video_id"].to_pylist(), failed["error"].to_pylist())
        ],
    )
