"""Which videos a job extracts, and into which shards.

A shard's id comes from what it holds, the sorted ids of its videos, never from a position in an input
list, and the plan starts from what the store has already committed:

- a video already in a committed manifest (ok, or failed) is left there: re-running a job, adding
  videos to a folder, or writing a second list into the same store extracts exactly the videos no
  manifest has, grouped in input order into new shards of `shard_videos`;
- `retry` re-extracts the committed shards that hold failed rows of the input's videos, whole and
  under the same id ("transient": failures worth retrying, such as I/O errors and timeouts; "all":
  every failure);
- `resume=False` re-extracts every committed shard that holds one of the input's videos, whole and
  under the same id, so no video is ever committed twice.

A planned new shard whose id is already committed must hold exactly the planned videos (then it is
skipped); anything else is a PlanError naming the drift.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from lvmae.extract.inputs import InputVideo
from lvmae.foundation.errors import LvmaeError
from lvmae.store.manifest import COLUMNS

RETRY = ("transient", "all")


class PlanError(LvmaeError):
    """The store's committed shards and the plan disagree; the message names the shard and videos."""


@dataclass(frozen=True)
class PlannedVideo:
    video_id: str
    uri: str
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)  # manifest columns


@dataclass
class Plan:
    shards: dict[str, list[PlannedVideo]] = field(default_factory=dict)
    """Shards to extract now, by id."""
    replace: set[str] = field(default_factory=set)
    """Of those, the ones already committed (re-extracted whole; the new generation replaces the old)."""
    kept: set[str] = field(default_factory=set)
    """Committed shards holding input videos that stay as they are."""
    earlier_failures: list[dict[str, Any]] = field(default_factory=list)
    """Failed rows of the input's videos in kept shards: video_id, uri, error, error_kind."""

    @property
    def videos(self) -> int:
        return sum(len(v) for v in self.shards.values())


def shard_id_for(video_ids: list[str]) -> str:
    """A shard's id from its videos: the same videos always give the same id, in any order."""
    digest = hashlib.sha256("\n".join(sorted(video_ids)).encode("utf-8", "surrogateescape")).hexdigest()
    return f"v{digest[:16]}"


def manifest_extras(extra: dict) -> dict:
    """Input columns carried into the manifest; one named like a manifest column (an input table's own
    `duration`, say) is kept as `input_<name>` rather than dropped or allowed to shadow ours."""
    return {(f"input_{k}" if k in COLUMNS.names else k): v for k, v in extra.items()}


def plan_extraction(
    videos: list[InputVideo],
    committed: pa.Table,
    shard_videos: int,
    *,
    resume: bool = True,
    retry: str | None = None,
) -> Plan:
    """The plan for `videos` (in input order) against the store's committed manifest rows."""
    if retry is not None and retry not in RETRY:
        raise PlanError(f"retry {retry!r} is not one of {', '.join(RETRY)}")
    wanted = {v.video_id: v for v in videos}
    rows = committed.to_pylist()
    by_shard: dict[str, list[dict]] = {}
    where: dict[str, str] = {}  # video id -> the committed shard that has it (ok rows first)
    for row in sorted(rows, key=lambda r: r["status"] != "ok"):
        by_shard.setdefault(row["shard_id"], []).append(row)
        where.setdefault(row["video_id"], row["shard_id"])
    plan = Plan()
    for shard_id, shard_rows in sorted(by_shard.items()):
        if not any(r["video_id"] in wanted for r in shard_rows):
            continue  # another list's shard: not this job's business
        retryable = [
            r
            for r in shard_rows
            if r["status"] == "failed" and r["video_id"] in wanted and (retry == "all" or r.get("error_kind") == retry)
        ]
        if not resume or (retry and retryable):
            plan.shards[shard_id] = [_again(r, wanted) for r in sorted(shard_rows, key=lambda r: r["row_start"])]
            plan.replace.add(shard_id)
        else:
            plan.kept.add(shard_id)
            plan.earlier_failures += [
                {k: r.get(k) for k in ("video_id", "uri", "error", "error_kind")}
                for r in shard_rows
                if r["status"] == "failed" and r["video_id"] in wanted
            ]
    pending = [v for v in videos if v.video_id not in where]
    for start in range(0, len(pending), shard_videos):
        group = pending[start : start + shard_videos]
        shard_id = shard_id_for([v.video_id for v in group])
        if shard_id in by_shard:  # only the same videos give the same id; anything else is drift
            have = sorted(r["video_id"] for r in by_shard[shard_id])
            raise PlanError(
                f"shard {shard_id} is committed with videos {have[:5]}{'…' if len(have) > 5 else ''}, but the "
                f"plan puts {sorted(v.video_id for v in group)[:5]} there; run `lvmae store verify`"
            )
        plan.shards[shard_id] = [PlannedVideo(v.video_id, v.uri, manifest_extras(v.extra)) for v in group]
    return plan


def _again(row: dict, wanted: dict[str, InputVideo]) -> PlannedVideo:
    """A committed video planned again: from the input when it is there, else from its manifest row."""
    given = wanted.get(row["video_id"])
    if given is not None:
        return PlannedVideo(given.video_id, given.uri, manifest_extras(given.extra))
    extra = {k: v for k, v in row.items() if k not in COLUMNS.names and v is not None}
    return PlannedVideo(row["video_id"], row["uri"], extra)
