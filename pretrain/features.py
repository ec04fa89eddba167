"""LV-MAE features: the frozen encoder over whole sequences, and a store of its per-segment outputs.

Shape letters: `T` segments of a video, `D` input embedding width, `W` encoder width.

`sequence_features` runs the encoder with nothing hidden over a sequence of any length. A sequence longer than
`chunk` segments is cut into equal consecutive chunks of at most `chunk` (so no chunk is a short
leftover), each encoded on its own with positions from 0, as every training window was: a chunk is
then exactly the kind of input the encoder learned on. The default chunk is the longest window of
training (`pretrain.max_segments` of the checkpoint); sin-cos positions go further, but attention
over contexts longer than any seen in training is untested.

`embed_sequences` writes the outputs for every video of a store as another store: the same shard ids,
video ids, spans, importance and manifest columns (labels), with the encoder identity naming the
LV-MAE weights file and its sha256. Retrieval and probes then read LV-MAE features through the same
`Store` API as the frozen encoder's. The new store has no tokenizer arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lvmae.foundation.progress import bar
from lvmae.foundation.runtime import autocast
from lvmae.pretrain.checkpoint import Pretrained
from lvmae.pretrain.model import LVMAE
from lvmae.store import Store, StoreIdentity
from lvmae.store.manifest import COLUMNS


def chunk_bounds(T: int, chunk: int) -> list[tuple[int, int]]:
    """ceil(T / chunk) consecutive ranges of equal length (±1) covering [0, T)."""
    n = max(1, -(-T // chunk))
    edges = np.linspace(0, T, n + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


@torch.no_grad()
def sequence_features(model: LVMAE, emb: np.ndarray | torch.Tensor, *, chunk: int) -> np.ndarray:
    """Encoder outputs for every segment. emb (T, D) -> (T, W) float32."""
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(emb, dtype=np.float32))
    out = []
    for a, b in chunk_bounds(x.shape[0], chunk):
        part = x[a:b].to(device)[None]  # (1, C, D)
        valid = torch.ones(part.shape[:2], dtype=torch.bool, device=device)
        with autocast(device):
            out.append(model.features(part, valid)[0].float().cpu())  # (C, W)
    return torch.cat(out).numpy()


def is_features_identity(encoder: dict) -> bool:
    """Whether a store identity's encoder entry names LV-MAE features (`features_identity`), not a frozen
    image-text encoder."""
    return "input_encoder" in encoder


def features_identity(source: Store, pretrained: Pretrained) -> StoreIdentity:
    """The identity of a store of LV-MAE features computed from `source`."""
    return StoreIdentity(
        encoder={
            "name": f"lvmae:{pretrained.name}",
            "weights_sha256": pretrained.sha256,
            "width": pretrained.model.cfg.width,
            "input_encoder": source.identity.encoder,
        },
        tokenizer=None,
        segment=source.identity.segment,
    )


def embed_sequences(
    source: Store, pretrained: Pretrained, out_uri: str, *, chunk: int | None = None, progress: bool = True
) -> dict[str, Any]:
    """Write LV-MAE features of every video of `source` to the store at `out_uri`, shard by shard,
    under the source's shard ids. A shard already there is skipped (a re-run resumes) only when it was
    made from the source shard as it is now: the same videos, from the same source generation (a
    re-extracted source shard is encoded again). Returns counts for a summary."""
    chunk = chunk or pretrained.max_segments
    out = Store.create(out_uri, features_identity(source, pretrained))
    table = source.videos()
    extra_names = [name for name in table.column_names if name not in COLUMNS.names]
    made, done = out.videos(), out.committed_shards()
    shard_ids = sorted(set(table["shard_id"].to_pylist()))

    def up_to_date(shard_id: str) -> bool:
        if shard_id not in done:
            return False
        same_videos = sorted(_ids(made, shard_id)) == sorted(_ids(table, shard_id))
        source_generation = source.commit_of(shard_id).generation
        return same_videos and out.commit_of(shard_id).attrs.get("source_generation") == source_generation

    todo = [s for s in shard_ids if not up_to_date(s)]
    replace = set(todo) & done
    todo_rows = table.filter(pc.is_in(table["shard_id"], value_set=pa.array(todo, table["shard_id"].type)))
    total = int(pc.sum(todo_rows["n_segments"]).as_py() or 0)  # a failed video has 0
    counts = {
        "shards_written": 0,
        "shards_skipped": len(shard_ids) - len(todo),
        "videos": 0,
        "failed": 0,
        "segments": 0,
    }
    progress_bar = bar(
        total=total, desc="embed-sequences", unit="seg", unit_scale=True, disable=None if progress else True
    )
    try:
        for shard_id in todo:
            rows = table.filter(pc.equal(table["shard_id"], shard_id)).sort_by("row_start").to_pylist()
            attrs = {"source_store": source.uri, "source_generation": source.commit_of(shard_id).generation}
            with out.shard_writer(shard_id, overwrite=shard_id in replace, attrs=attrs) as writer:
                for row in rows:
                    extra = {name: row[name] for name in extra_names}
                    if row["status"] != "ok":
                        writer.add_failed(
                            video_id=row["video_id"],
                            uri=row["uri"],
                            error=row["error"] or "",
                            kind=row.get("error_kind") or "permanent",
                            extra=extra,
                        )
                        counts["failed"] += 1
                        continue
                    seq = source.sequence(row["video_id"], arrays=("emb", "importance", "span"))
                    features = sequence_features(pretrained.model, seq.get("emb"), chunk=chunk)  # (T, W)
                    writer.add_video(
                        video_id=row["video_id"],
                        uri=row["uri"],
                        duration=row["duration"],
                        fps=row["fps"],
                        emb=features,
                        importance=seq.importance,
                        span=seq.span,
                        extra=extra,
                    )
                    counts["videos"] += 1
                    counts["segments"] += len(features)
                    progress_bar.update(len(features))
            counts["shards_written"] += 1
    finally:
        progress_bar.close()
    return {**counts, "store": out.uri, "chunk": chunk, "width": pretrained.model.cfg.width}


def _ids(table: pa.Table, shard_id: str) -> list[str]:
    return table.filter(pc.equal(table["shard_id"], shard_id))["video_id"].to_pylist()
